"""What a sweep checks before it starts and what each of its jobs returns to the sweeper.

Every job of a sweep (Hydra's basic sweeper, the job-list sweeper) is composed and validated
before the first job starts: a bad value in any job is one line naming the job, exit 2, with
nothing written. A job returns ``optimized_metric`` (by default the final validation metric),
the value a tuner such as Optuna optimizes; with no validation split it returns the test metric
and says so."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import CONF_DIR, run_cli
from hydra import compose, initialize_config_dir

from samt.cli import OPTIMIZED_METRICS, optimized_value, resolve_config, run_job
from samt.schema import OPTIMIZED_METRICS as SCHEMA_CHOICES

FAST = ["dataset=digits", "epochs=1", "progress=false", "device=cpu", "model.hidden=[16]"]


def test_every_optimized_metric_choice_has_a_reader():
    assert tuple(OPTIMIZED_METRICS) == SCHEMA_CHOICES


def test_the_optimized_value_is_the_validation_metric_when_there_is_a_split():
    summary = {"val_size": 100, "final": {"val_metric": 91.0, "test_metric": 93.0},
               "best_val_metric": 92.0, "best_test_metric": 94.0}
    assert optimized_value(summary, "val_metric") == (91.0, None)
    assert optimized_value(summary, "best_val_metric") == (92.0, None)
    assert optimized_value(summary, "test_metric") == (93.0, None)
    assert optimized_value({"val_size": 100, "final": None}, "val_metric") == (None, None)


def test_without_a_split_the_test_metric_is_returned_with_a_warning():
    summary = {"val_size": 0, "final": {"val_metric": None, "test_metric": 93.0}}
    value, warning = optimized_value(summary, "val_metric")
    assert value == 93.0
    assert "data.val_fraction" in warning and "test set" in warning
    assert optimized_value(summary, "test_metric") == (93.0, None)  # asked for: no warning


def test_a_run_returns_its_final_validation_metric(tmp_path: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config",
                      overrides=[*FAST, "optimizer=sgd", "data.val_fraction=0.2"])
    value = run_job(resolve_config(cfg), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_size"] > 0
    assert value == summary["final"]["val_metric"] != summary["final"]["test_metric"]


def test_a_sweep_refuses_a_bad_job_before_the_first_starts(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    code = run_cli(["-m", *FAST, "optimizer=sgd", "optimizer.lr=0.1,-1",
                    f"hydra.sweep.dir={sweep}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [err[0]] and err[0].startswith("samt-run: error: sweep job #1 (")
    assert "optimizer.lr=-1)" in err[0] and err[0].endswith("optimizer.lr=-1 is invalid: "
                                                            "must be > 0.0")
    assert not sweep.exists()  # job #0 did not run: nothing was written


def test_a_job_list_is_checked_job_by_job(tmp_path: Path, capsys):
    """A value that does not compose (an unknown optimizer) is named with its job, in one
    line, as a value the schema refuses is."""
    jobs = tmp_path / "jobs.yaml"
    sweep = tmp_path / "sweep"
    for bad, says in (("optimizer=nosuch", "Could not find 'optimizer/nosuch'"),
                      ("seed=-3", "seed=-3 is invalid")):
        jobs.write_text(f"- [optimizer=sgd]\n- [{bad}]\n")
        code = run_cli(["-m", "hydra/sweeper=job_list", f"hydra.sweeper.jobs={jobs}", *FAST,
                        f"hydra.sweep.dir={sweep}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"samt-run: error: sweep job #1 ({bad} ") and says in err[0]
        assert not sweep.exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="the optuna extra is not installed (pip install 'samt[optuna]')")
def test_the_optuna_preset_tunes_on_the_validation_metric(tmp_path: Path):
    sweep = tmp_path / "sweep"
    code = run_cli(["-m", "search=optuna_lr", *FAST, "optimizer=sgd",
                    "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"])
    assert code in (None, 0)
    from omegaconf import OmegaConf

    best = OmegaConf.load(sweep / "optimization_results.yaml")
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == 3 and all(s["val_size"] > 0 for s in summaries)
    val = max(s["final"]["val_metric"] for s in summaries)
    assert best.best_value == pytest.approx(val)
    chosen = next(s for s in summaries if s["final"]["val_metric"] == val)
    assert chosen["final"]["test_metric"] != val
