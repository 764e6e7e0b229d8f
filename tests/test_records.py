"""The run folder's records: summary.json built from the rows in one place, non-finite numbers
null at any depth, samt_meta.pt and plots at the end of a finished run (docs/outputs.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from samt.train.folder import RunFolder, Summary
from samt.train.records import write_json


def test_nested_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"final": {"test_metric": math.nan, "train_loss": 0.5},
                      "best_test_metric": math.inf, "curve": [1.0, -math.inf], "n": 3})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"final": {"test_metric": None, "train_loss": 0.5},
                                "best_test_metric": None, "curve": [1.0, None], "n": 3}


def _row(epoch: int, test: float, val: float | None) -> dict:
    return {"epoch": epoch, "train_loss": 0.5, "train_metric": 90.0, "test_loss": 0.6,
            "test_metric": test, "epoch_time_s": 1.0, "wall_time_s": float(epoch),
            "iterations": 10 * epoch, "param_updates": 20 * epoch, "skipped": 0,
            "val_loss": None if val is None else 0.7, "val_metric": val}


def _summary() -> Summary:
    summary = Summary.start({"dataset": {"name": "digits"}, "model": {"name": "mlp"},
                             "optimizer": {"name": "adam", "label": "adam"}, "seed": 0,
                             "epochs": 3})
    summary.describe(task="classification", device="cpu", num_params=10, train_size=100,
                     test_size=50, val_size=0, split={"dataset_split": 0})
    return summary


def test_the_run_folder_writes_the_summary_from_the_rows(tmp_path):
    """One place builds summary.json: its final and best fields follow the rows written, and a
    nested non-finite number (the last epoch's test metric) is null."""
    folder, summary = RunFolder(tmp_path), _summary()
    rows = [_row(1, 91.0, 80.0), _row(2, 93.0, 79.0), _row(3, math.nan, math.nan)]
    folder.record(rows, summary)
    data = json.loads(folder.summary_path.read_text())
    assert data["status"] == "running" and data["metric"] == "accuracy"
    assert data["epochs_completed"] == 3 and data["final"]["test_metric"] is None
    assert (data["best_test_metric"], data["best_epoch"]) == (93.0, 2)
    assert (data["best_val_metric"], data["best_val_epoch"]) == (80.0, 1)
    assert (data["wall_time_s"], data["iterations"], data["param_updates"]) == (3.0, 30, 60)
    assert [r["epoch"] for r in folder.read_rows()] == [1, 2, 3]
    assert folder.read_summary() == data
    assert not folder.meta_path.exists() and not folder.learning_curves_path.exists()


class _MetaStepper:
    """An optimizer with meta-parameters, as the run folder sees one: every member of the
    runner's ``MetaStepper`` protocol (``samt/train/stepper.py``)."""

    has_meta = True
    param_updates = 0
    skipped_total = 0

    def step(self, inputs, targets):
        raise AssertionError("the run folder never steps")

    def train_mode(self) -> None: ...

    def eval_mode(self) -> None: ...

    def set_scale(self, scale: float) -> None: ...

    def epoch_stats(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...

    def load_meta(self, source) -> Path:
        return Path(source)

    def save_meta(self, path: Path) -> None:
        path.write_bytes(b"meta")


def test_the_final_record_writes_meta_and_plots_for_a_finished_run_only(tmp_path):
    rows = [_row(1, 91.0, None)]
    for status, optimizer, meta in (("completed", _MetaStepper(), True),
                                    ("failed", _MetaStepper(), False),
                                    ("diverged", object(), False)):
        folder, summary = RunFolder(tmp_path / status), _summary()
        folder.create()
        summary.stop(status)
        folder.record(rows, summary, final=True, optimizer=optimizer)
        assert folder.meta_path.exists() == meta, status
        assert folder.learning_curves_path.stat().st_size > 1000
        assert not folder.samt_steps_path.exists()  # no SAMT block columns in the rows
        assert folder.read_summary()["status"] == status


def test_a_meta_file_that_cannot_be_written_is_a_warning(tmp_path):
    class Broken(_MetaStepper):
        def save_meta(self, path: Path) -> None:
            raise OSError("disk full")

    warnings: list[str] = []
    summary = _summary()
    summary.stop("completed")
    RunFolder(tmp_path).record([_row(1, 91.0, None)], summary, final=True, optimizer=Broken(),
                               warn=warnings.append)
    assert warnings == ["samt_meta.pt not written: OSError: disk full"]
    assert RunFolder(tmp_path).read_summary()["status"] == "completed"
