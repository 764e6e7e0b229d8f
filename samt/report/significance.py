"""The certainty table: per dataset / model, every optimizer's final test metric over seeds with
its 95 % confidence interval, and Welch's test against the row's best optimizer."""

from __future__ import annotations

import math

from samt.report.aggregate import Group, final_test_metric
from samt.report.stats import ALPHA, LEVEL, format_p, summarize, verdict
from samt.report.tables import PM, Cell, Table, decimals


def significance_table(groups: list[Group], rows: list[str]) -> Table | None:
    """One line per group; ``None`` when no group has two completed runs (nothing to test).

    The reference of each row is the group with the best mean (higher accuracy, lower RMSE);
    every other group is compared with it by Welch's two-sided t-test, and called "worse" only
    when p < ``ALPHA``.
    """
    if not any(len(g.completed) >= 2 for g in groups):
        return None
    header = ["dataset / model", "optimizer", "metric", "n", f"mean {PM} std",
              f"{LEVEL:.0%} CI of the mean", "against the row's best (Welch, two-sided)"]
    body = []
    for row in rows:
        members = [g for g in groups if g.row == row]
        values = {id(g): [final_test_metric(r) for r in g.completed] for g in members}
        sums = {id(g): summarize(values[id(g)]) for g in members}
        ranked = [g for g in members if sums[id(g)].n > 0 and g.higher_is_better is not None]
        best = None
        if ranked:
            sign = 1.0 if ranked[0].higher_is_better else -1.0
            best = max(ranked, key=lambda g: sign * sums[id(g)].mean)
        places = decimals([s.mean for s in sums.values()])
        for g in members:
            s = sums[id(g)]
            mean = f"{s.mean:.{places}f}" if s.n else "–"
            if s.n >= 2:
                mean += f" {PM} {s.std:.{places}f}"
            ci = (f"[{s.low:.{places}f}, {s.high:.{places}f}]" if math.isfinite(s.low) else "–")
            if best is None or s.n == 0:
                against = "–"
            elif g is best:
                against = "best mean"
            else:
                label, p = verdict(values[id(g)], values[id(best)], bool(g.higher_is_better),
                                   ALPHA)
                against = f"{label} than {best.column} ({format_p(p)})" if label in (
                    "better", "worse") else f"{label} ({format_p(p)})"
            body.append([Cell(row), Cell(g.column), Cell(str(g.metric_name or "")),
                         Cell(str(s.n)), Cell(mean, best=g is best), Cell(ci), Cell(against)])
    title = (f"Final test metric over seeds: mean {PM} std, the {LEVEL:.0%} confidence interval "
             f"of the mean (Student's t), and Welch's two-sided t-test against the best mean "
             f"of the row; a difference counts only at p < {ALPHA}")
    return Table("significance", title, header, body)
