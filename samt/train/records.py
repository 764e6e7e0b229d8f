"""The run folder: ``metrics.csv``, ``summary.json`` and ``config.yaml``, written atomically.

Columns of ``metrics.csv`` (one row per epoch; documented in docs/outputs.md):
epoch, train_loss, train_metric, test_loss, test_metric, epoch_time_s, wall_time_s, iterations,
param_updates, skipped, then for SAMT per block k: b{k}_eta_mean, b{k}_eta_std, b{k}_beta_mean,
b{k}_grad_norm, b{k}_meta_loss, b{k}_skipped, b{k}_clamped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

BASE_COLUMNS = ("epoch", "train_loss", "train_metric", "test_loss", "test_metric",
                "epoch_time_s", "wall_time_s", "iterations", "param_updates", "skipped")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename.

    A crash at any point leaves either the old file or the new one, never a mix.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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


def _finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(path: Path, payload: dict) -> None:
    payload = {k: _finite_or_none(v) for k, v in payload.items()}
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
