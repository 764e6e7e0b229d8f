"""The loggers of the config group ``conf/logger/``: MLflow (a local file store) and W&B
(offline), each tested by reading back what it wrote; several at once; and a logger whose
package is missing is a one-line user error that leaves the run folder as it was. MLflow and W&B
are optional extras: their tests skip with the reason when the package is absent.
(TensorBoard: tests/test_logging.py; the tags: tests/test_tags.py.)"""

from __future__ import annotations

import csv
import glob
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from helpers import digits_args, digits_config, error_lines, read_summary

import samt.tracking
from samt.tracking import (
    MLFLOW_DIR,
    MLFLOW_TAGS,
    MlflowTracker,
    TrackerError,
    Trackers,
    WandbTracker,
    make_tracker,
    tag_of,
)
from samt.train.runner import Run

TAGS = ["baseline", "lr sweep"]
COLUMNS = ("train_loss", "test_metric", "b0_eta_mean", "b1_grad_norm")


def _needs(module: str, extra: str) -> None:
    pytest.importorskip(module, reason=f"logger={extra} needs the optional {module} package "
                        f"(pip install 'samt[{extra}]')")


def _run(tmp_path: Path, *overrides: str, epochs: int = 1) -> tuple[Path, list[dict]]:
    """A digits run of SAMT (two blocks) through the runner, in-process; its folder and rows."""
    folder = tmp_path / "run"
    cfg = digits_config(tmp_path, "optimizer=samt_s", "model.hidden=[16]", f"epochs={epochs}",
                        "tags=[baseline,lr sweep]", *overrides)
    Run(cfg, folder).execute()
    assert read_summary(folder)["status"] == "completed"
    with open(folder / "metrics.csv", newline="") as fh:
        return folder, list(csv.DictReader(fh))


# --- MLflow --------------------------------------------------------------------------------------


def _mlflow_client(store: Path) -> Any:
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(store.resolve().as_uri())


def _mlflow_runs(store: Path) -> list[Any]:
    client = _mlflow_client(store)
    experiment = client.get_experiment_by_name("samt")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])


def test_mlflow_holds_the_metrics_csv_scalars_the_tags_and_the_config(tmp_path):
    _needs("mlflow", "mlflow")
    folder, rows = _run(tmp_path, "logger=mlflow", epochs=2)
    (run,) = _mlflow_runs(folder / MLFLOW_DIR)
    client = _mlflow_client(folder / MLFLOW_DIR)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags[MLFLOW_TAGS] == "baseline, lr sweep"
    params = run.data.params
    assert params["optimizer.label"] == "samt_s" and params["model.hidden"] == "[16]"
    assert params["epochs"] == "2" and params["dataset.name"] == "digits"
    assert not any(key.startswith("logger") for key in params)
    for column in COLUMNS:
        history = client.get_metric_history(run.info.run_id, tag_of(column))
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([float(r[column]) for r in rows])


def test_the_mlflow_and_wandb_runs_end_with_the_runs_outcome(tmp_path, monkeypatch):
    """A diverged run ends its MLflow run FAILED (not FINISHED) and its W&B run with exit
    code 1; an interrupted one KILLED."""
    _needs("mlflow", "mlflow")
    for status in ("diverged", "interrupted", "reached_target"):
        settings = {"tracking_uri": None, "experiment_name": "samt", "run_name": status}
        tracker = MlflowTracker(tmp_path, settings, (), {"seed": 0}, resume=False)
        tracker.open()
        tracker.close(status)
    ended = {r.info.run_name: r.info.status for r in _mlflow_runs(tmp_path / MLFLOW_DIR)}
    assert ended == {"diverged": "FAILED", "interrupted": "KILLED",
                     "reached_target": "FINISHED"}
    finished: list[int] = []

    class FakeWandbRun:
        def finish(self, exit_code: int = 0) -> None:
            finished.append(exit_code)
    wandb = WandbTracker.__new__(WandbTracker)
    for status in ("completed", "failed", "reached_target"):
        wandb.run = FakeWandbRun()
        wandb.close(status)
    assert finished == [0, 1, 0]


def test_mlflow_settings_name_the_store_experiment_and_run(tmp_path):
    _needs("mlflow", "mlflow")
    store = tmp_path / "elsewhere"
    folder, _ = _run(tmp_path, "logger=mlflow", f"logger.mlflow.tracking_uri={store}",
                     "logger.mlflow.experiment_name=lr", "logger.mlflow.run_name=first")
    assert not (folder / MLFLOW_DIR).exists()
    client = _mlflow_client(store)
    (run,) = client.search_runs([client.get_experiment_by_name("lr").experiment_id])
    assert run.info.run_name == "first"


def test_a_resumed_run_continues_its_mlflow_run_a_fresh_start_makes_a_new_one(tmp_path):
    _needs("mlflow", "mlflow")
    settings = {"tracking_uri": None, "experiment_name": "samt", "run_name": None}
    for epoch, resume in ((1, False), (2, True), (1, False)):
        tracker = MlflowTracker(tmp_path, settings, ("a",), {"seed": 0}, resume=resume)
        tracker.open()
        tracker.log_row({"epoch": epoch, "train_loss": float(epoch), "val_loss": None})
        tracker.close()
    first, second = _mlflow_runs(tmp_path / MLFLOW_DIR)
    client = _mlflow_client(tmp_path / MLFLOW_DIR)
    assert [m.step for m in client.get_metric_history(first.info.run_id, "train/loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(second.info.run_id, "train/loss")] == [1]
    assert client.get_metric_history(first.info.run_id, "val/loss") == []  # empty cells


def test_an_mlflow_store_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
    _needs("mlflow", "mlflow")
    (tmp_path / MLFLOW_DIR).write_text("mine\n")
    with pytest.raises(TrackerError, match=r"^logger='mlflow' is invalid: .*mlruns is a file"):
        make_tracker({"mlflow": {}}, tmp_path)
    with pytest.raises(TrackerError, match=r"^logger.mlflow.tracking_uri='.*' is invalid"):
        make_tracker({"mlflow": {"tracking_uri": str(tmp_path / MLFLOW_DIR / "x")}}, tmp_path)
    assert (tmp_path / MLFLOW_DIR).read_text() == "mine\n"


# --- W&B, offline --------------------------------------------------------------------------------


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run file (``run-*.wandb``): a LevelDB-style log (a 7-byte
    header ``:W&B``, magic, version; 32 KiB blocks of chunks, each with a 7-byte header: CRC,
    length, type full/first/middle/last) of protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, records, parts = 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
    return records


def _wandb_run(folder: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The offline W&B run in ``folder/wandb``: its run record and its history rows."""
    (path,) = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = _wandb_records(Path(path))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    return run, history


def test_wandb_offline_holds_the_metrics_csv_scalars_the_tags_and_the_config(tmp_path):
    _needs("wandb", "wandb")
    folder, rows = _run(tmp_path, "logger=wandb", epochs=2)
    run, history = _wandb_run(folder)  # offline-run-*: written here, never sent
    assert list(run.tags) == TAGS and run.project == "samt" and run.display_name == "run"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["optimizer"]["label"] == "samt_s" and config["model"]["hidden"] == [16]
    assert "logger" not in config
    assert [h["_step"] for h in history] == [1, 2]
    for column in COLUMNS:
        assert [h[tag_of(column)] for h in history] == pytest.approx(
            [float(r[column]) for r in rows])


def test_wandb_refuses_a_tag_longer_than_it_takes(tmp_path):
    _needs("wandb", "wandb")
    with pytest.raises(TrackerError, match="^logger='wandb' is invalid: W&B takes tags of at "
                                           "most 64 characters"):
        WandbTracker(tmp_path, {}, ("x" * 65,))


# --- several at once -----------------------------------------------------------------------------


def test_logger_many_writes_every_tracker(tmp_path):
    for module, extra in (("tensorboard", "tensorboard"), ("mlflow", "mlflow"),
                          ("wandb", "wandb")):
        _needs(module, extra)
    folder, rows = _run(tmp_path, "logger=many")
    assert sorted(p.name for p in (folder / "tensorboard").iterdir())[0].startswith("events")
    (run,) = _mlflow_runs(folder / MLFLOW_DIR)
    history = _mlflow_client(folder / MLFLOW_DIR).get_metric_history(run.info.run_id,
                                                                      "test/metric")
    assert [m.value for m in history] == pytest.approx([float(rows[0]["test_metric"])])
    assert _wandb_run(folder)[1][0]["test/metric"] == pytest.approx(float(rows[0]["test_metric"]))


class _Fake:
    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail

    def open(self) -> None:
        if self.fail:
            raise OSError(f"{self.name} cannot open")
        self.log.append(f"open {self.name}")

    def log_row(self, row: dict[str, Any]) -> None:
        self.log.append(f"row {self.name}")

    def close(self, status: str = "completed") -> None:
        self.log.append(f"close {self.name} {status}")


def test_trackers_close_what_opened_when_one_cannot_open():
    log: list[str] = []
    trackers = Trackers([_Fake(log, "a"), _Fake(log, "b", fail=True), _Fake(log, "c")])
    with pytest.raises(OSError, match="b cannot open"):
        trackers.open()
    assert log == ["open a", "close a failed"]


def test_csv_and_none_write_nothing_beyond_metrics_csv(tmp_path):
    assert type(make_tracker({"csv": {}}, tmp_path)).__name__ == "NoTracker"
    assert type(make_tracker({}, tmp_path)).__name__ == "NoTracker"
    assert type(make_tracker("none", tmp_path)).__name__ == "NoTracker"


# --- a missing extra: one line, before the run touches its folder ---------------------------------


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_line_and_keeps_a_finished_run(logger, tmp_path, monkeypatch,
                                                               capsys):
    folder = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()
             and p.name != "cli.log"}
    capsys.readouterr()
    monkeypatch.setattr(samt.tracking, "package_available", lambda module: module != logger)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", f"logger={logger}",
                               "resume=false")) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert line == (f"samt-run: error: logger={logger!r} is invalid: needs the {logger} package: "
                    f"pip install 'samt[{logger}]' (or pip install "
                    f"{'mlflow-skinny' if logger == 'mlflow' else 'wandb'}); or use logger=none")
    assert all((folder / name).read_bytes() == data for name, data in files.items())
    assert not (folder / MLFLOW_DIR).exists() and not (folder / "wandb").exists()

    # The runner itself (no samt-run) refuses it the same way, before the folder is touched.
    cfg = digits_config(tmp_path, "optimizer=adam", "model.hidden=[8]", "epochs=1",
                        f"logger={logger}", "resume=false")
    with pytest.raises(TrackerError, match=f"^logger='{logger}' is invalid: needs the"):
        Run(cfg, folder).execute()
    assert all((folder / name).read_bytes() == data for name, data in files.items())
