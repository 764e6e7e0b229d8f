"""The certainty table: per dataset / model, every optimizer's final test metric over seeds with
its 95 % confidence interval, Welch's test against the row's best optimizer, and the verdict
after Holm's correction over the table (and, with a margin, an equivalence test)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from samt.report.aggregate import Group, final_test_metric
from samt.report.stats import (
    ALPHA,
    LEVEL,
    decide,
    format_p,
    holm,
    summarize,
    tost,
    verdict,
    welch,
)
from samt.report.tables import PM, Cell, Table, decimals


@dataclass(frozen=True)
class Margin:
    """An equivalence margin: in the metric's units, or (``relative``) in percent of the row's
    best mean (``--margin uci_boston=2%``: 2 % of the best mean RMSE of that row)."""

    value: float
    relative: bool = False

    def absolute(self, best_mean: float) -> float:
        """The margin in the metric's units for a row whose best mean is ``best_mean``."""
        return self.value / 100 * abs(best_mean) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


def row_margin(margins: Mapping[str, float | Margin], dataset: str, best_mean: float) -> float:
    """The margin of a row in the metric's units (NaN when its dataset has none)."""
    margin = margins.get(dataset)
    if margin is None:
        return math.nan
    return margin.absolute(best_mean) if isinstance(margin, Margin) else float(margin)


def margin_text(margins: Mapping[str, float | Margin], dataset: str, best_mean: float) -> str:
    """``0.1`` or ``2% = 0.0642``: the margin as given and, when relative, in the units."""
    margin = margins[dataset]
    absolute = row_margin(margins, dataset, best_mean)
    if isinstance(margin, Margin) and margin.relative:
        return f"{margin} = {absolute:.3g}"
    return f"{absolute:g}"


@dataclass
class _Comparison:
    """One optimizer against its row's best: Welch's t and p, and the TOST p (NaN: no margin)."""

    group: Group
    best: Group
    t: float
    p: float
    p_tost: float


def _best(members: list[Group], means: dict[int, float]) -> Group | None:
    ranked = [g for g in members if math.isfinite(means[id(g)]) and g.higher_is_better is not None]
    if not ranked:
        return None
    sign = 1.0 if ranked[0].higher_is_better else -1.0
    return max(ranked, key=lambda g: sign * means[id(g)])


def significance_table(groups: list[Group], rows: list[str],
                       margins: Mapping[str, float | Margin] | None = None) -> Table | None:
    """One line per group; ``None`` when no group has two completed runs (nothing to test).

    The reference of each row is the group with the best mean (higher accuracy, lower RMSE);
    every other group is compared with it by Welch's two-sided t-test. The comparisons of the
    whole table are one family: their p-values are adjusted by Holm's method, and a verdict is
    "better"/"worse" only at an adjusted p < ``ALPHA``. With a margin for the group's dataset
    (``margins[dataset]``, in the metric's units, or a relative ``Margin``: percent of the
    row's best mean) the two one-sided tests (TOST, also
    Holm-adjusted over the table) can make it "equivalent"; otherwise it is "inconclusive".
    """
    if not any(len(g.completed) >= 2 for g in groups):
        return None
    margins = margins or {}
    values = {id(g): [final_test_metric(r) for r in g.completed] for g in groups}
    sums = {id(g): summarize(values[id(g)]) for g in groups}
    bests = {row: _best([g for g in groups if g.row == row],
                        {id(g): sums[id(g)].mean for g in groups}) for row in rows}
    comparisons: dict[int, _Comparison] = {}
    for g in groups:
        best = bests.get(g.row)
        if best is None or g is best or sums[id(g)].n == 0:
            continue
        test = welch(values[id(g)], values[id(best)])
        margin = row_margin(margins, g.dataset, sums[id(best)].mean)
        comparisons[id(g)] = _Comparison(g, best, test.t, test.p,
                                         tost(values[id(g)], values[id(best)], margin))
    family = list(comparisons.values())
    p_holm = dict(zip((id(c.group) for c in family), holm([c.p for c in family]), strict=True))
    p_tost = dict(zip((id(c.group) for c in family), holm([c.p_tost for c in family]),
                      strict=True))
    tested = sum(math.isfinite(c.p) for c in family)
    header = ["dataset / model", "optimizer", "metric", "n", f"mean {PM} std",
              f"{LEVEL:.0%} CI of the mean", "against the row's best (Welch, two-sided)",
              f"Holm-adjusted p ({tested} comparisons)", "verdict (Holm; TOST with the margin)"]
    body = []
    for row in rows:
        members = [g for g in groups if g.row == row]
        places = decimals([sums[id(g)].mean for g in members])
        for g in members:
            s, best = sums[id(g)], bests.get(row)
            s_best = sums[id(best)] if best is not None else s
            mean = f"{s.mean:.{places}f}" if s.n else "–"
            if s.n >= 2:
                mean += f" {PM} {s.std:.{places}f}"
            ci = (f"[{s.low:.{places}f}, {s.high:.{places}f}]" if math.isfinite(s.low) else "–")
            against, adjusted, final = "–", "–", "–"
            if best is not None and g is best:
                against, final = "best mean", "best mean"
            elif id(g) in comparisons:
                c = comparisons[id(g)]
                label, p = verdict(values[id(g)], values[id(best)], bool(g.higher_is_better),
                                   ALPHA)
                against = f"{label} than {best.column} ({format_p(p)})" if label in (
                    "better", "worse") else f"{label} ({format_p(p)})"
                adjusted = format_p(p_holm[id(g)])
                final = decide(c.t, p_holm[id(g)], p_tost[id(g)], bool(g.higher_is_better))
                if math.isfinite(row_margin(margins, g.dataset, s_best.mean)):
                    final += (f" (margin {margin_text(margins, g.dataset, s_best.mean)}, TOST "
                              f"{format_p(p_tost[id(g)])})")
            body.append([Cell(row), Cell(g.column), Cell(str(g.metric_name or "")),
                         Cell(str(s.n)), Cell(mean, best=g is best), Cell(ci), Cell(against),
                         Cell(adjusted), Cell(final)])
    title = (f"Final test metric over seeds: mean {PM} std, the {LEVEL:.0%} confidence interval "
             f"of the mean (Student's t), and Welch's two-sided t-test against the best mean "
             f"of the row; the verdict counts a difference only at p < {ALPHA} after Holm's "
             "correction over the table's comparisons, and equivalence only by the two "
             "one-sided tests (TOST) with a margin given in advance (samt-report --margin)")
    return Table("significance", title, header, body)
