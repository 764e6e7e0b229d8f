"""Self-tuning track (AlgoPerf's self-tuning idea; Sivaprasad et al. 2020): each optimizer gets
ONE setting of its tuned step-size key for every workload of a family, chosen without the
workload it is scored on.

Input: grid runs of one table family, where every optimizer ran a grid of its step-size key
(``optimizer.lr``; SAMT: ``optimizer.eta_max``) on several workloads (dataset / model rows),
as ``aggregate.lr_sweeps`` finds them. Per optimizer (a sweep's name: label plus the knobs other
than the step size) and held-out workload W:

1. only grid values run on **every** workload of the optimizer take part (edge extensions can
   differ per workload);
2. each workload's validation scores are normalized per optimizer: the **error** of the mean
   final validation metric (100 - accuracy; RMSE) as ``best error / error`` over the taking-part
   values, 1 at the optimizer's best value on that workload and towards 0 as the error grows
   (a value whose runs all failed scores 0). A ratio of errors needs no worst point (a diverged
   grid edge would squash a min-max scale) and makes workloads of different error levels and
   units comparable, as the performance profile does;
3. the self-tuned value for W is the value with the best mean normalized score over the
   **other** workloads (ties: the smaller value); it is scored on W's final **test** metric
   (mean +- std over that value's completed runs on W). Test metrics never enter a choice.

For comparison: the workload-tuned value (best mean validation metric on W itself, over W's
whole grid) and its test mean; the loss is how much worse the self-tuned test mean is (points
of accuracy or RMSE units; positive = self-tuning costs). The performance profile (Dolan-More)
ranks the optimizers by the ratio of their self-tuned test error to the best optimizer's on each
workload.

Verdicts, as in the significance table: on each workload every optimizer's self-tuned runs are
compared with those of the optimizer whose self-tuned test mean is best there (Welch's
two-sided test); the family is the self-tuning table (every such comparison, all workloads),
adjusted by Holm's method; with an equivalence margin for the workload's dataset the two
one-sided tests (also Holm-adjusted) can make a verdict "equivalent".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from samt.report.aggregate import LRSweep, final_test_metric, final_val_metric
from samt.report.plots import draw_profile, profile_taus, save_figure
from samt.report.sensitivity import chosen, sweep_points
from samt.report.significance import Margin, Sample, compare_with_best, row_bests
from samt.report.stats import (
    ALPHA,
    format_p,
    performance_profile,
    summarize,
)
from samt.report.tables import PM, Cell, Table, decimals

COLUMNS = ["row", "optimizer", "key", "metric", "higher_is_better", "values", "lowo_value",
           "lowo_score", "lowo_n", "lowo_test_mean", "lowo_test_std", "tuned_value",
           "tuned_test_mean", "loss", "lowo_error", "best_optimizer", "p", "p_holm",
           "margin", "p_tost_holm", "verdict"]


def error(value: float, higher_is_better: bool) -> float:
    """The error of a metric value: ``100 - accuracy`` (a percentage), or the RMSE itself."""
    return 100.0 - value if higher_is_better else value


def value_key(value: float) -> str:
    """A grid value as compared across workloads (6 significant digits)."""
    return f"{value:.6g}"


@dataclass(frozen=True)
class GridPoint:
    """One grid value of an optimizer on a workload: mean final validation metric (NaN when no
    completed run has one) and the completed runs' final test metrics."""

    value: float
    val: float
    test: list[float]


def grid_points(sweep: LRSweep) -> dict[str, GridPoint]:
    """The sweep's grid values by ``value_key``, every one that has runs."""
    points = {}
    for value, group in sweep.points:
        val = summarize([final_val_metric(r) for r in group.completed]).mean
        test = [v for v in (final_test_metric(r) for r in group.completed) if math.isfinite(v)]
        points[value_key(value)] = GridPoint(value, val, test)
    return points


def normalized_scores(points: dict[str, GridPoint], keys: list[str],
                      higher_is_better: bool) -> dict[str, float]:
    """``best error / error`` of each value's mean validation metric over ``keys``: 1 at the
    best, 0 for a value without a validation score."""
    errors = {k: error(points[k].val, higher_is_better) for k in keys}
    finite = [e for e in errors.values() if math.isfinite(e)]
    best = min(finite) if finite else math.nan
    scores = {}
    for k, e in errors.items():
        if not math.isfinite(e):
            scores[k] = 0.0
        elif e <= 0:
            scores[k] = 1.0
        else:
            scores[k] = max(best, 0.0) / e
    return scores


def lowo_choice(scores: dict[str, dict[str, float]], keys: list[str],
                held_out: str) -> tuple[str, float]:
    """The value (of ``keys``, in order) with the best mean score over the workloads other than
    ``held_out``, and that mean; ties go to the earlier value."""
    others = [w for w in scores if w != held_out]
    means = {k: float(np.mean([scores[w][k] for w in others])) for k in keys}
    best = max(keys, key=lambda k: (means[k], -keys.index(k)))
    return best, means[best]


def self_tuning(sweeps: list[LRSweep], margins: Mapping[str, float | Margin] | None = None
                ) -> tuple[pd.DataFrame, list[str]]:
    """The self-tuning table (``COLUMNS``; one line per workload and optimizer, with its
    verdict against the workload's best self-tuned optimizer) and notes on the optimizers left
    out (fewer than two workloads, or no grid value on all of them). ``margins``: equivalence
    margins by dataset, as for the significance table."""
    by_name: dict[str, dict[str, LRSweep]] = {}
    tests: dict[tuple[str, str], list[float]] = {}
    datasets: dict[str, str] = {}
    for sweep in sweeps:
        if sweep_points(sweep):
            by_name.setdefault(sweep.name, {}).setdefault(sweep.row, sweep)
    records, notes = [], []
    for name, per_row in by_name.items():
        if len(per_row) < 2:
            notes.append(f"{name}: a grid on {len(per_row)} workload(s), two needed")
            continue
        grids = {row: grid_points(s) for row, s in per_row.items()}
        keys = [k for k in next(iter(grids.values())) if all(k in g for g in grids.values())]
        keys.sort(key=lambda k: float(k))
        if not keys:
            notes.append(f"{name}: no grid value run on every workload")
            continue
        higher = {row: s.points[0][1].higher_is_better is not False
                  for row, s in per_row.items()}
        scores = {row: normalized_scores(grids[row], keys, higher[row]) for row in per_row}
        for row, sweep in per_row.items():
            key, score = lowo_choice(scores, keys, row)
            point = grids[row][key]
            test = summarize(point.test)
            tests[(row, name)] = point.test
            datasets[row] = sweep.points[0][1].dataset
            tuned_points = sweep_points(sweep)
            tuned = tuned_points[chosen(tuned_points, higher[row])]
            sign = 1.0 if higher[row] else -1.0
            records.append({
                "row": row, "optimizer": name, "key": sweep.lr_key,
                "metric": sweep.points[0][1].metric_name, "higher_is_better": higher[row],
                "values": len(keys), "lowo_value": point.value, "lowo_score": score,
                "lowo_n": test.n, "lowo_test_mean": test.mean, "lowo_test_std": test.std,
                "tuned_value": tuned.value, "tuned_test_mean": tuned.test[0],
                "loss": sign * (tuned.test[0] - test.mean),
                "lowo_error": error(test.mean, higher[row])})
    rows = list(dict.fromkeys(s.row for s in sweeps))  # table order: rows, then columns
    names = list(dict.fromkeys(s.name for s in sweeps))
    records.sort(key=lambda r: (rows.index(r["row"]), names.index(r["optimizer"])))
    add_verdicts(records, tests, {row: (margins or {}).get(d) for row, d in datasets.items()})
    return pd.DataFrame.from_records(records, columns=COLUMNS), notes


def add_verdicts(records: list[dict], tests: Mapping[tuple[str, str], list[float]],
                 margins: Mapping[str, float | Margin | None]) -> None:
    """Fill ``best_optimizer``, ``p``, ``p_holm``, ``margin``, ``p_tost_holm`` and ``verdict``
    of each record by ``compare_with_best``: its self-tuned test values against the workload's
    best self-tuned mean, Holm over every comparison of the records, TOST with the row's
    margin."""
    samples = {i: Sample(rec["row"], tests[(rec["row"], rec["optimizer"])],
                         bool(rec["higher_is_better"]), margins.get(rec["row"]))
               for i, rec in enumerate(records)}
    bests = row_bests(samples)
    against = compare_with_best(samples)
    for i, rec in enumerate(records):
        top = bests.get(rec["row"])
        rec.update(best_optimizer=records[top]["optimizer"] if top is not None else "",
                   p=math.nan, p_holm=math.nan, margin=math.nan, p_tost_holm=math.nan,
                   verdict="best mean" if i == top else "too few runs")
        if i in against:
            c = against[i]
            rec.update(p=c.p, p_holm=c.p_holm, margin=c.margin, p_tost_holm=c.p_tost_holm,
                       verdict=c.verdict_text())


def profile_errors(table: pd.DataFrame) -> tuple[dict[str, dict[str, float]], list[str]]:
    """``{optimizer: {workload: self-tuned test error}}`` of the optimizers scored on every
    workload of the table (``inf`` without a test score), and the optimizers left out."""
    workloads = set(table["row"])
    costs: dict[str, dict[str, float]] = {}
    dropped = []
    for name, part in table.groupby("optimizer", sort=False):
        if set(part["row"]) != workloads:
            dropped.append(str(name))
            continue
        costs[str(name)] = {r: (e if math.isfinite(e) else math.inf)
                            for r, e in zip(part["row"], part["lowo_error"], strict=True)}
    return costs, dropped


def against_best(rec: Mapping) -> str:
    """``best mean``, ``p=0.012`` against the best self-tuned optimizer, or ``–``."""
    if rec["verdict"] == "best mean":
        return "best mean"
    if not math.isfinite(rec["p"]):
        return "–"
    return f"{rec['best_optimizer']}: {format_p(rec['p'])}"


def self_tuning_table(table: pd.DataFrame) -> Table:
    """``self_tuning.*``: the table as shown, one line per workload and optimizer."""
    header = ["dataset / model", "optimizer", "tuned key", "values on every workload",
              "self-tuned value (leave-one-workload-out)", f"its test mean {PM} std (n)",
              "workload-tuned value", "its test mean", "loss (+ = self-tuning worse)",
              "against the workload's best self-tuned (Welch, two-sided)",
              f"Holm-adjusted p ({int(table['p'].notna().sum())} comparisons)",
              "verdict (Holm; TOST with the margin)"]
    body = []
    for row in dict.fromkeys(table["row"]):
        part = table[table["row"] == row]
        places = decimals(list(part["lowo_test_mean"]) + list(part["tuned_test_mean"]))
        for _, rec in part.iterrows():
            mean = (f"{rec['lowo_test_mean']:.{places}f}"
                    if math.isfinite(rec["lowo_test_mean"]) else "–")
            if math.isfinite(rec["lowo_test_std"]):
                mean += f" {PM} {rec['lowo_test_std']:.{places}f}"
            body.append([Cell(row), Cell(rec["optimizer"]), Cell(rec["key"].split(".", 1)[1]),
                         Cell(str(rec["values"])), Cell(f"{rec['lowo_value']:g}"),
                         Cell(f"{mean} ({rec['lowo_n']})"), Cell(f"{rec['tuned_value']:g}"),
                         Cell(f"{rec['tuned_test_mean']:.{places}f}"),
                         Cell(f"{rec['loss']:+.{places}f}" if math.isfinite(rec["loss"])
                              else "–"),
                         Cell(against_best(rec)), Cell(format_p(rec["p_holm"])
                                                       if math.isfinite(rec["p"]) else "–"),
                         Cell(rec["verdict"])])
    title = ("Self-tuning track: one step size per optimizer for the whole family, chosen for "
             "each workload on the other workloads' mean normalized validation score "
             "(best error / error), scored on the workload's final test metric; beside it the "
             "value tuned on the workload itself, and the verdict against the workload's best "
             f"self-tuned optimizer (Welch; a difference only at p < {ALPHA} after Holm's "
             "correction over the table, equivalence only by TOST with the stated margin)")
    return Table("self_tuning", title, header, body)


def plot_self_tuning_profile(table: pd.DataFrame, colors: dict[str, tuple],
                             out: Path) -> list[Path]:
    """``self_tuning_profile.png``/``.pdf``: Dolan-More profile of the self-tuned test errors
    (fraction of workloads whose error is within tau times the best optimizer's)."""
    costs, _ = profile_errors(table) if not table.empty else ({}, [])
    if not costs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    taus = profile_taus(costs)
    profile = performance_profile(costs, list(taus))
    workloads = len({w for per in costs.values() for w in per})
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    draw_profile(ax, taus, profile, colors)
    ax.set_xlabel("tau (self-tuned test error within a factor tau of the best optimizer's)")
    ax.set_ylabel(f"fraction of the {workloads} workload(s)")
    ax.set_title("Self-tuning track: performance profile (Dolan-More)\n"
                 "test error = 100 - accuracy, or RMSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, out / "self_tuning_profile")
