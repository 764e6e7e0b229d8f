"""``stop_at_target``: a run ends after the first epoch whose validation metric reaches it, with
status ``reached_target`` and what it took in summary.json; it needs a validation split; a
rerun leaves it alone; samt-report and samt-reproduce count it finished (docs/tuning.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import digits_args, digits_config, error_lines, read_rows, read_summary

from samt.cli import report_run
from samt.report.cli import main as report_main
from samt.train import run_training
from samt.train.runner import Run
from samt.tune.reproduce import completed, finished
from samt.validation import ConfigError, validate_config

TARGET = 80.0  # validation accuracy in %: reached within a few of the 10 epochs allowed


def _config(root: Path, *overrides: str) -> dict:
    return digits_config(root, "optimizer=adam", "optimizer.lr=0.01", "model.hidden=[16]",
                         "epochs=10", "data.val_fraction=0.25", *overrides)


@pytest.fixture(scope="module")
def reached(tmp_path_factory) -> tuple[dict, Path]:
    """A digits run with ``stop_at_target=80``: (its config, its folder)."""
    root = tmp_path_factory.mktemp("target")
    cfg = _config(root, f"stop_at_target={TARGET}")
    run_training(cfg, root / "runs" / "run")
    return cfg, root / "runs" / "run"


def test_the_run_stops_after_the_epoch_that_reaches_the_target(reached):
    _, folder = reached
    rows = [{k: float(v) for k, v in r.items()} for r in read_rows(folder, wall=True)]
    summary = read_summary(folder)
    epoch = len(rows)
    assert 1 <= epoch < 10, "the target is reached before the last epoch"
    assert rows[-1]["val_metric"] >= TARGET
    assert all(r["val_metric"] < TARGET for r in rows[:-1]), "it stops at the first such epoch"
    assert summary["status"] == "reached_target" and summary["error"] is None
    assert (summary["stop_at_target"], summary["epochs"], summary["epochs_completed"]) == (
        TARGET, 10, epoch)
    assert summary["reached_target"] == {
        "epoch": epoch, "val_metric": pytest.approx(rows[-1]["val_metric"]),
        "wall_time_s": pytest.approx(rows[-1]["wall_time_s"]),
        "param_updates": int(rows[-1]["param_updates"]),
        "iterations": int(rows[-1]["iterations"])}
    # Adam updates both Linear layers once per iteration: 9 batches of 128 of 1078 per epoch.
    assert summary["reached_target"]["param_updates"] == 2 * 9 * epoch
    assert (folder / "checkpoint.pt").is_file() and (folder / "learning_curves.png").is_file()
    head = report_run(summary, folder, 1.0).splitlines()[0]
    assert head.startswith("samt-run: run reached_target: val accuracy ") and \
        f">= {TARGET} after epoch {epoch}: " in head and \
        f"{2 * 9 * epoch} parameter updates" in head


def test_a_rerun_of_a_run_that_reached_its_target_does_nothing(reached):
    cfg, folder = reached
    before = (folder / "metrics.csv").read_bytes()
    run = Run(cfg, folder)
    run.execute()
    assert run.outcome == "done" and run.summary["status"] == "reached_target"
    assert (folder / "metrics.csv").read_bytes() == before


def test_a_run_killed_after_its_target_epoch_resumes_into_the_stop(reached, tmp_path):
    """The checkpoint of the target epoch was written, summary.json not yet: the rerun stops
    at once with the same numbers instead of training on."""
    cfg, source = reached
    folder = tmp_path / "killed"
    folder.mkdir()
    for name in ("checkpoint.pt", "metrics.csv", "config.yaml"):
        (folder / name).write_bytes((source / name).read_bytes())
    summary = read_summary(source)
    (folder / "summary.json").write_text(json.dumps({**summary, "status": "running",
                                                     "reached_target": None}))
    run = Run(cfg, folder)
    run.execute()
    assert run.outcome == "resumed"
    assert run.summary["status"] == "reached_target"
    assert run.summary["reached_target"] == summary["reached_target"]
    assert read_rows(folder, wall=True) == read_rows(source, wall=True)


def test_samt_report_and_samt_reproduce_count_it_finished(reached, capsys):
    _, folder = reached
    out = folder.parent / "report"
    assert report_main([str(folder.parent), "--out", str(out), "--formats", "csv"]) == 0
    capsys.readouterr()
    with open(out / "aggregates.csv") as fh:
        (agg,) = list(csv.DictReader(fh))
    assert (int(agg["runs"]), int(agg["completed"]), int(agg["failed"])) == (1, 1, 0)
    final = read_summary(folder)["final"]["test_metric"]
    assert float(agg["final_test_metric_mean"]) == pytest.approx(final)
    with open(out / "all_runs.csv") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["reached_target"]
    assert completed(folder) and finished(folder)


@pytest.mark.parametrize("overrides, needle", [
    ((f"stop_at_target={TARGET}", "data.val_fraction=0"),
     r"^stop_at_target=80\.0 is invalid: needs a validation split, .*data\.val_fraction > 0"),
    (("stop_at_target=0",), r"^stop_at_target=0 is invalid: must be > 0\.0"),
    (("stop_at_target=high",), r"^stop_at_target='high' is invalid: expected a number"),
])
def test_a_bad_target_is_refused_naming_the_key(tmp_path, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(_config(tmp_path, *overrides))


def test_an_accuracy_target_above_100_is_refused_before_training(tmp_path):
    cfg = _config(tmp_path, "stop_at_target=150")
    validate_config(cfg)  # the metric is known once the dataset is loaded
    with pytest.raises(ConfigError, match=r"^stop_at_target=150 is invalid: .*accuracy in "
                                          r"percent.*\(0, 100\]$"):
        run_training(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_samt_run_refuses_a_target_without_a_validation_split_in_one_line(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    args = digits_args(tmp_path, "stop_at_target=90", f"hydra.run.dir={tmp_path / 'run'}")
    assert run_cli(args) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert error == ("samt-run: error: stop_at_target=90 is invalid: needs a validation split, "
                     "whose metric it is compared with: set data.val_fraction > 0 (e.g. 0.1); "
                     "allowed without one: null")
    assert not (tmp_path / "run").exists()
