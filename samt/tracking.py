"""Experiment trackers: the same per-epoch scalars as metrics.csv, written elsewhere too.

``logger: none`` (default) writes nothing more; ``logger: tensorboard`` writes TensorBoard event
files into ``<run folder>/tensorboard/`` (needs the optional ``tensorboard`` package:
``pip install 'samt[tensorboard]'``). Every numeric column of a metrics.csv row becomes a scalar
at step = epoch: ``train/loss``, ``test/metric``, ``val/metric``, ``time/epoch_s``, and for SAMT
the per-block statistics ``samt/b0/eta_mean`` and so on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

LOGGERS = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"
# metrics.csv column -> scalar tag (SAMT's b{k}_{stat} columns become samt/b{k}/{stat})
TAGS = {"train_loss": "train/loss", "train_metric": "train/metric", "test_loss": "test/loss",
        "test_metric": "test/metric", "val_loss": "val/loss", "val_metric": "val/metric",
        "epoch_time_s": "time/epoch_s", "wall_time_s": "time/wall_s",
        "iterations": "progress/iterations", "param_updates": "progress/param_updates",
        "skipped": "progress/skipped"}


class Tracker(Protocol):
    """Receives each finished epoch's metrics.csv row."""

    def log_row(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NoTracker:
    """``logger: none``."""

    def log_row(self, row: dict[str, Any]) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Nothing to do."""


def tag_of(column: str) -> str:
    """The scalar tag of a metrics.csv column."""
    if column in TAGS:
        return TAGS[column]
    head, _, stat = column.partition("_")
    if head.startswith("b") and head[1:].isdigit() and stat:
        return f"samt/{head}/{stat}"
    return f"other/{column}"


class TensorBoardTracker:
    """Scalars of every epoch into ``run_dir/tensorboard`` (appended to on resume)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def log_row(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for column, value in row.items():
            if column == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(tag_of(column), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboard`` package is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def make_tracker(kind: str, run_dir: Path) -> Tracker:
    """The tracker for ``logger: kind``."""
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir)
    return NoTracker()
