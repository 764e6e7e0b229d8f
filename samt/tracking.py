"""Experiment trackers: the same per-epoch scalars as metrics.csv, written elsewhere too.

``logger: none`` (default) writes nothing more; ``logger: tensorboard`` writes TensorBoard event
files into ``<run folder>/tensorboard/`` (needs the optional ``tensorboard`` package:
``pip install 'samt[tensorboard]'``). Every numeric column of a metrics.csv row becomes a scalar
at step = epoch: ``train/loss``, ``test/metric``, ``val/metric``, ``time/epoch_s``, and for SAMT
the per-block statistics ``samt/b0/eta_mean`` and so on; the run's ``tags`` are the text
``run/tags`` (comma-separated) at step 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

LOGGERS = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_EVENTS = "events.out.tfevents."  # how the names of its event files begin
TAGS_TEXT = "run/tags"  # the TensorBoard text that holds the run's tags
# metrics.csv column -> scalar tag (SAMT's b{k}_{stat} columns become samt/b{k}/{stat})
TAGS = {"train_loss": "train/loss", "train_metric": "train/metric", "test_loss": "test/loss",
        "test_metric": "test/metric", "val_loss": "val/loss", "val_metric": "val/metric",
        "epoch_time_s": "time/epoch_s", "wall_time_s": "time/wall_s",
        "iterations": "progress/iterations", "param_updates": "progress/param_updates",
        "skipped": "progress/skipped"}


class TrackerError(Exception):
    """The logger cannot start (its package cannot be imported, its folder is a file): a user
    error, found before the run touches its folder."""


class Tracker(Protocol):
    """Receives each finished epoch's metrics.csv row.

    Made (``make_tracker``) while the run sets up, so that a logger that cannot start is
    refused (``TrackerError``) before a previous run's results are removed; ``open`` then
    creates its files, ``log_row`` writes each epoch, ``close`` ends it.
    """

    def open(self) -> None: ...

    def log_row(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NoTracker:
    """``logger: none``."""

    def open(self) -> None:
        """Nothing to do."""

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
    """Scalars of every epoch into ``run_dir/tensorboard`` (appended to on resume).

    Building it imports TensorBoard's writer and checks its folder; only ``open`` writes.
    """

    def __init__(self, run_dir: Path, tags: tuple[str, ...] = ()) -> None:
        self.tags = tuple(tags)
        problem = tensorboard_import_error()
        if problem:
            raise TrackerError(f"logger='tensorboard' is invalid: {problem}")
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise TrackerError(f"logger='tensorboard' is invalid: {self.log_dir} is a file, "
                               "not a folder (TensorBoard writes its event files there); move "
                               "it away, or use logger=none")
        self.writer: Any = None

    def open(self) -> None:
        """Create the writer (and ``tensorboard/`` with its first event file)."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        if self.tags:
            self.writer.add_text(TAGS_TEXT, ", ".join(self.tags), 0)

    def log_row(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for column, value in row.items():
            if column == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(tag_of(column), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboard`` package is installed."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def tensorboard_import_error() -> str | None:
    """Why TensorBoard's writer (``torch.utils.tensorboard``) cannot be imported, or None when
    it can (imports torch: call it only for ``logger: tensorboard``)."""
    if not tensorboard_available():
        return ("needs the tensorboard package: pip install 'samt[tensorboard]' (or pip "
                "install tensorboard); or use logger=none")
    try:
        import torch.utils.tensorboard  # noqa: F401
    except Exception as exc:  # a broken install: ImportError, or an error inside the import
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        return (f"torch.utils.tensorboard cannot be imported ({type(exc).__name__}: {detail}); "
                "reinstall tensorboard (pip install 'samt[tensorboard]'), or use logger=none")
    return None


def make_tracker(kind: str, run_dir: Path, tags: tuple[str, ...] = ()) -> Tracker:
    """The tracker for ``logger: kind`` recording the run's ``tags``, not yet open
    (``TrackerError``: it cannot start)."""
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, tags)
    return NoTracker()
