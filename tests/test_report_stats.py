"""Certainty over seeds: intervals, Welch's test, verdicts and performance profiles, checked
against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from samt.report.stats import (
    format_p,
    performance_profile,
    summarize,
    verdict,
    welch,
)


def test_confidence_interval_of_five_seeds():
    s = summarize([98.0, 98.2, 98.4, 98.6, 98.8])
    # mean 98.4, sd sqrt(0.1) = 0.316228, t(0.975, 4) = 2.776445 -> half width 0.392625
    assert s.mean == pytest.approx(98.4) and s.n == 5
    assert s.std == pytest.approx(math.sqrt(0.1))
    assert s.high - s.mean == pytest.approx(2.776445 * math.sqrt(0.1) / math.sqrt(5), rel=1e-6)
    assert s.mean - s.low == pytest.approx(s.high - s.mean)


def test_one_value_has_no_interval_and_non_finite_values_are_dropped():
    s = summarize([1.0, math.nan])
    assert s.mean == 1.0 and s.n == 1 and math.isnan(s.std) and math.isnan(s.low)
    assert summarize([]).n == 0


def test_welch_matches_the_textbook_formula():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    # var(a)=2.5, var(b)=14; se^2 = 2.5/5 + 14/6 = 2.833333; t = (3 - 7)/sqrt(se^2)
    se2 = 2.5 / 5 + 14 / 6
    df = se2**2 / ((2.5 / 5) ** 2 / 4 + (14 / 6) ** 2 / 5)
    test = welch(a, b)
    assert test.t == pytest.approx(-4 / math.sqrt(se2))
    assert test.df == pytest.approx(df)  # 6.97
    assert test.p == pytest.approx(0.04928, abs=1e-5)  # two-sided t(6.97) at |t| = 2.376


def test_verdicts_need_p_below_005_and_respect_the_direction():
    high, low = [98.5, 98.6, 98.7, 98.6, 98.5], [98.0, 98.1, 98.0, 98.2, 98.1]
    assert verdict(high, low, higher_is_better=True)[0] == "better"
    assert verdict(high, low, higher_is_better=False)[0] == "worse"  # e.g. RMSE
    assert verdict(low, high, higher_is_better=True)[0] == "worse"
    label, p = verdict([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], higher_is_better=True)
    assert label == "no significant difference" and p > 0.05
    assert verdict([1.0], [2.0, 3.0], True)[0] == "too few runs"
    assert verdict([1.0, 1.0], [1.0, 1.0], True) == ("no significant difference", 1.0)
    assert verdict([2.0, 2.0], [1.0, 1.0], True) == ("better", 0.0)


def test_p_values_are_printed_with_three_decimals():
    assert format_p(0.0321) == "p=0.032" and format_p(0.0004) == "p<0.001"
    assert format_p(math.nan) == "p=n/a"


def test_performance_profile_counts_workloads_within_a_factor_of_the_best():
    costs = {"sgd": {"mnist": 10.0, "fmnist": 40.0, "uci": math.inf},
             "samt": {"mnist": 20.0, "fmnist": 20.0, "uci": 5.0},
             "adam": {"mnist": 15.0}}
    prof = performance_profile(costs, taus=[1.0, 1.5, 2.0, 10.0])
    assert prof["sgd"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert prof["samt"] == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0])
    assert prof["adam"] == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])


# --- the significance table on fixture run folders ----------------------------------------------


def _sgd_and_adam_on_mnist(folder, sgd: list[float], adam: list[float]) -> None:
    """Run folders of SGD and Adam on MNIST, one per seed, with these final test metrics."""
    from test_report import ADAM, SGD, write_run

    for seed, (a, b) in enumerate(zip(sgd, adam, strict=True)):
        write_run(folder / f"sgd{seed}", dataset="mnist", optimizer=SGD, seed=seed, test=[a])
        write_run(folder / f"adam{seed}", dataset="mnist", optimizer=ADAM, seed=seed, test=[b])


def test_significance_table_on_fixture_runs(tmp_path):
    from test_report import ADAM, SGD, write_run

    from samt.report.aggregate import build_groups, rows_and_columns
    from samt.report.collect import load_runs
    from samt.report.significance import significance_table

    _sgd_and_adam_on_mnist(tmp_path, [98.5, 98.6, 98.7, 98.6, 98.5],
                           [98.0, 98.1, 98.0, 98.2, 98.1])
    # On a regression row lower is better; one seed each: too few runs for a test.
    write_run(tmp_path / "u_sgd", dataset="uci_boston", optimizer=SGD, seed=0, test=[3.0])
    write_run(tmp_path / "u_adam", dataset="uci_boston", optimizer=ADAM, seed=0, test=[2.5])
    runs, problems = load_runs([tmp_path])
    assert not problems
    groups = build_groups(runs)
    rows, _ = rows_and_columns(groups)
    table = significance_table(groups, rows)
    lines = {(r[0].text, r[1].text): [c.text for c in r[2:]] for r in table.rows}
    mnist = [r for r in rows if r.startswith("mnist")][0]
    boston = [r for r in rows if r.startswith("uci_boston")][0]
    best = lines[(mnist, "sgd")]
    assert best[1] == "5" and best[2].startswith("98.58 ± 0.08") and best[4] == "best mean"
    assert lines[(mnist, "adam")][4].startswith("worse than sgd (p<0.001")
    assert lines[(boston, "adam")][4] == "best mean"  # RMSE 2.5 < 3.0
    assert lines[(boston, "sgd")][4] == "too few runs (p=n/a)"
    # The interval printed is the t interval of summarize().
    low, high = (float(v) for v in best[3].strip("[]").split(", "))
    assert low < 98.58 < high and high - low == pytest.approx(2 * 2.776445 * 0.083666 / 5**0.5,
                                                              abs=0.01)
    # Holm over the table's one testable comparison leaves p as it is; the verdict column
    assert lines[(mnist, "adam")][5] == lines[(mnist, "adam")][4].split("(")[1].rstrip(")")
    assert lines[(mnist, "adam")][6] == "worse"
    assert lines[(boston, "sgd")][6] == "too few runs" and lines[(mnist, "sgd")][6] == "best mean"
    assert "1 comparisons" in table.header[7]
    # with a margin of 1 point: 0.5 apart, significantly different and within the margin
    near = significance_table(groups, rows, {"mnist": 1.0})
    verdicts = {(r[0].text, r[1].text): r[8].text for r in near.rows}
    assert verdicts[(mnist, "adam")].startswith("worse (margin 1, TOST p")  # worse comes first


# --- Holm's correction and the equivalence test (TOST) ------------------------------------------


def test_holm_adjusts_a_family_step_down_and_keeps_nan():
    from samt.report.stats import holm

    adjusted = holm([0.01, 0.04, math.nan, 0.03, 0.5])
    # sorted: 0.01*4, 0.03*3, 0.04*2 (raised to the running max 0.09), 0.5*1 (max 0.5)
    assert adjusted[0] == pytest.approx(0.04)
    assert adjusted[3] == pytest.approx(0.09)
    assert adjusted[1] == pytest.approx(0.09)
    assert adjusted[4] == pytest.approx(0.5)
    assert math.isnan(adjusted[2])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_tost_matches_two_one_sided_welch_tests_from_scipy():
    from scipy import stats as st

    from samt.report.stats import tost

    a, b = [10.1, 10.3, 9.9, 10.2, 10.0], [10.0, 10.2, 10.1, 9.8, 10.05]
    margin = 0.4
    low = st.ttest_ind(a, [v - margin for v in b], equal_var=False, alternative="greater")
    high = st.ttest_ind(a, [v + margin for v in b], equal_var=False, alternative="less")
    assert tost(a, b, margin) == pytest.approx(max(low.pvalue, high.pvalue))
    assert tost(a, b, margin) < 0.05           # within 0.4 of each other: equivalent
    assert tost(a, [v + 1 for v in b], margin) > 0.5   # 1 apart: not within 0.4
    assert tost([1.0, 1.0], [1.2, 1.2], 0.3) == 0.0     # no spread, within the margin
    assert tost([1.0, 1.0], [1.5, 1.5], 0.3) == 1.0
    assert math.isnan(tost([1.0], [1.0, 2.0], 0.3))
    assert math.isnan(tost(a, b, 0.0))


def test_an_equivalence_margin_makes_a_close_pair_equivalent(tmp_path):
    from samt.report.aggregate import build_groups, rows_and_columns
    from samt.report.collect import load_runs
    from samt.report.significance import significance_table

    _sgd_and_adam_on_mnist(tmp_path, [98.50, 98.62, 98.55, 98.60, 98.48],
                           [98.52, 98.58, 98.50, 98.61, 98.49])
    groups = build_groups(load_runs([tmp_path])[0])
    rows, _ = rows_and_columns(groups)
    plain = significance_table(groups, rows)
    assert [r[8].text for r in plain.rows if r[1].text == "adam"] == ["inconclusive"]
    within = significance_table(groups, rows, {"mnist": 0.2})
    (verdict,) = [r[8].text for r in within.rows if r[1].text == "adam"]
    assert verdict.startswith("equivalent (margin 0.2, TOST p")


def test_decide_reads_holm_first_then_tost():
    from samt.report.stats import decide

    assert decide(2.0, 0.01, math.nan, higher_is_better=True) == "better"
    assert decide(2.0, 0.01, math.nan, higher_is_better=False) == "worse"
    assert decide(-1.0, 0.2, 0.01, higher_is_better=True) == "equivalent"
    assert decide(-1.0, 0.2, 0.2, higher_is_better=True) == "inconclusive"
    assert decide(-1.0, 0.2, math.nan, higher_is_better=True) == "inconclusive"
    assert decide(math.nan, math.nan, math.nan, higher_is_better=True) == "too few runs"


def test_compare_with_best_ranks_each_row_and_adjusts_over_the_family():
    from samt.report.significance import Margin, Sample, compare_with_best, row_bests

    samples = {
        "a": Sample("acc", [98.0, 98.2, 98.4], True, 0.1),
        "b": Sample("acc", [97.0, 97.1, 97.3], True, 0.1),
        "c": Sample("acc", [96.0], True, 0.1),            # one run: no test
        "d": Sample("acc", [], True, 0.1),                 # no run: not compared
        "x": Sample("rmse", [1.0, 1.1, 1.2], False, Margin(2.0, relative=True)),
        "y": Sample("rmse", [1.5, 1.6, 1.8], False, Margin(2.0, relative=True)),
    }
    assert row_bests(samples) == {"acc": "a", "rmse": "x"}  # higher accuracy, lower RMSE
    against = compare_with_best(samples)
    assert set(against) == {"b", "c", "y"}
    raw = {k: welch(samples[k].values, samples[against[k].best].values).p for k in ("b", "y")}
    low, high = sorted(raw.values())
    assert sorted(c.p_holm for k, c in against.items() if k != "c") == pytest.approx(
        [2 * low, max(2 * low, high)])  # Holm over the two tested comparisons
    assert against["b"].verdict == "worse" and against["y"].verdict == "worse"
    assert against["y"].margin == pytest.approx(0.022) and against["y"].margin_label == "2% = 0.022"
    assert against["c"].verdict_text() == "too few runs"  # no margin text without a test
    assert against["b"].verdict_text().startswith("worse (margin 0.1, TOST p=")
