"""The file formats of a run folder's records: ``metrics.csv`` rows, JSON (``summary.json``),
and the atomic write every file of a run folder goes through (``samt.atomic.write_atomic``;
``samt.train.folder.RunFolder`` decides what is written where and when).

Columns of ``metrics.csv`` (one row per epoch; documented in docs/outputs.md):
epoch, train_loss, train_metric, test_loss, test_metric, epoch_time_s, wall_time_s, iterations,
param_updates, skipped, val_loss, val_metric (empty without a validation split), then for SAMT
per block k: b{k}_eta_mean, b{k}_eta_std, b{k}_beta_mean,
b{k}_grad_norm, b{k}_meta_loss, b{k}_skipped, b{k}_clamped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from samt.atomic import fsync_dir, write_atomic

__all__ = ["BASE_COLUMNS", "finite_number", "fsync_dir", "read_metrics", "write_atomic",
           "write_json", "write_metrics"]

BASE_COLUMNS = ("epoch", "train_loss", "train_metric", "test_loss", "test_metric",
                "epoch_time_s", "wall_time_s", "iterations", "param_updates", "skipped",
                "val_loss", "val_metric")


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Write all epoch rows (columns in a stable order) to ``metrics.csv``."""
    if not rows:
        return
    extra = [c for c in rows[0] if c not in BASE_COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*BASE_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.csv`` as numbers: integers where the cell is one, floats
    otherwise, NaN for an empty cell (e.g. ``b{k}_meta_loss`` with no meta-update)."""
    def number(text: str) -> float | int:
        if text == "":
            return math.nan
        try:
            return int(text)
        except ValueError:
            return float(text)

    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def finite_number(value: Any) -> bool:
    """A number that is neither None nor NaN/inf (a cell such as ``val_metric`` may be either)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth, replaced by ``None`` (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON, atomically; non-finite numbers (nested too) become null."""
    payload = _finite_or_none(payload)
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
