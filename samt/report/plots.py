"""Figures (PNG and PDF): learning curves, SAMT step statistics, learning-rate sensitivity,
performance profiles."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, PercentFormatter

from samt.report.aggregate import (
    PROFILE_MEASURES,
    Group,
    LRSweep,
    final_test_metric,
    mean_curves,
    mean_std,
    profile_costs,
)
from samt.report.stats import performance_profile

CURVE_Y = (("test_metric", "test metric"), ("train_loss", "train loss"))
CURVE_X = (("epoch", "epoch"), ("param_updates", "parameter updates"),
           ("wall_time_s", "training seconds"))
BLOCK_COLUMN = re.compile(r"^b(\d+)_eta_mean$")
ROW_FIGURES = ("curves", "samt_steps", "lr_sensitivity")  # plot_all's kinds of figure


def slug(text: str) -> str:
    """File-name-safe row name: ``digits / mlp hidden=[800]`` -> ``digits_mlp_hidden=_800``."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_") or "all"


def palette(columns: list[str]) -> dict[str, tuple]:
    """One fixed colour per optimizer variant, the same in every figure."""
    cmap = colormaps["tab10" if len(columns) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(columns)}


def unique_slugs(rows: list[str]) -> dict[str, str]:
    """Each row's file-name part (``slug``), made unique: a row whose slug an earlier row
    already has gets ``_2``, ``_3``, ... (its figures would overwrite the other's)."""
    out: dict[str, str] = {}
    for row in rows:
        name, n = slug(row), 2
        while name in out.values():
            name, n = f"{slug(row)}_{n}", n + 1
        out[row] = name
    return out


def save_figure(fig: Figure, path: Path) -> list[Path]:
    """``path`` + ``.png`` and ``.pdf`` (appended: a row name such as ``dropout=0.2`` holds a
    dot that ``with_suffix`` would cut at)."""
    paths = [path.parent / f"{path.name}{ext}" for ext in (".png", ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths


def _band(ax: Axes, x: pd.Series, mean: pd.Series, std: pd.Series, color: tuple,
          label: str | None) -> None:
    """Mean line with a ±std band (no band where std is undefined, i.e. a single run)."""
    ax.plot(x, mean, color=color, label=label, marker="o" if len(x) <= 12 else None,
            markersize=3)
    std = std.fillna(0.0)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _legend(fig: Figure, entries: int) -> None:
    """One legend below the axes, as many columns as the figure's width holds."""
    columns = max(1, min(entries, int(fig.get_figwidth() // 3.3)))
    fig.legend(loc="outside lower center", ncol=columns, fontsize="small")


def _metric_label(groups: list[Group]) -> str:
    name = next((g.metric_name for g in groups if g.metric_name), None)
    return {"accuracy": "test accuracy", "rmse": "test RMSE"}.get(name or "", "test metric")


def _percent_axis(ax: Axes, groups: list[Group], axis: str = "y") -> None:
    """Accuracy (a percentage already) with a % sign on its ticks."""
    if any(g.metric_name == "accuracy" for g in groups):
        getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(100))


def _val_curves(groups: list[Group]) -> dict[str, pd.DataFrame]:
    """Per group column: mean validation metric per epoch (with ``*_mean`` of the x columns),
    for groups whose runs hold a validation split (a finite ``val_metric``)."""
    columns = ["val_metric"] + [x for x, _ in CURVE_X if x != "epoch"]
    out = {}
    for g in groups:
        c = mean_curves(g, columns)
        if not c.empty and c["val_metric_mean"].notna().any():
            out[g.column] = c
    return out


def plot_curves(row: str, groups: list[Group], colors: dict[str, tuple],
                out: Path, name: str | None = None) -> list[Path]:
    """Test metric (validation metric dashed, when the runs hold a split) and train loss vs
    epoch, parameter updates and training seconds (``curves_<name>``; ``name`` defaults to the
    row's ``slug``)."""
    columns = [y for y, _ in CURVE_Y] + [x for x, _ in CURVE_X if x != "epoch"]
    curves = [(g, mean_curves(g, columns)) for g in groups]
    curves = [(g, c) for g, c in curves if not c.empty]
    if not curves:
        return []
    val = _val_curves([g for g, _ in curves])
    fig = Figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(len(CURVE_Y), len(CURVE_X), squeeze=False)
    for i, (y, y_label) in enumerate(CURVE_Y):
        for j, (x, x_label) in enumerate(CURVE_X):
            ax = axes[i][j]
            for g, c in curves:
                xs = c["epoch"] if x == "epoch" else c[f"{x}_mean"]
                _band(ax, xs, c[f"{y}_mean"], c[f"{y}_std"], colors[g.column],
                      g.column if i == j == 0 else None)
                if y == "test_metric" and g.column in val:
                    v = val[g.column]
                    ax.plot(v["epoch"] if x == "epoch" else v[f"{x}_mean"],
                            v["val_metric_mean"], color=colors[g.column], linestyle="--",
                            linewidth=1.0)
            ax.set_xlabel(x_label)
            if x == "epoch":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if y == "test_metric":
                ax.set_ylabel(_metric_label(groups) + (" (dashed: validation)" if val else ""))
                _percent_axis(ax, groups)
            else:
                ax.set_ylabel(y_label)
            if y == "train_loss" and all((c["train_loss_mean"] > 0).all() for _, c in curves):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    fig.suptitle(f"{row}: mean ± std over completed seeds")
    _legend(fig, len(curves))
    return save_figure(fig, out / f"curves_{name or slug(row)}")


def plot_samt_steps(row: str, groups: list[Group], colors: dict[str, tuple],
                    out: Path, name: str | None = None) -> list[Path]:
    """Per block: mean applied step ``b{k}_eta_mean`` and gate ``b{k}_beta_mean`` over epochs."""
    series = []
    for g in groups:
        cols = set().union(*(r.metrics.columns for r in g.completed)) if g.completed else set()
        blocks = sorted(int(m.group(1)) for c in cols if (m := BLOCK_COLUMN.match(c)))
        if blocks:
            series.append((g, blocks))
    if not series:
        return []
    n_blocks = max(max(b) for _, b in series) + 1
    fig = Figure(figsize=(max(5.0, 3.6 * n_blocks), 6.5), layout="constrained")
    axes = fig.subplots(2, n_blocks, squeeze=False)
    for g, blocks in series:
        for k in blocks:
            cols = [f"b{k}_eta_mean", f"b{k}_beta_mean"]
            c = mean_curves(g, cols)
            if c.empty:
                continue
            for i, col in enumerate(cols):
                _band(axes[i][k], c["epoch"], c[f"{col}_mean"], c[f"{col}_std"],
                      colors[g.column], g.column if i == 0 and k == blocks[0] else None)
    for k in range(n_blocks):
        axes[0][k].set_title(f"block {k}" + (" (input side)" if k == 0 else ""))
        axes[0][k].set_ylabel("mean step eta")
        axes[0][k].set_yscale("log")
        axes[1][k].set_ylabel("mean gate beta")
        for i in range(2):
            axes[i][k].set_xlabel("epoch")
            axes[i][k].xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[i][k].grid(alpha=0.3)
    fig.suptitle(f"{row}: SAMT step size and gate per block (mean ± std over seeds)")
    _legend(fig, len(series))
    return save_figure(fig, out / f"samt_steps_{name or slug(row)}")


def plot_lr_sensitivity(row: str, sweeps: list[LRSweep], colors: dict[str, tuple],
                        out: Path, name: str | None = None) -> list[Path]:
    """Final test metric (mean ± std over completed seeds) against the learning rate, log x."""
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    groups = [g for s in sweeps for _, g in s.points]
    for sweep in sweeps:
        lrs, means, stds = [], [], []
        for lr, g in sweep.points:
            mean, std, _ = mean_std([final_test_metric(r) for r in g.completed])
            if math.isfinite(mean):
                lrs.append(lr)
                means.append(mean)
                stds.append(std if math.isfinite(std) else 0.0)
        if not lrs:
            continue
        color = colors[sweep.points[0][1].column]
        key = sweep.lr_key.split(".", 1)[1]
        ax.errorbar(lrs, means, yerr=stds, color=color, marker="o", capsize=3,
                    label=f"{sweep.name} ({key})")
        lo, hi = np.array(means) - np.array(stds), np.array(means) + np.array(stds)
        ax.fill_between(lrs, lo, hi, color=color, alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    rates = sorted({lr for s in sweeps for lr, _ in s.points})
    ax.xaxis.set_major_locator(FixedLocator(rates))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("step size (optimizer.lr; SAMT: optimizer.eta_max or eta0)")
    ax.set_ylabel("final " + _metric_label(groups))
    _percent_axis(ax, groups)
    ax.set_title(f"{row}: learning-rate sensitivity")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, out / f"lr_sensitivity_{name or slug(row)}")


def profile_taus(costs: dict[str, dict[str, float]], points: int = 400) -> np.ndarray:
    """Log-spaced factors from 1 to a little past the largest finite cost ratio (at least 2)."""
    workloads = {w for per in costs.values() for w in per}
    best = {w: min(per.get(w, math.inf) for per in costs.values()) for w in workloads}
    ratios = [per[w] / best[w] for per in costs.values() for w in per
              if math.isfinite(per[w]) and math.isfinite(best[w]) and best[w] > 0]
    return np.logspace(0, math.log10(max([2.0, *ratios]) * 1.25), points)


def draw_profile(ax: Axes, taus: np.ndarray, profile: dict, colors: dict,
                 labelled: bool = True) -> None:
    """One Dolan-More profile on ``ax``: a step line per optimizer (``profile``: name -> the
    fraction of workloads within each tau), log tau axis from 1, fractions from 0 to 1; line
    styles tell overlapping lines apart."""
    for i, (name, fractions) in enumerate(profile.items()):
        ax.plot(taus, fractions, drawstyle="steps-post", color=colors.get(name),
                linestyle=("-", "--", ":", "-.")[i % 4], linewidth=1.8,
                label=name if labelled else None)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    short = taus[-1] <= 10  # under a decade: label the minor ticks (2, 3, ...) too
    ax.xaxis.set_minor_formatter(lambda v, _, short=short: f"{v:g}" if short else "")
    ax.set_xlim(1, taus[-1])
    ax.set_ylim(-0.02, 1.02)


def plot_performance_profiles(costs: pd.DataFrame, colors: dict[str, tuple],
                              out: Path) -> list[Path]:
    """Dolan-More profiles: per optimizer, the fraction of workloads whose validation target it
    reached within a factor tau of the best optimizer's seconds (left) and updates (right)."""
    if costs.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, len(PROFILE_MEASURES), squeeze=False)[0]
    workloads = costs["row"].nunique()
    for ax, (measure, label) in zip(axes, PROFILE_MEASURES, strict=True):
        per = profile_costs(costs, measure)
        taus = profile_taus(per)
        profile = performance_profile(per, list(taus))
        draw_profile(ax, taus, profile, colors, labelled=ax is axes[0])
        ax.set_xlabel(f"tau (within a factor tau of the best {label})")
        ax.set_ylabel(f"fraction of the {workloads} workload(s)")
        ax.set_title(f"time to the validation target: {label}")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Performance profiles (Dolan-More) over workloads (dataset / model rows)")
    _legend(fig, costs["column"].nunique())
    return save_figure(fig, out / "performance_profile")


def plot_all(groups: list[Group], sweeps: list[LRSweep], columns: list[str],
             out: Path, kinds: Collection[str] = ROW_FIGURES) -> list[Path]:
    """Every figure of ``kinds`` (``ROW_FIGURES``) for every row (dataset / model); returns the
    files written."""
    if not set(kinds) & set(ROW_FIGURES):
        return []
    out.mkdir(parents=True, exist_ok=True)
    colors = palette(columns)
    written: list[Path] = []
    names = unique_slugs(list(dict.fromkeys(g.row for g in groups)))
    for row, name in names.items():
        members = [g for g in groups if g.row == row]
        if "curves" in kinds:
            written += plot_curves(row, members, colors, out, name)
        if "samt_steps" in kinds:
            written += plot_samt_steps(row, members, colors, out, name)
        row_sweeps = [s for s in sweeps if s.row == row]
        if row_sweeps and "lr_sensitivity" in kinds:
            written += plot_lr_sensitivity(row, row_sweeps, colors, out, name)
    return written
