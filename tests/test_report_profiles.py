"""samt-report's protocol outputs on fixture run folders with known numbers: the significance
table, the validation-metric table, time to the validation target and the Dolan-More
performance profiles (docs/report.md)."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from test_report import ADAM, SAMT_E, SGD, md_rows, write_run

from samt.report.aggregate import profile_costs
from samt.report.cli import main
from samt.report.stats import performance_profile
from samt.report.tables import tex_escape

# (optimizer, validation curve per seed, seconds per epoch, updates per epoch)
MNIST = [(SGD, [[97.0, 98.0, 99.0], [97.0, 98.0, 99.0]], 1.0, 200),
         (ADAM, [[98.0, 99.0, 99.5], [98.0, 99.0, 99.5]], 2.0, 200),
         # one seed of two reaches 99 (epoch 1): not more than half, so not reached
         (SAMT_E, [[96.0, 97.0, 98.0], [99.0, 99.0, 99.0]], 1.0, 100)]
BOSTON = [(SGD, [[5.0, 4.0, 3.0], [5.0, 4.0, 3.0]], 1.0, 200),   # RMSE: lower is better
          (ADAM, [[4.0, 3.5, 3.2], [4.0, 3.5, 3.2]], 1.0, 200),
          (SAMT_E, [[3.0, 2.5, 2.4], [3.0, 2.5, 2.4]], 2.0, 100)]


def make_runs(root: Path) -> Path:
    for dataset, model, plan in (("mnist", "mlp", MNIST), ("uci_boston", "regression_mlp",
                                                           BOSTON)):
        for optimizer, curves, seconds, updates in plan:
            for seed, val in enumerate(curves):
                write_run(root / f"{dataset}_{optimizer['label']}_s{seed}", dataset=dataset,
                          model=model, optimizer=optimizer, seed=seed, test=[50.0 + seed] * 3,
                          val=val, epoch_time=seconds, updates_per_epoch=updates)
    return root


def run_report(root: Path, *extra: str) -> tuple[Path, str]:
    out = root / "report"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(root), "--out", str(out), *extra]) == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    return run_report(make_runs(tmp_path_factory.mktemp("profiles")))


def long_rows(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "val_time_to_target_long.csv") as fh:
        return {(r["row"], r["column"]): r for r in csv.DictReader(fh)}


def test_auto_validation_targets_and_costs(report):
    out, stdout = report
    rows = long_rows(out)
    # mnist: best val means 99 (sgd), 99.5 (adam), 98.5 (samt) -> median 99.
    sgd, adam, samt = (rows[("mnist / mlp", c)] for c in ("sgd", "adam", "samt_e"))
    assert float(sgd["target"]) == 99.0 and sgd["direction"] == ">=" and "auto" in sgd["rule"]
    assert (float(sgd["seconds"]), float(sgd["param_updates"])) == (3.0, 600.0)
    assert (float(adam["seconds"]), float(adam["param_updates"])) == (4.0, 400.0)
    assert samt["reached"] == "1" and math.isinf(float(samt["seconds"]))
    # uci_boston: best RMSE means 3.0, 3.2, 2.4 -> median 3.0, reached when <= 3.0.
    b_sgd, b_adam, b_samt = (rows[("uci_boston / regression_mlp", c)]
                             for c in ("sgd", "adam", "samt_e"))
    assert float(b_sgd["target"]) == 3.0 and b_sgd["direction"] == "<="
    assert (float(b_sgd["seconds"]), float(b_samt["seconds"])) == (3.0, 2.0)
    assert float(b_samt["param_updates"]) == 100.0 and math.isinf(float(b_adam["seconds"]))
    table = md_rows(out / "val_time_to_target.md")
    assert table["mnist / mlp"]  # rendered; one line per group
    text = (out / "val_time_to_target.md").read_text()
    assert "| mnist / mlp | >= 99.00 | samt_e | 1/2 | not reached | not reached |" in text
    assert "performance profiles: 2 workload(s)" in stdout


def test_performance_profiles_from_the_costs(report):
    out, _ = report
    costs = pd.read_csv(out / "val_time_to_target_long.csv")
    taus = [1.0, 1.4, 1.5, 6.0]
    seconds = performance_profile(profile_costs(costs, "seconds"), taus)
    # seconds: mnist best 3 (sgd; adam 4/3, samt never); boston best 2 (samt; sgd 1.5, adam never)
    assert seconds["sgd"] == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert seconds["adam"] == pytest.approx([0.0, 0.5, 0.5, 0.5])
    assert seconds["samt_e"] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    updates = performance_profile(profile_costs(costs, "param_updates"), taus)
    # updates: mnist best 400 (adam; sgd 1.5); boston best 100 (samt; sgd 6)
    assert updates["sgd"] == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert updates["adam"] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    png = out / "plots" / "performance_profile.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plots" / "performance_profile.pdf").read_bytes()[:5] == b"%PDF-"
    assert "plots/performance_profile.png" in (out / "report.md").read_text()


def test_significance_and_validation_tables_are_written(report):
    out, _ = report
    index = (out / "report.md").read_text()
    for name in ("significance", "final_val_metric", "val_time_to_target"):
        assert f"## {name}" in index, name
        for fmt in ("md", "tex", "csv"):
            assert (out / f"{name}.{fmt}").is_file(), (name, fmt)
    with open(out / "significance.csv") as fh:
        sig = {(r["dataset / model"], r["optimizer"]): r for r in csv.DictReader(fh)}
    # test metric 50 (seed 0) and 51 (seed 1) for every optimizer: no difference
    assert sig[("mnist / mlp", "sgd")]["n"] == "2"
    assert sig[("mnist / mlp", "adam")][
        "against the row's best (Welch, two-sided)"].startswith("no significant difference")
    val = md_rows(out / "final_val_metric.md")["mnist / mlp"]
    assert val["adam"] == "**99.50 ± 0.00**" and val["samt_e"] == "98.50 ± 0.71"
    assert tex_escape("worse (p<0.001)") == "worse (p$<$0.001)"  # not OT1's inverted "!"
    assert tex_escape(">= 98") == r"$\geq$ 98"


def test_given_validation_target_replaces_the_auto_rule(tmp_path):
    out, _ = run_report(make_runs(tmp_path / "runs"), "--val-target", "mnist=99.5")
    rows = long_rows(out)
    adam = rows[("mnist / mlp", "adam")]
    assert float(adam["target"]) == 99.5 and adam["rule"].startswith("given")
    assert float(adam["seconds"]) == 6.0
    assert math.isinf(float(rows[("mnist / mlp", "sgd")]["seconds"]))
    assert float(rows[("uci_boston / regression_mlp", "sgd")]["target"]) == 3.0  # auto


def test_bad_val_target_is_a_usage_error(tmp_path, capsys):
    make_runs(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--val-target", "mnist=high"])
    assert exc.value.code == 2 and "--val-target 'mnist=high'" in capsys.readouterr().err


def test_profiles_only_across_tables_leave_out_optimizers_not_run_everywhere(tmp_path):
    """``--profiles-only`` over several tables' runs: only the validation time-to-target table
    and the profile figure; an optimizer that one table did not run is left out of the
    profiles (it would count as failing there) and named."""
    root = make_runs(tmp_path / "runs")
    extra = {**ADAM, "label": "adam_extra"}
    for seed, val in enumerate([[98.0, 99.0, 99.5], [98.0, 99.0, 99.5]]):
        write_run(root / f"mnist_adam_extra_s{seed}", dataset="mnist", model="mlp",
                  optimizer=extra, seed=seed, test=[50.0] * 3, val=val, epoch_time=0.5,
                  updates_per_epoch=200)
    out, stdout = run_report(root, "--profiles-only", "--columns", "per-row")
    assert (out / "plots" / "performance_profile.png").is_file()
    assert (out / "val_time_to_target.md").is_file()
    assert not (out / "final_test_metric.md").exists() and not (out / "all_runs.csv").exists()
    assert not list((out / "plots").glob("curves_*"))
    assert "leave out adam_extra: not run on every workload" in stdout
    from samt.report.aggregate import on_every_workload

    frame = pd.DataFrame([{"row": "a", "column": "x"}, {"row": "b", "column": "x"},
                          {"row": "a", "column": "y"}])
    kept, dropped = on_every_workload(frame)
    assert dropped == ["y"] and set(kept["column"]) == {"x"}
