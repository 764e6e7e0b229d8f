"""Group runs into variants and aggregate over seeds: table values, curves, time to target.

A *group* is every run with the same config except the replicate keys (``seed``, and
``dataset.split`` for the UCI protocol) and bookkeeping keys (progress bars, data paths,
device, evaluation batch size, Hydra's own settings). Groups are laid out as a paper table:
a *row* is a dataset / model (plus model or setup knobs that differ between runs on it), a
*column* is an optimizer variant (its label plus the optimizer knobs that differ between runs
with that label, e.g. ``sgd lr=0.05``).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from samt.holdout import without_inactive_val_keys
from samt.report.collect import Run
from samt.run_folder import BUILD_KEYS, without_added_defaults

REPLICATE_KEYS = ("seed", "dataset.split")
# Keys that change no number of a run: they never split groups or name rows (a run with
# logger=tensorboard sits in the same row as one with logger=none).
BOOKKEEPING_KEYS = ("progress", "data.root", "data.cache_dir", "data.download", "device",
                    "eval_batch_size", "hydra", "resume", "tuning", "tags", "logger",
                    "optimized_metric")
# Where the data were on the machine that ran (no part of a run's result): not in all_runs.csv.
MACHINE_PATH_KEYS = ("data.root", "data.cache_dir")
# step-size keys, in the order a sweep's x-axis is taken from (SAMT: eta_max, with eta0 tied to
# it in the protocol's grids, or eta0 alone)
LR_KEYS = ("optimizer.lr", "optimizer.eta_max", "optimizer.eta0")
BASELINE_ORDER = ("sgd", "adam")
DEFAULT_TARGETS = {"mnist": 98.0, "fashion_mnist": 89.0}


def is_group_key(key: str) -> bool:
    """Whether a config key tells variants apart (not a replicate or bookkeeping key)."""
    if key in REPLICATE_KEYS:
        return False
    return not any(key == b or key.startswith(f"{b}.") for b in BOOKKEEPING_KEYS)


def format_value(value: Any) -> str:
    """A config value as it appears in a column or row name: ``0.05``, ``[400,200]``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def shown_path(value: Any, base: Path | None = None) -> Any:
    """An absolute path inside ``base`` (default: the current folder) made relative to it, so
    that a report written in a checkout (``runs/...``) names no path of the machine; any other
    value as it is."""
    if not isinstance(value, str | Path) or not os.path.isabs(value):
        return value
    base_text = os.path.abspath(base or os.getcwd())
    path = os.path.abspath(value)
    if path == base_text or not path.startswith(base_text.rstrip(os.sep) + os.sep):
        return str(value)
    return Path(os.path.relpath(path, base_text)).as_posix()


def _sort_value(value: Any) -> tuple:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


@dataclass
class Group:
    """Runs that differ only in their seed (or UCI split), with their place in the tables."""

    key: tuple[tuple[str, Any], ...]
    runs: list[Run]
    row: str = ""
    column: str = ""
    row_knobs: dict[str, Any] = field(default_factory=dict)
    column_knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.key)

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset.name"))

    @property
    def label(self) -> str:
        return str(self.config.get("optimizer.label"))

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.completed]

    @property
    def metric_name(self) -> str | None:
        """``accuracy`` or ``rmse`` (from any run that got far enough to know)."""
        return next((r.summary["metric"] for r in self.runs if r.summary.get("metric")), None)

    @property
    def higher_is_better(self) -> bool | None:
        for run in self.runs:
            if run.summary.get("higher_is_better") is not None:
                return bool(run.summary["higher_is_better"])
        return None if self.metric_name is None else self.metric_name == "accuracy"

    def count(self, *statuses: str) -> int:
        return sum(r.status in statuses for r in self.runs)


def _part(key: str) -> str:
    head = key.split(".", 1)[0]
    return head if head in ("dataset", "model", "optimizer") else "setup"


def _short(key: str) -> str:
    return key.split(".", 1)[1] if _part(key) != "setup" else key


def _differing(configs: list[dict[str, Any]], keys: list[str]) -> list[str]:
    missing = object()
    return [k for k in keys if len({repr(c.get(k, missing)) for c in configs}) > 1]


def knob_text(knobs: dict[str, Any]) -> str:
    """``{"optimizer.lr": 0.05}`` -> ``"lr=0.05"``."""
    return " ".join(f"{_short(k)}={format_value(v)}" for k, v in knobs.items())


def _name_groups(groups: list[Group], per_row_columns: bool = False) -> None:
    """Set each group's row and column name from the knobs that tell its neighbours apart.

    ``per_row_columns``: a column is split by optimizer knobs only where they differ within one
    row, so a table tuned per dataset keeps one column per optimizer label.
    """
    def knobs(group: Group, parts: tuple[str, ...], exclude: tuple[str, ...]) -> dict[str, Any]:
        return {k: v for k, v in group.key if _part(k) in parts and k not in exclude}

    def differing(scope: Callable[[Group], Any], parts: tuple[str, ...],
                  exclude: tuple[str, ...]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for value in {scope(g) for g in groups}:
            members = [g for g in groups if scope(g) == value]
            configs = [knobs(g, parts, exclude) for g in members]
            keys = list(dict.fromkeys(k for c in configs for k in c))
            diff = _differing(configs, keys)
            for g in members:
                out[id(g)] = {k: g.config[k] for k in diff if k in g.config}
        return out

    dataset_knobs = differing(lambda g: g.dataset, ("dataset",), ("dataset.name",))
    row_knobs = differing(lambda g: (g.dataset, g.config.get("model.name")), ("model", "setup"),
                          ("model.name",))
    if per_row_columns:  # knobs that differ within a row only (step sizes tuned per dataset)
        opt_knobs = differing(lambda g: (g.label, g.dataset, g.config.get("model.name")),
                              ("optimizer",), ("optimizer.label",))
    else:
        opt_knobs = differing(lambda g: g.label, ("optimizer",), ("optimizer.label",))
    for g in groups:
        dataset = " ".join(filter(None, [g.dataset, knob_text(dataset_knobs[id(g)])]))
        model = " ".join(filter(None, [str(g.config.get("model.name")),
                                       knob_text(row_knobs[id(g)])]))
        g.row = f"{dataset} / {model}"
        g.row_knobs = {**dataset_knobs[id(g)], **row_knobs[id(g)]}
        g.column_knobs = opt_knobs[id(g)]
        g.column = " ".join(filter(None, [g.label, knob_text(g.column_knobs)]))


def _row_order(g: Group) -> tuple:
    return (g.dataset, str(g.config.get("model.name")),
            tuple((k, _sort_value(v)) for k, v in g.row_knobs.items()))


def _group_order(g: Group) -> tuple:
    name = str(g.config.get("optimizer.name"))
    rank = BASELINE_ORDER.index(name) if name in BASELINE_ORDER else len(BASELINE_ORDER)
    return (rank, g.label, tuple(_sort_value(v) for v in g.column_knobs.values()))


def build_groups(runs: list[Run], per_row_columns: bool = False) -> list[Group]:
    """Group runs by their config without replicate/bookkeeping keys; sorted row by row."""
    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        # A null value counts as absent: a key added later with a null default (e.g.
        # optimizer.meta_init) does not split older runs from newer ones.
        config = without_added_defaults(without_inactive_val_keys(run.config))
        key = tuple(sorted((k, v) for k, v in config.items()
                           if is_group_key(k) and v is not None and k not in BUILD_KEYS))
        by_key.setdefault(key, []).append(run)
    groups = [Group(key=k, runs=sorted(v, key=lambda r: _sort_value(r.config.get("seed"))))
              for k, v in by_key.items()]
    _name_groups(groups, per_row_columns)
    return sorted(groups, key=lambda g: (_row_order(g), _group_order(g)))


def rows_and_columns(groups: list[Group]) -> tuple[list[str], list[str]]:
    """Row names and column names in table order (baselines first, then labels A-Z)."""
    rows = list(dict.fromkeys(g.row for g in groups))
    columns = [g.column for g in sorted(groups, key=_group_order)]
    return rows, list(dict.fromkeys(columns))


# --- per-run values ----------------------------------------------------------------------------

def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _epoch_time(run: Run) -> float:
    if "epoch_time_s" in run.summary:  # a run rebuilt from all_runs.csv: the number it holds
        return _number(run.summary["epoch_time_s"])
    epochs = _number(run.summary.get("epochs_completed"))
    return _number(run.summary.get("wall_time_s")) / epochs if epochs and epochs > 0 else math.nan


def final_test_metric(run: Run) -> float:
    """The last epoch's test metric (NaN when the run has none)."""
    return _number((run.summary.get("final") or {}).get("test_metric"))


def final_val_metric(run: Run) -> float:
    """The last epoch's validation metric (NaN without a validation split)."""
    return _number((run.summary.get("final") or {}).get("val_metric"))


@dataclass(frozen=True)
class Metric:
    """A per-run number that gets a table. ``lower_is_better=None``: the task's own metric.
    ``optional``: the table is written only when some run has a value (validation)."""

    name: str
    title: str
    value: Callable[[Run], float]
    lower_is_better: bool | None
    optional: bool = False


METRICS = (
    Metric("final_test_metric", "Final test metric (accuracy in %, RMSE in target units)",
           final_test_metric, None),
    Metric("best_test_metric", "Best test metric over epochs",
           lambda r: _number(r.summary.get("best_test_metric")), None),
    Metric("final_train_loss", "Final train loss",
           lambda r: _number((r.summary.get("final") or {}).get("train_loss")), True),
    Metric("epoch_time_s", "Training seconds per epoch (evaluation excluded)", _epoch_time, True),
    Metric("param_updates", "Parameter (layer) updates in the whole run",
           lambda r: _number(r.summary.get("param_updates")), True),
    Metric("final_val_metric", "Final validation metric (the held-out part of the training "
           "set; what tuning chooses on)", final_val_metric, None, optional=True),
)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for a single value) and count of the finite values."""
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan, 0
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std, int(finite.size)


def group_tags(group: Group) -> str:
    """The tags of a group's runs (``tags``, which do not split groups), each once, in the
    order first seen: ``"baseline, lr_sweep"``."""
    tags = (tag for run in group.runs for tag in run.config.get("tags") or ())
    return ", ".join(dict.fromkeys(str(t) for t in tags))


def aggregate(groups: list[Group]) -> pd.DataFrame:
    """Long format: one row per group with run counts and mean/std/n of every metric.

    Only completed runs (``completed``, and ``reached_target``: stopped at ``stop_at_target``)
    enter the means; failed, diverged, interrupted and running runs are counted in their own
    columns (``failed`` = failed + diverged + interrupted).
    """
    records = []
    for g in groups:
        rec: dict[str, Any] = {
            "row": g.row, "column": g.column, "dataset": g.dataset,
            "model": g.config.get("model.name"), "label": g.label,
            "optimizer": g.config.get("optimizer.name"), "metric": g.metric_name,
            "higher_is_better": g.higher_is_better, "runs": len(g.runs),
            "completed": len(g.completed), "failed": g.count("failed", "diverged", "interrupted"),
            "diverged": g.count("diverged"), "interrupted": g.count("interrupted"),
            "running": g.count("running"),
            "seeds": " ".join(format_value(r.config.get("seed")) for r in g.runs),
            "tags": group_tags(g),
        }
        for metric in METRICS:
            mean, std, n = mean_std([metric.value(r) for r in g.completed])
            rec.update({f"{metric.name}_mean": mean, f"{metric.name}_std": std,
                        f"{metric.name}_n": n})
        rec.update({k: format_value(v) if isinstance(v, tuple) else shown_path(v)
                    for k, v in g.key})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def run_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run folder: path, status, error, epochs completed, metric and direction,
    headline numbers and config keys (``MACHINE_PATH_KEYS`` left out); paths inside the current
    folder relative to it (``shown_path``). ``collect.load_run_table`` reads it back."""
    records = []
    for run in sorted(runs, key=lambda r: str(r.path)):
        rec: dict[str, Any] = {"path": shown_path(str(run.path)), "status": run.status,
                               "error": run.summary.get("error"),
                               "epochs_completed": run.summary.get("epochs_completed"),
                               "metric": run.summary.get("metric"),
                               "higher_is_better": run.summary.get("higher_is_better")}
        rec.update({m.name: m.value(run) for m in METRICS})
        rec.update({k: format_value(v) if isinstance(v, tuple) else shown_path(v)
                    for k, v in run.config.items() if k not in MACHINE_PATH_KEYS})
        records.append(rec)
    return pd.DataFrame.from_records(records)


# --- curves and time to target -----------------------------------------------------------------

def mean_curves(group: Group, columns: list[str]) -> pd.DataFrame:
    """Per epoch mean and std (``{col}_mean``, ``{col}_std``) of ``columns`` over completed runs.

    Empty when no completed run has those columns.
    """
    frames = [r.metrics[["epoch", *columns]] for r in group.completed
              if not r.metrics.empty and set(columns) <= set(r.metrics.columns)]
    if not frames:
        return pd.DataFrame()
    stacked = pd.concat(frames, ignore_index=True).apply(pd.to_numeric, errors="coerce")
    stats = stacked.groupby("epoch")[columns].agg(["mean", "std"])
    stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
    return stats.reset_index()


def first_reached(run: Run, target: float, higher_is_better: bool,
                  column: str = "test_metric") -> dict[str, float] | None:
    """Epoch, parameter updates and training seconds at the first epoch whose ``column``
    reaches ``target`` (``>=`` when higher is better, else ``<=``); None if never reached."""
    m = run.metrics
    if m.empty or column not in m.columns:
        return None
    test = pd.to_numeric(m[column], errors="coerce")
    hit = test >= target if higher_is_better else test <= target
    if not hit.any():
        return None
    row = m[hit.to_numpy()].iloc[0]
    return {"epochs": float(row["epoch"]), "param_updates": _number(row.get("param_updates")),
            "seconds": _number(row.get("wall_time_s"))}


def time_to_target(groups: list[Group], targets: dict[str, float]) -> pd.DataFrame:
    """AlgoPerf-style: per group with a target, how many runs (any status) reached it and the
    mean/std of epochs, parameter updates and training seconds over the runs that did."""
    records = []
    for g in groups:
        target, higher = targets.get(g.dataset), g.higher_is_better
        if target is None or higher is None:
            continue
        hits = [h for h in (first_reached(r, target, higher) for r in g.runs) if h is not None]
        rec: dict[str, Any] = {"row": g.row, "column": g.column, "dataset": g.dataset,
                               "metric": g.metric_name, "target": target,
                               "direction": ">=" if higher else "<=",
                               "reached": len(hits), "runs": len(g.runs)}
        for name in ("epochs", "param_updates", "seconds"):
            mean, std, _ = mean_std([h[name] for h in hits])
            rec.update({f"{name}_mean": mean, f"{name}_std": std})
        records.append(rec)
    return pd.DataFrame.from_records(records)


# --- validation targets and performance profiles ------------------------------------------------

PROFILE_MEASURES = (("seconds", "training seconds"), ("param_updates", "parameter updates"))
AUTO_RULE = "auto: median of the optimizers' mean best validation metric"


def best_val_metric(run: Run, higher_is_better: bool) -> float:
    """The best ``val_metric`` over the epochs of ``metrics.csv`` (NaN when there is none)."""
    if run.metrics.empty or "val_metric" not in run.metrics.columns:
        return math.nan
    values = pd.to_numeric(run.metrics["val_metric"], errors="coerce").dropna()
    if values.empty:
        return math.nan
    return float(values.max() if higher_is_better else values.min())


def val_targets(groups: list[Group], given: dict[str, float]) -> dict[str, tuple[float, str]]:
    """Per workload (table row) with validation data: ``(target, rule)``. ``given`` maps a
    dataset name to a target (``--val-target``); any other workload gets the median over its
    optimizer variants of their mean (over completed runs) best-epoch validation metric."""
    targets: dict[str, tuple[float, str]] = {}
    for row in dict.fromkeys(g.row for g in groups):
        members = [g for g in groups if g.row == row and g.higher_is_better is not None]
        means = [mean_std([best_val_metric(r, bool(g.higher_is_better))
                           for r in g.completed])[0] for g in members]
        means = [m for m in means if math.isfinite(m)]
        if not means:
            continue
        dataset = members[0].dataset
        if dataset in given:
            targets[row] = (given[dataset], "given (--val-target)")
        else:
            targets[row] = (float(statistics.median(means)), AUTO_RULE)
    return targets


def _median_cost(costs: list[float]) -> float:
    """Median with ``inf`` for runs that never reached: finite only if more than half did."""
    return float(statistics.median(costs)) if costs else math.inf


def val_target_costs(groups: list[Group],
                     targets: dict[str, tuple[float, str]]) -> pd.DataFrame:
    """Per group on a workload with a validation target: how many runs (any status) reached it
    and the median training seconds and parameter updates to the first epoch whose
    ``val_metric`` reaches it (``inf`` unless more than half of the runs did)."""
    records = []
    for g in groups:
        if g.row not in targets or g.higher_is_better is None:
            continue
        target, rule = targets[g.row]
        hits = [first_reached(r, target, bool(g.higher_is_better), "val_metric")
                for r in g.runs]
        rec: dict[str, Any] = {"row": g.row, "column": g.column, "dataset": g.dataset,
                               "metric": g.metric_name, "target": target, "rule": rule,
                               "direction": ">=" if g.higher_is_better else "<=",
                               "reached": sum(h is not None for h in hits), "runs": len(g.runs)}
        for name, _ in PROFILE_MEASURES:
            rec[name] = _median_cost([math.inf if h is None else h[name] for h in hits])
        records.append(rec)
    return pd.DataFrame.from_records(records)


def on_every_workload(costs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The costs of the optimizer columns run on every workload, and the columns left out.

    A Dolan-More profile compares solvers over the same problems: an optimizer that a table
    did not run (e.g. Prodigy on the UCI sets) would otherwise count as failing there."""
    if costs.empty:
        return costs, []
    workloads = costs["row"].nunique()
    counts = costs.groupby("column")["row"].nunique()
    dropped = sorted(str(c) for c, n in counts.items() if n < workloads)
    return costs[~costs["column"].isin(dropped)], dropped


def profile_costs(costs: pd.DataFrame, measure: str) -> dict[str, dict[str, float]]:
    """``{optimizer column: {workload row: cost}}`` for ``stats.performance_profile``."""
    out: dict[str, dict[str, float]] = {}
    for _, rec in costs.iterrows():
        out.setdefault(rec["column"], {})[rec["row"]] = float(rec[measure])
    return out


# --- learning-rate sweeps ----------------------------------------------------------------------

@dataclass
class LRSweep:
    """Groups in one row that differ only in their learning-rate key; sorted by that rate."""

    row: str
    name: str
    lr_key: str
    points: list[tuple[float, Group]]


def lr_sweeps(groups: list[Group]) -> list[LRSweep]:
    """Every set of >= 2 groups that share a row and all config but their step-size keys
    (``LR_KEYS``), one value per group of the first step-size key that tells them apart:
    ``optimizer.lr`` (adam/sgd), ``optimizer.eta_max`` (SAMT's tuned grids, ``eta0`` tied to it)
    or ``optimizer.eta0``. Named by the column name without the rate."""
    buckets: dict[tuple, list[Group]] = {}
    for g in groups:
        present = tuple(k for k in LR_KEYS if k in g.config)
        if present:
            rest = tuple((k, v) for k, v in g.key if k not in LR_KEYS)
            buckets.setdefault((g.row, present, rest), []).append(g)
    sweeps = []
    for (row, present, _), members in buckets.items():
        for lr_key in present:
            rates = [_number(g.config.get(lr_key)) for g in members]
            if len(set(rates)) == len(members) and all(r > 0 for r in rates):
                break
        else:
            continue
        if len(members) < 2:
            continue
        points = sorted(zip(rates, members, strict=True), key=lambda p: p[0])
        first = points[0][1]
        knobs = {k: v for k, v in first.column_knobs.items() if k not in LR_KEYS}
        name = " ".join(filter(None, [first.label, knob_text(knobs)]))
        sweeps.append(LRSweep(row, name, lr_key, points))
    return sorted(sweeps, key=lambda s: (_row_order(s.points[0][1]), _group_order(s.points[0][1])))
