"""Tuneability: how much each optimizer's score depends on its step size, and what a tuning
budget of ``k`` grid points buys (Sivaprasad et al. 2020, "Optimizer benchmarking needs to
account for hyperparameter tuning").

A sweep (``samt.report.aggregate.LRSweep``) is one optimizer's groups that differ only in the
step-size key (``optimizer.lr``; SAMT: ``optimizer.eta0``, tied to the tuned ``eta_max``). Its
**chosen point** is the one with the best mean validation metric over its runs, as the protocol
chooses. The sensitivity figure puts every optimizer on one x-axis by plotting each point at
``log10(value / chosen value)``: decades away from the optimizer's own choice, so that SAMT's
``eta_max`` and the peers' ``lr`` share the axis and a flat curve means a forgiving step size.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from samt.report.aggregate import LRSweep, final_test_metric, final_val_metric
from samt.report.plots import save_figure
from samt.report.stats import summarize


@dataclass(frozen=True)
class Point:
    """One step size of a sweep: its value, runs and the mean and 95 % interval of the final
    validation and test metrics (NaN bounds below two runs)."""

    value: float
    n: int
    val: tuple[float, float, float]   # mean, low, high
    test: tuple[float, float, float]


def sweep_points(sweep: LRSweep) -> list[Point]:
    """The sweep's points with a finite mean validation metric, by value."""
    points = []
    for value, group in sweep.points:
        val = summarize([final_val_metric(r) for r in group.completed])
        test = summarize([final_test_metric(r) for r in group.completed])
        if math.isfinite(val.mean):
            points.append(Point(value, val.n, (val.mean, val.low, val.high),
                                (test.mean, test.low, test.high)))
    return points


def failed_values(sweep: LRSweep) -> list[float]:
    """The sweep's step sizes where no run gave a finite validation metric (every run failed
    or diverged): they have no point, and the sensitivity figure marks them apart."""
    scored = {p.value for p in sweep_points(sweep)}
    return [value for value, _ in sweep.points if value not in scored]


def chosen(points: list[Point], higher_is_better: bool) -> int:
    """Index of the point with the best mean validation metric (the protocol's choice)."""
    sign = 1.0 if higher_is_better else -1.0
    return max(range(len(points)), key=lambda i: sign * points[i].val[0])


def expected_best(val: list[float], test: list[float], k: int,
                  higher_is_better: bool) -> tuple[float, float]:
    """Expected (validation, test) score of the point chosen on validation when ``k`` of the
    grid's points are drawn at random without replacement: exact, over all k-subsets."""
    n = len(val)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must lie in 1..{n}")
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(range(n), key=lambda i: -sign * val[i])  # best first
    total = math.comb(n, k)
    exp_val = exp_test = 0.0
    for rank, i in enumerate(order):  # the chosen point is the best of the subset
        weight = math.comb(n - rank - 1, k - 1) / total
        exp_val += weight * val[i]
        exp_test += weight * test[i]
    return exp_val, exp_test


def _label_axes(axes, xlabel: str, ylabel: str, metric: str) -> None:
    """Both panels: labels, a grid, and a % sign on accuracy (a percentage already)."""
    for ax, part in zip(axes, ("validation", "test"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel.format(part=part, metric=metric))
        if metric == "accuracy":
            ax.yaxis.set_major_formatter(PercentFormatter(100))
        ax.grid(alpha=0.3)


def _higher(sweep: LRSweep) -> bool:
    return sweep.points[0][1].higher_is_better is not False


def plot_sensitivity(row: str, sweeps: list[LRSweep], colors: dict[str, tuple], out: Path,
                     name: str, metric: str) -> list[Path]:
    """Validation (left) and test (right) metric against decades from each optimizer's chosen
    step size: mean over runs and its 95 % band; the chosen points ringed."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for sweep in sweeps:
        points = sweep_points(sweep)
        if not points:
            continue
        best = chosen(points, _higher(sweep))
        x = np.log10([p.value / points[best].value for p in points])
        color = colors[sweep.points[0][1].column]
        key = sweep.lr_key.split(".", 1)[1]
        label = f"{sweep.name} ({key} chosen {points[best].value:g}; n={points[best].n})"
        for ax, part in zip(axes, ("val", "test"), strict=True):
            mean, low, high = (np.array([getattr(p, part)[j] for p in points]) for j in range(3))
            ax.plot(x, mean, marker="o", color=color, label=label if part == "val" else None)
            if np.isfinite(low).any():
                ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
            ax.plot([0.0], [mean[best]], marker="o", markersize=13, markerfacecolor="none",
                    color=color)
        failed = failed_values(sweep)
        if failed:  # an x at the top edge: every run of that value failed or diverged
            x_failed = np.log10([value / points[best].value for value in failed])
            for ax in axes:
                ax.plot(x_failed, [0.97] * len(failed), marker="x", markersize=9,
                        linestyle="none", color=color, transform=ax.get_xaxis_transform(),
                        clip_on=False)
    _label_axes(axes, "decades from the chosen step size: log10(value / chosen value)",
                "final {part} {metric}", metric)
    for ax in axes:
        ax.axvline(0.0, color="grey", linewidth=0.8, alpha=0.5)
    fig.suptitle(f"{row}: step-size sensitivity\n(mean over runs, 95 % band where n >= 2; "
                 "ringed: the choice on validation; x at the top: every run failed)")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return save_figure(fig, out / f"sensitivity_{name}")


def plot_tuning_budget(row: str, sweeps: list[LRSweep], colors: dict[str, tuple], out: Path,
                       name: str, metric: str) -> list[Path]:
    """Expected validation score of the best of ``k`` random grid points (left) and the test
    score of that choice (right), for k = 1 .. grid size."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    drawn = 0
    for sweep in sweeps:
        points = sweep_points(sweep)
        if len(points) < 2:
            continue
        val, test = [p.val[0] for p in points], [p.test[0] for p in points]
        ks = list(range(1, len(points) + 1))
        curves = [expected_best(val, test, k, _higher(sweep)) for k in ks]
        color = colors[sweep.points[0][1].column]
        for ax, j in zip(axes, (0, 1), strict=True):
            ax.plot(ks, [c[j] for c in curves], marker="o", color=color,
                    label=sweep.name if j == 0 else None)
        drawn += 1
    _label_axes(axes, "tuning budget k: grid points drawn at random",
                "expected final {part} {metric} of the choice", metric)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{row}: expected result of tuning with k random grid points "
                 "(Sivaprasad et al. 2020)")
    if drawn:
        fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    return save_figure(fig, out / f"tuning_budget_{name}")


def plot_tuneability(sweeps: list[LRSweep], colors: dict[str, tuple], out: Path,
                     names: dict[str, str],
                     kinds: Collection[str] = ("sensitivity", "tuning_budget")) -> list[Path]:
    """The sensitivity and tuning-budget figures (those of ``kinds``) of every row with a sweep
    that has a validation metric; ``names``: each row's file-name part."""
    if "sensitivity" not in kinds and "tuning_budget" not in kinds:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for row, name in names.items():
        row_sweeps = [s for s in sweeps if s.row == row and sweep_points(s)]
        if not row_sweeps:
            continue
        metric = row_sweeps[0].points[0][1].metric_name or "metric"
        if "sensitivity" in kinds:
            written += plot_sensitivity(row, row_sweeps, colors, out, name, metric)
        if "tuning_budget" in kinds:
            written += plot_tuning_budget(row, row_sweeps, colors, out, name, metric)
    return written
