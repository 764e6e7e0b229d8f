"""Forest plot: per workload (dataset / model row) and SAMT variant, the difference between
SAMT's mean final test metric and the best peer's (the best non-SAMT column of the row), with its
95 % Welch-Satterthwaite confidence interval, oriented so that right = SAMT better.

Units: accuracy in points (SAMT - peer); RMSE in percent of the best peer's mean RMSE
(100 (peer - SAMT) / peer), so that the UCI sets share one axis. The interval of the relative
difference scales the interval of the difference by the peer's mean, taken as fixed. The
equivalence margin of the row (``samt-report --margin``) is converted to the same units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from samt.report.aggregate import Group, final_test_metric
from samt.report.plots import save_figure
from samt.report.significance import Margin, row_margin
from samt.report.stats import LEVEL, difference_ci, summarize

UNITS = {"accuracy": "accuracy points (SAMT - best peer)",
         "rmse": "% of the best peer's RMSE (100 (peer - SAMT) / peer)"}
COLUMNS = ["row", "dataset", "metric", "samt", "peer", "samt_n", "peer_n", "samt_mean",
           "peer_mean", "difference", "low", "high", "unit", "margin"]


def is_samt(group: Group) -> bool:
    """A SAMT column: its optimizer name starts with ``samt``."""
    return str(group.config.get("optimizer.name", "")).startswith("samt")


def _values(group: Group) -> list[float]:
    return [v for v in (final_test_metric(r) for r in group.completed) if math.isfinite(v)]


def forest_table(groups: list[Group], rows: list[str],
                 margins: Mapping[str, float | Margin] | None = None) -> pd.DataFrame:
    """One line per row and SAMT column with a peer: the difference to the best peer (best mean
    of the row's non-SAMT columns), its ``LEVEL`` interval (NaN below two runs on a side) and
    the row's margin, in the plotted units (``UNITS``; NaN without a margin). Positive = SAMT
    better."""
    margins = margins or {}
    records = []
    for row in rows:
        members = [g for g in groups if g.row == row and g.higher_is_better is not None
                   and _values(g)]
        peers = [g for g in members if not is_samt(g)]
        samts = [g for g in members if is_samt(g)]
        if not peers or not samts:
            continue
        higher = bool(members[0].higher_is_better)
        sign = 1.0 if higher else -1.0
        means = {id(g): summarize(_values(g)).mean for g in members}
        peer = max(peers, key=lambda g: sign * means[id(g)])
        best_mean = max((means[id(g)] for g in members), key=lambda m: sign * m)
        margin = row_margin(margins, members[0].dataset, best_mean)
        metric = members[0].metric_name or ("accuracy" if higher else "rmse")
        for samt in samts:
            diff, low, high = difference_ci(_values(samt), _values(peer))
            if higher:  # accuracy (or any higher-is-better metric): points
                scale, shown = 1.0, (diff, low, high)
            else:  # RMSE: percent of the peer's mean, sign flipped so that right = SAMT better
                scale = 100.0 / abs(means[id(peer)])
                shown = (-diff * scale, -high * scale, -low * scale)
            records.append({
                "row": row, "dataset": samt.dataset, "metric": metric, "samt": samt.column,
                "peer": peer.column, "samt_n": len(_values(samt)), "peer_n": len(_values(peer)),
                "samt_mean": means[id(samt)], "peer_mean": means[id(peer)],
                "difference": shown[0], "low": shown[1], "high": shown[2],
                "unit": "points" if higher else "% of peer",
                "margin": margin * scale})
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def plot_forest(table: pd.DataFrame, out: Path) -> list[Path]:
    """``forest.png``/``.pdf``: one panel per metric kind, one line per row of ``table``
    (``forest_table``), the interval as a bar, a line at 0 and the margin shaded."""
    if table.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    kinds = list(dict.fromkeys(table["metric"]))
    heights = [max(1.5, 0.45 * (table["metric"] == k).sum() + 1.0) for k in kinds]
    fig = Figure(figsize=(9, sum(heights) + 0.8), layout="constrained")
    axes = fig.subplots(len(kinds), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, kind in zip(axes, kinds, strict=True):
        part = table[table["metric"] == kind].reset_index(drop=True)
        ys = np.arange(len(part))[::-1]
        for y, (_, rec) in zip(ys, part.iterrows(), strict=True):
            if math.isfinite(rec["margin"]):
                ax.fill_betweenx([y - 0.4, y + 0.4], -rec["margin"], rec["margin"],
                                 color="tab:green", alpha=0.15, linewidth=0)
            if math.isfinite(rec["low"]):
                ax.plot([rec["low"], rec["high"]], [y, y], color="black", linewidth=1.5)
            ax.plot([rec["difference"]], [y], marker="s", color="black")
        ax.axvline(0.0, color="grey", linewidth=1.0)
        ax.set_yticks(ys, [f"{r}: {s} vs {p}" for r, s, p in
                           zip(part["row"], part["samt"], part["peer"], strict=True)])
        ax.set_ylim(-0.7, len(part) - 0.3)
        ax.set_xlabel(UNITS.get(kind, "SAMT - best peer"))
        ax.set_title(f"{kind}: right = SAMT better")
        ax.grid(alpha=0.3, axis="x")
    shaded = "; shaded: equivalence margin" if table["margin"].notna().any() else ""
    fig.suptitle(f"SAMT against the best peer (final test metric)\nmean difference and "
                 f"{LEVEL:.0%} CI (Welch-Satterthwaite){shaded}")
    return save_figure(fig, out / "forest")
