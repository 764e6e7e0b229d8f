"""Certainty over seeds: confidence intervals, Welch's t-test, verdicts, performance profiles.

The protocol (docs/report.md): a table shows mean +- std and the 95 % confidence interval of the
mean (Student's t with n-1 degrees of freedom); a claim that one optimizer is better than another
names Welch's two-sided t-test (unequal variances) and its p-value and needs p < ``ALPHA`` after
Holm's correction within its family; "equivalent" needs the two one-sided tests (TOST) with a
margin stated in advance; otherwise the verdict is "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

ALPHA = 0.05
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean, sample std, count and the two-sided ``LEVEL`` confidence interval of the mean."""

    mean: float
    std: float
    n: int
    low: float
    high: float


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    """``Summary`` of the finite ``values``; std and interval are NaN below two values."""
    x = np.array([v for v in values if math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """Welch's two-sided t-test of ``a`` against ``b``: statistic, degrees of freedom, p."""

    t: float
    df: float
    p: float


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's unequal-variance t-test (two-sided); NaN when either side has < 2 values.

    Two samples without any spread are equal (p = 1) or certainly different (p = 0).
    """
    x = np.array([v for v in a if math.isfinite(v)], dtype=float)
    y = np.array([v for v in b if math.isfinite(v)], dtype=float)
    if x.size < 2 or y.size < 2:
        return Comparison(math.nan, math.nan, math.nan)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if vx + vy == 0:
        return Comparison(0.0 if diff == 0 else math.copysign(math.inf, diff), math.nan,
                          1.0 if diff == 0 else 0.0)
    t = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    p = float(2 * _st.t.sf(abs(t), df))
    return Comparison(float(t), float(df), p)


def difference_ci(a: Sequence[float], b: Sequence[float],
                  level: float = LEVEL) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and its two-sided ``level`` confidence interval by Welch and
    Satterthwaite (the degrees of freedom of ``welch``); NaN bounds when either side has < 2
    finite values, both bounds at the difference when neither side has any spread."""
    x = np.array([v for v in a if math.isfinite(v)], dtype=float)
    y = np.array([v for v in b if math.isfinite(v)], dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, math.nan, math.nan
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        return diff, diff, diff
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(_st.t.ppf(0.5 + level / 2, df)) * math.sqrt(vx + vy)
    return diff, diff - half, diff + half


def verdict(a: Sequence[float], b: Sequence[float], higher_is_better: bool,
            alpha: float = ALPHA) -> tuple[str, float]:
    """``("better" | "worse" | "no significant difference" | "too few runs", p)`` for ``a``
    against ``b`` under Welch's test at level ``alpha``."""
    test = welch(a, b)
    if math.isnan(test.p):
        return "too few runs", math.nan
    if test.p >= alpha:
        return "no significant difference", test.p
    a_higher = test.t > 0
    return ("better" if a_higher == higher_is_better else "worse"), test.p


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (the family: every finite one; NaN
    stays NaN). ``adjusted[i] < alpha`` controls the family-wise error rate at ``alpha``."""
    finite = sorted((p, i) for i, p in enumerate(pvalues) if math.isfinite(p))
    m = len(finite)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """p of the two one-sided Welch tests (TOST) that ``|mean(a) - mean(b)| < margin``: the
    larger of the two one-sided p-values; NaN when either side has < 2 values. Two samples
    without any spread are equivalent (p = 0) when their means differ by less than ``margin``."""
    x = np.array([v for v in a if math.isfinite(v)], dtype=float)
    y = np.array([v for v in b if math.isfinite(v)], dtype=float)
    if x.size < 2 or y.size < 2 or not margin > 0:
        return math.nan
    diff = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        return 0.0 if abs(diff) < margin else 1.0
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    p_above_lower = float(_st.t.sf((diff + margin) / se, df))   # H0: diff <= -margin
    p_below_upper = float(_st.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
    return max(p_above_lower, p_below_upper)


def decide(t: float, p_holm: float, p_tost_holm: float, higher_is_better: bool,
           alpha: float = ALPHA) -> str:
    """The verdict of one comparison in a family: ``better``/``worse`` when Welch's p after
    Holm's adjustment is below ``alpha`` (the sign of ``t`` says which), ``equivalent`` when the
    adjusted TOST p is, else ``inconclusive`` (``too few runs`` without a test)."""
    if not math.isfinite(p_holm):
        return "too few runs"
    if p_holm < alpha:
        return "better" if (t > 0) == higher_is_better else "worse"
    if math.isfinite(p_tost_holm) and p_tost_holm < alpha:
        return "equivalent"
    return "inconclusive"


def format_p(p: float) -> str:
    """``p=0.032``, ``p<0.001`` or ``p=n/a``."""
    if not math.isfinite(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def performance_profile(costs: Mapping[str, Mapping[str, float]],
                        taus: Sequence[float]) -> dict[str, list[float]]:
    """Dolan-More performance profile.

    ``costs[solver][workload]`` is the cost (time or updates) to reach the workload's target,
    ``inf`` (or absent) when the solver never reached it. For each solver, the fraction of all
    workloads on which its cost is within a factor ``tau`` of the best solver's, for each tau.
    Workloads that no solver reached count against every solver.
    """
    workloads = sorted({w for per in costs.values() for w in per})
    best = {w: min((per.get(w, math.inf) for per in costs.values()), default=math.inf)
            for w in workloads}
    profile: dict[str, list[float]] = {}
    for solver, per in costs.items():
        ratios = [per.get(w, math.inf) / best[w] if math.isfinite(best[w]) and best[w] > 0
                  else (1.0 if best[w] == 0 and per.get(w, math.inf) == 0 else math.inf)
                  for w in workloads]
        profile[solver] = [sum(r <= tau for r in ratios) / max(len(workloads), 1)
                           for tau in taus]
    return profile
