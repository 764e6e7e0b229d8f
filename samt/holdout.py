"""The validation hold-out in plain Python (no torch): its size and its config keys.

Used by the data splits (``samt.data.splits``), the config checks, the checkpoint comparison
and ``samt-report``. See docs/tuning.md for the protocol.
"""

from __future__ import annotations

from typing import Any

VAL_FRACTION, VAL_SEED = "data.val_fraction", "data.val_seed"


def validation_size(n: int, fraction: float) -> int:
    """How many of ``n`` training examples ``fraction`` holds out: ``round(n * fraction)``."""
    return int(round(n * fraction)) if fraction > 0 else 0


def without_inactive_val_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config without ``data.val_fraction``/``data.val_seed`` when no validation
    split is held out (fraction 0, null or absent): a run from before these keys existed and a
    run without a split then compare equal, whatever ``val_seed`` says."""
    if flat.get(VAL_FRACTION) in (None, 0, 0.0):
        return {k: v for k, v in flat.items() if k not in (VAL_FRACTION, VAL_SEED)}
    return flat
