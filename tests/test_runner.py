"""End-to-end runs of the runner and the CLI on small offline data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import CONF_DIR
from helpers import digits_config, read_rows

from samt.train import run_training
from samt.train.records import BASE_COLUMNS

SAMT_COLUMNS = ("eta_mean", "eta_std", "beta_mean", "grad_norm", "meta_loss", "skipped", "clamped")






def test_tiny_run_writes_documented_outputs(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_training(digits_config(tmp_path, "optimizer=adam", "epochs=3",
                                         "model.hidden=[32]"), run_dir)
    rows = read_rows(run_dir, wall=True)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert tuple(rows[0])[:len(BASE_COLUMNS)] == BASE_COLUMNS
    assert int(rows[-1]["iterations"]) == 3 * -(-1438 // 128)
    assert int(rows[-1]["param_updates"]) == 2 * int(rows[-1]["iterations"])
    assert float(rows[-1]["wall_time_s"]) == pytest.approx(
        sum(float(r["epoch_time_s"]) for r in rows))
    assert float(rows[-1]["test_metric"]) > 60.0  # digits, 3 epochs of Adam (chance: 10)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "completed"
    assert on_disk["final"]["test_metric"] == pytest.approx(float(rows[-1]["test_metric"]))
    assert on_disk["best_test_metric"] == max(float(r["test_metric"]) for r in rows)
    assert (run_dir / "learning_curves.png").stat().st_size > 1000


def test_samt_run_logs_per_block_statistics(tmp_path):
    run_dir = tmp_path / "run"
    run_training(digits_config(tmp_path, "optimizer=samt_e", "epochs=2", "model.hidden=[32]"),
                 run_dir)
    rows = read_rows(run_dir, wall=True)
    for k in range(2):
        for name in SAMT_COLUMNS:
            assert f"b{k}_{name}" in rows[0]
        assert 0.0 < float(rows[-1][f"b{k}_eta_mean"]) <= 1.0
        assert 0.0 <= float(rows[-1][f"b{k}_beta_mean"]) <= 1.0
    assert float(rows[-1]["test_metric"]) > 70.0
    assert (run_dir / "samt_steps.png").stat().st_size > 1000


def test_same_seed_gives_identical_metrics(tmp_path):
    cfg = digits_config(tmp_path, "optimizer=samt_s", "epochs=2", "model.hidden=[16]", "seed=3")
    run_training(cfg, tmp_path / "a")
    run_training(cfg, tmp_path / "b")
    assert read_rows(tmp_path / "a") == read_rows(tmp_path / "b")  # wall-time columns aside


def test_regression_run_reports_rmse_in_original_units(tmp_path):
    import numpy as np
    from fixtures_data import write_uci

    table = np.random.default_rng(0).normal(size=(60, 5)) * 10 + 50
    write_uci(tmp_path, "concrete", table, features=range(4), target=4,
              splits=[(range(0, 45), range(45, 60))])
    run_training(digits_config(tmp_path, "dataset=uci_concrete", "model=regression_mlp",
                         "optimizer=sgd", "optimizer.lr=0.01", "epochs=2", "batch_size=16"),
                 tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "rmse" and summary["higher_is_better"] is False
    assert summary["final"]["test_metric"] > 0


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from samt.cli import run_main; run_main()", *args,
         f"data.root={tmp_path}", "device=cpu", "progress=false",
         f"hydra.run.dir={tmp_path}/out", f"hydra.sweep.dir={tmp_path}/sweep"],
        capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # real processes, about 10-25 s: make test-slow
def test_cli_run_and_multirun(tmp_path):
    done = _cli(tmp_path, "dataset=digits", "model=cnn", "optimizer=sgd", "optimizer.lr=0.05",
                "epochs=1", "seed=1")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "completed"
    sweep = _cli(tmp_path, "-m", "dataset=digits", "model.hidden=[8]", "optimizer=adam,sgd",
                 "seed=0,1", "epochs=1")
    assert sweep.returncode == 0, sweep.stderr
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert len(summaries) == 4


def test_cli_bad_value_is_one_clear_error_and_leaves_no_result(tmp_path):
    done = _cli(tmp_path, "dataset=digits", "optimizer=samt_e", "optimizer.eta_min=3.0")
    assert done.returncode != 0
    assert "optimizer.eta_min" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_missing_dataset_offline_names_what_to_do(tmp_path):
    done = _cli(tmp_path, "dataset=kmnist", "data.download=false")
    assert done.returncode != 0
    assert "kmnist" in done.stderr.lower() and str(tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


SAMT_PRESETS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml")
                      if p.stem.startswith(("samt", "am_")))


@pytest.mark.parametrize("preset", SAMT_PRESETS)
def test_every_samt_preset_trains_end_to_end(preset, tmp_path):
    run_training(digits_config(tmp_path, f"optimizer={preset}", "epochs=1", "model.hidden=[16]"),
                 tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final"]["test_metric"] > 20.0  # chance is 10 %


@pytest.mark.slow  # a real process (make test-slow)
def test_samt_in_your_loop_example_runs():
    from conftest import REPO

    done = subprocess.run([sys.executable, str(REPO / "scripts" / "samt_in_your_loop.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "MLP: test accuracy" in done.stdout and "SAMTModelError" in done.stdout
