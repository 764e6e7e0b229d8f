"""Step-size schedules: a factor in (0, 1] applied to the learning rate / SAMT's step range."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def schedule_factor(kind: str, iteration: int, total: int) -> float:
    """Factor at ``iteration`` (0-based) of ``total``: ``constant`` 1, ``cosine`` 1 -> 0."""
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / max(total, 1)))
    raise ValueError(f"unknown schedule {kind!r}; allowed: {list(SCHEDULES)}")
