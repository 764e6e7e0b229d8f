"""``scripts/bench.py`` (``make bench``): every target row is printed and written with its
target and verdict, next to the reference rows (SAMT's skeleton, one weight pass)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402

pytestmark = pytest.mark.slow


def test_bench_writes_every_target_row_with_its_verdict(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), "--cases", "mnist,cnn", "--rounds", "1",
         "--iters", "1", "--threads", "1", "--no-compile", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "bench.csv", newline="") as fh:
        rows = {(r["case"], r["optimizer"]): r for r in csv.DictReader(fh)}
    wanted = [key for key in bench.TARGETS
              if key[0] in ("mnist_mlp400", "cnn_32x32x3") and "compiled" not in key[1]]
    assert len(wanted) == 7
    for case, label in wanted:
        row = rows[(case, label)]
        assert float(row["target"]) == bench.TARGETS[(case, label)]
        assert row["met"] == str(float(row["ratio_to_adam"]) <= float(row["target"]))
        assert any(line.startswith(case) and label in line
                   and ("ok" in line or "MISSED" in line) for line in done.stdout.splitlines())
    for case in ("mnist_mlp400", "cnn_32x32x3"):
        assert float(rows[(case, "adam")]["ratio_to_adam"]) == 1.0
        for reference in (bench.SKELETON, bench.PASS):
            assert float(rows[(case, reference)]["ms_per_iter"]) > 0
    for label, (_, target) in bench.MEMORY_CASES.items():
        row = rows[("mnist_mlp400_memory", label)]
        assert (row["target"] == "") == (target is None)


def test_depth_plot_draws_after_before_and_skeleton(tmp_path):
    rows = [{"case": f"depth{d}_gs{g}", "optimizer": label, "ratio_to_adam": str(d * 0.1 + g)}
            for d in bench.DEPTHS for g in bench.GROUPS
            for label in ("samt_e hypergradient", "samt_e exact", bench.SKELETON)]
    assert bench.depth_points(rows, 4, bench.SKELETON) == [(d, d * 0.1 + 4)
                                                             for d in bench.DEPTHS]
    bench.plot_depth(rows, tmp_path / "depth.png", before=rows)
    assert (tmp_path / "depth.png").stat().st_size > 10_000


def test_resnet_bench_writes_every_layout_with_skeleton_share_and_verdicts(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_resnet.py"), "--rounds", "1", "--iters", "1",
         "--batch", "2", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "bench_resnet.csv", newline="") as fh:
        rows = {(r["layout"], r["optimizer"]): r for r in csv.DictReader(fh)}
    assert float(rows[("", "adam")]["ratio_to_adam"]) == 1.0
    for layout in ("per layer", "per stage", "one block"):
        assert float(rows[(layout, "skeleton")]["ratio_to_skeleton"]) == 1.0
        for row in ("samt_s exact", "samt_s hypergradient", "samt_e exact",
                    "samt_e hypergradient"):
            r = rows[(layout, row)]
            ratio, to_skeleton = float(r["ratio_to_adam"]), float(r["ratio_to_skeleton"])
            assert abs(float(r["meta_share"]) - (1 - 1 / to_skeleton)) < 1e-9
            time_ok = (to_skeleton <= 1.3 if layout == "per layer"
                       else ratio <= {"per stage": 2.0, "one block": 1.3}[layout])
            assert r["met"] == str(time_ok and float(r["memory_ratio"]) <= 2.0)
            assert any(line.startswith("resnet20") and layout in line and row in line
                       for line in done.stdout.splitlines())
