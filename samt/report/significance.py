"""The certainty table: per dataset / model, every optimizer's final test metric over seeds with
its 95 % confidence interval, Welch's test against the row's best optimizer, and the verdict
after Holm's correction over the table (and, with a margin, an equivalence test).

``compare_with_best`` is the mechanism, shared by every table that judges entries against the
best of their row (this one, the self-tuning track)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

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


def absolute_margin(margin: float | Margin | None, best_mean: float) -> float:
    """A margin in the metric's units for a row whose best mean is ``best_mean`` (NaN: none)."""
    if margin is None:
        return math.nan
    return margin.absolute(best_mean) if isinstance(margin, Margin) else float(margin)


def margin_label(margin: float | Margin, best_mean: float) -> str:
    """``0.1`` or ``2% = 0.0642``: the margin as given and, when relative, in the units."""
    absolute = absolute_margin(margin, best_mean)
    if isinstance(margin, Margin) and margin.relative:
        return f"{margin} = {absolute:.3g}"
    return f"{absolute:g}"


def row_margin(margins: Mapping[str, float | Margin], dataset: str, best_mean: float) -> float:
    """The margin of a row in the metric's units (NaN when its dataset has none)."""
    return absolute_margin(margins.get(dataset), best_mean)


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Sample:
    """One entry of a family of comparisons: its row (the entries that compete), its values
    over seeds, whether higher is better (``None``: no direction, never ranked) and its row's
    equivalence margin (``None``: none)."""

    row: str
    values: Sequence[float]
    higher_is_better: bool | None
    margin: float | Margin | None = None

    @property
    def mean(self) -> float:
        return summarize(self.values).mean


@dataclass(frozen=True)
class AgainstBest:
    """An entry against its row's best mean: Welch's two-sided t and p, both p-values after
    Holm's adjustment over the family, the margin in the metric's units (NaN: none) and the
    verdict of ``decide``."""

    best: Hashable
    t: float
    p: float
    p_holm: float
    p_tost_holm: float
    margin: float
    margin_label: str
    verdict: str

    def verdict_text(self) -> str:
        """The verdict, with the margin and the TOST p when the comparison was tested."""
        if not self.margin_label or not math.isfinite(self.p_holm):
            return self.verdict
        return f"{self.verdict} (margin {self.margin_label}, TOST {format_p(self.p_tost_holm)})"


def row_bests(samples: Mapping[K, Sample]) -> dict[str, K]:
    """The key of each row's best mean (higher accuracy, lower RMSE; the first on a tie); a
    row in which no entry has both a finite mean and a direction has none."""
    bests: dict[str, K] = {}
    for key, sample in samples.items():
        if sample.higher_is_better is None or not math.isfinite(sample.mean):
            continue
        sign = 1.0 if sample.higher_is_better else -1.0
        top = bests.get(sample.row)
        if top is None or sign * sample.mean > sign * samples[top].mean:
            bests[sample.row] = key
    return bests


def compare_with_best(samples: Mapping[K, Sample], alpha: float = ALPHA
                      ) -> dict[K, AgainstBest]:
    """Every entry with a value, other than its row's best, against that best: Welch's test and
    TOST with the row's margin, both Holm-adjusted over all the comparisons (the family), and
    the verdict ("better", "worse", "equivalent", "inconclusive" or "too few runs")."""
    bests = row_bests(samples)
    tested: dict[K, tuple] = {}
    for key, sample in samples.items():
        best = bests.get(sample.row)
        if best is None or key == best or summarize(sample.values).n == 0:
            continue
        top = samples[best]
        test = welch(sample.values, top.values)
        margin = absolute_margin(sample.margin, top.mean)
        label = margin_label(sample.margin, top.mean) if sample.margin is not None else ""
        tested[key] = (best, test.t, test.p, tost(sample.values, top.values, margin), margin,
                       label)
    keys = list(tested)
    p_holm = holm([tested[k][2] for k in keys])
    p_tost = holm([tested[k][3] for k in keys])
    out: dict[K, AgainstBest] = {}
    for key, ph, pt in zip(keys, p_holm, p_tost, strict=True):
        best, t, p, _, margin, label = tested[key]
        out[key] = AgainstBest(best, t, p, ph, pt, margin, label,
                               decide(t, ph, pt, bool(samples[key].higher_is_better), alpha))
    return out


def significance_table(groups: list[Group], rows: list[str],
                       margins: Mapping[str, float | Margin] | None = None) -> Table | None:
    """One line per group; ``None`` when no group has two completed runs (nothing to test).

    The reference of each row is the group with the best mean (higher accuracy, lower RMSE);
    every other group is compared with it by Welch's two-sided t-test. The comparisons of the
    whole table are one family: their p-values are adjusted by Holm's method, and a verdict is
    "better"/"worse" only at an adjusted p < ``ALPHA``. With a margin for the group's dataset
    (``margins[dataset]``, in the metric's units, or a relative ``Margin``: percent of the
    row's best mean) the two one-sided tests (TOST, also Holm-adjusted over the table) can make
    it "equivalent"; otherwise it is "inconclusive".
    """
    if not any(len(g.completed) >= 2 for g in groups):
        return None
    margins = margins or {}
    samples = {id(g): Sample(g.row, [final_test_metric(r) for r in g.completed],
                             g.higher_is_better, margins.get(g.dataset)) for g in groups}
    sums = {key: summarize(s.values) for key, s in samples.items()}
    bests = row_bests(samples)
    against = compare_with_best(samples)
    tested = sum(math.isfinite(c.p) for c in against.values())
    header = ["dataset / model", "optimizer", "metric", "n", f"mean {PM} std",
              f"{LEVEL:.0%} CI of the mean", "against the row's best (Welch, two-sided)",
              f"Holm-adjusted p ({tested} comparisons)", "verdict (Holm; TOST with the margin)"]
    by_key = {id(g): g for g in groups}
    body = []
    for row in rows:
        members = [g for g in groups if g.row == row]
        places = decimals([sums[id(g)].mean for g in members])
        best = by_key.get(bests.get(row, -1))
        for g in members:
            s = sums[id(g)]
            mean = f"{s.mean:.{places}f}" if s.n else "–"
            if s.n >= 2:
                mean += f" {PM} {s.std:.{places}f}"
            ci = (f"[{s.low:.{places}f}, {s.high:.{places}f}]" if math.isfinite(s.low) else "–")
            versus, adjusted, final = "–", "–", "–"
            if g is best:
                versus, final = "best mean", "best mean"
            elif id(g) in against and best is not None:
                c = against[id(g)]
                label, p = verdict(samples[id(g)].values, samples[id(best)].values,
                                   bool(g.higher_is_better), ALPHA)
                versus = f"{label} than {best.column} ({format_p(p)})" if label in (
                    "better", "worse") else f"{label} ({format_p(p)})"
                adjusted = format_p(c.p_holm)
                final = c.verdict_text()
            body.append([Cell(row), Cell(g.column), Cell(str(g.metric_name or "")),
                         Cell(str(s.n)), Cell(mean, best=g is best), Cell(ci), Cell(versus),
                         Cell(adjusted), Cell(final)])
    title = (f"Final test metric over seeds: mean {PM} std, the {LEVEL:.0%} confidence interval "
             f"of the mean (Student's t), and Welch's two-sided t-test against the best mean "
             f"of the row; the verdict counts a difference only at p < {ALPHA} after Holm's "
             "correction over the table's comparisons, and equivalence only by the two "
             "one-sided tests (TOST) with a margin given in advance (samt-report --margin)")
    return Table("significance", title, header, body)
