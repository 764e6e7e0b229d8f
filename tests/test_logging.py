"""The run's story in Hydra's job log (<run>/cli.log) and the TensorBoard tracker."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli

from samt.tracking import tag_of


def _run(tmp_path, *extra: str):
    run = tmp_path / "run"
    code = run_cli(["dataset=digits", "optimizer=samt_s", "model.hidden=[16]", "epochs=2",
                    "progress=false", "device=cpu", f"hydra.run.dir={run}", *extra])
    assert code in (None, 0)
    return run


def test_the_job_log_holds_config_device_every_epoch_and_the_end(tmp_path):
    run = _run(tmp_path)
    log = (run / "cli.log").read_text()
    assert "config:" in log and "step_type: scalar" in log
    assert "device cpu" in log and "optimizer samt_s" in log
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log
    assert "test accuracy" in log
    assert "run completed after 2 epochs" in log


def test_tensorboard_events_hold_the_metrics_csv_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="logger=tensorboard needs the tensorboard "
                        "package (pip install 'samt[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _run(tmp_path, "logger=tensorboard")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"train/loss", "test/metric", "samt/b0/eta_mean", "samt/b1/beta_mean"} <= tags
    for column in ("train_loss", "test_metric", "b0_eta_mean", "b1_grad_norm"):
        scalars = events.Scalars(tag_of(column))
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(
            [float(r[column]) for r in rows], rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_tensorboard_without_the_package_is_a_config_error(tmp_path, monkeypatch, capsys):
    import samt.tracking

    monkeypatch.setattr(samt.tracking, "tensorboard_available", lambda: False)
    code = run_cli(["dataset=digits", "logger=tensorboard", "epochs=1", "progress=false",
                    f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2
    assert "logger='tensorboard' is invalid: needs the tensorboard package" in \
        capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_tags_group_the_columns():
    assert tag_of("val_metric") == "val/metric" and tag_of("b3_clamped") == "samt/b3/clamped"
    assert tag_of("something") == "other/something"
