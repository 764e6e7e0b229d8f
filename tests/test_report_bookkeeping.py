"""Keys that change no number of a run (loggers, tags, paths, progress bars) never split the
report's groups: a run logged to TensorBoard sits in the same row as one logged nowhere, and
both are compared in one significance table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from samt.report.aggregate import build_groups, is_group_key
from samt.report.collect import Run


def run(seed: int, **extra) -> Run:
    config = {"dataset.name": "uci_boston", "model.name": "regression_mlp",
              "optimizer.name": "adam", "optimizer.label": "adam", "optimizer.lr": 0.001,
              "seed": seed, **extra}
    return Run(path=Path(f"r{seed}"), config=config,
               summary={"status": "completed", "final": {"test_metric": 3.0 + seed}},
               metrics=pd.DataFrame())


def test_loggers_tags_and_the_tuner_metric_are_bookkeeping():
    for key in ("logger", "logger.tensorboard.flush_secs", "tags", "optimized_metric",
                "data.cache_dir", "progress"):
        assert not is_group_key(key), key
    for key in ("optimizer.lr", "model.hidden", "data.val_fraction", "stop_at_target"):
        assert is_group_key(key), key


def test_runs_that_differ_only_in_their_logger_share_one_group():
    groups = build_groups([run(0, logger="none"), run(1, logger="tensorboard"),
                           run(2, **{"logger.mlflow.experiment_name": "x"})])
    assert len(groups) == 1 and len(groups[0].runs) == 3
    assert "logger" not in groups[0].row
