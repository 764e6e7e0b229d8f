"""The self-tuning track of samt-report: one step size per optimizer for a family of workloads,
chosen leave-one-workload-out on normalized validation scores and scored on test; checked
against numbers worked by hand (see the comments), and the test metric never decides."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from test_report import SAMT_E, SGD, write_run

from samt.report.aggregate import build_groups, lr_sweeps
from samt.report.cli import main
from samt.report.collect import load_runs
from samt.report.self_tuning import (
    GridPoint,
    normalized_scores,
    profile_errors,
    self_tuning,
)
from samt.report.stats import performance_profile

WORKLOADS = ("mnist", "fashion_mnist", "kmnist")
# Mean validation accuracy per grid value on mnist, fashion_mnist, kmnist. Errors (100 - acc)
# and scores (best error / error over the values common to all three workloads):
# SGD   mnist  4, 2, 3    -> 0.5, 1, 2/3       (lr=3 only on mnist: an edge extension, 99)
#       fashion 12, 14, 16 -> 1, 6/7, 3/4
#       kmnist 10, 5, 20  -> 0.5, 1, 1/4
#   held out mnist: others' means 0.75, 13/14, 0.5 -> 0.1; fashion: 0.5, 1, 11/24 -> 0.1;
#   kmnist: 0.75, 13/14, 17/24 -> 0.1.
# SAMT  mnist  10, 3, 1.5 -> 0.15, 0.5, 1
#       fashion 11, 12, 20 -> 1, 11/12, 0.55
#       kmnist 6, 5, 9    -> 5/6, 1, 5/9
#   held out mnist: 11/12, 23/24, 0.5528 -> 0.316; fashion: 0.4917, 0.75, 0.7778 -> 1.0;
#   kmnist: 0.575, 0.7083, 0.775 -> 1.0.
GRID = {
    ("sgd", "lr"): {0.01: (96.0, 88.0, 90.0), 0.1: (98.0, 86.0, 95.0), 1.0: (97.0, 84.0, 80.0),
                    3.0: (99.0, None, None)},
    ("samt_e", "eta_max"): {0.1: (90.0, 89.0, 94.0), 0.316: (97.0, 88.0, 95.0),
                            1.0: (98.5, 80.0, 91.0)},
}
EXPECTED = {  # (optimizer, workload): (self-tuned value, workload-tuned value)
    ("sgd", "mnist / mlp"): (0.1, 3.0), ("sgd", "fashion_mnist / mlp"): (0.1, 0.01),
    ("sgd", "kmnist / mlp"): (0.1, 0.1),
    ("samt_e", "mnist / mlp"): (0.316, 1.0), ("samt_e", "fashion_mnist / mlp"): (1.0, 0.1),
    ("samt_e", "kmnist / mlp"): (1.0, 0.316)}


def make_grid(root: Path, test=lambda val, seed: val - 1.0 + (0.125 if seed else -0.125)):
    """Two seeds per grid value: validation ``mean -+ 0.25``, test ``test(val mean, seed)``
    (default: the validation mean - 1, -+ 0.125)."""
    for (label, key), grid in GRID.items():
        base = SGD if label == "sgd" else SAMT_E
        for value, vals in grid.items():
            knobs = {key: value} if key == "lr" else {key: value, "eta0": 0.3 * value}
            for dataset, val in zip(WORKLOADS, vals, strict=True):
                if val is None:
                    continue
                for seed in (0, 1):
                    write_run(root / f"{dataset}_{label}_{value}_s{seed}", dataset=dataset,
                              optimizer={**base, **knobs}, seed=seed,
                              val=[val + (0.25 if seed else -0.25)], test=[test(val, seed)])
    return root


def table_of(root: Path) -> pd.DataFrame:
    runs, _ = load_runs([root])
    table, notes = self_tuning(lr_sweeps(build_groups(runs)))
    assert notes == []
    return table


def choices(table: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    return {(r["optimizer"], r["row"]): (r["lowo_value"], r["tuned_value"])
            for _, r in table.iterrows()}


def test_leave_one_workload_out_choices_and_scores_by_hand(tmp_path):
    table = table_of(make_grid(tmp_path))
    assert choices(table) == EXPECTED
    rec = {(r["optimizer"], r["row"]): r for _, r in table.iterrows()}
    assert set(table["key"]) == {"optimizer.lr", "optimizer.eta_max"}
    assert set(table["values"]) == {3}  # lr=3 (mnist only) takes no part
    # self-tuned test mean (= its validation mean - 1), std of -+0.125, and the loss
    for (opt, row), lowo_test, tuned_test, score in [
            (("sgd", "mnist / mlp"), 97.0, 98.0, 13 / 14),
            (("sgd", "fashion_mnist / mlp"), 85.0, 87.0, 1.0),
            (("sgd", "kmnist / mlp"), 94.0, 94.0, 13 / 14),
            (("samt_e", "mnist / mlp"), 96.0, 97.5, 23 / 24),
            (("samt_e", "fashion_mnist / mlp"), 79.0, 88.0, (5 / 9 + 1) / 2),
            (("samt_e", "kmnist / mlp"), 90.0, 94.0, 0.775)]:
        r = rec[(opt, row)]
        assert r["lowo_test_mean"] == pytest.approx(lowo_test)
        assert r["lowo_test_std"] == pytest.approx(math.sqrt(2 * 0.125**2))
        assert r["lowo_n"] == 2
        assert r["tuned_test_mean"] == pytest.approx(tuned_test)
        assert r["loss"] == pytest.approx(tuned_test - lowo_test)
        assert r["lowo_score"] == pytest.approx(score)
        assert r["lowo_error"] == pytest.approx(100 - lowo_test)


def test_verdicts_against_the_best_self_tuned_optimizer_with_holm(tmp_path):
    # Self-tuned test values (2 seeds, mean -+ 0.125): SGD beats SAMT-E by 1 (mnist), 6
    # (fashion) and 4 (kmnist) points. Welch with two values a side (std 0.125 * sqrt(2)):
    # se = 0.125 * sqrt(2), df = 2, and the two-sided p of Student's t with 2 degrees of
    # freedom is 1 - |t| / sqrt(2 + t^2).
    table = table_of(make_grid(tmp_path))
    se = 0.125 * math.sqrt(2)
    p_by_hand = {row: 1 - (d / se) / math.sqrt(2 + (d / se) ** 2)
                 for row, d in (("mnist / mlp", 1.0), ("fashion_mnist / mlp", 6.0),
                                ("kmnist / mlp", 4.0))}
    samt = table[table["optimizer"] == "samt_e"].set_index("row")
    sgd = table[table["optimizer"] == "sgd"].set_index("row")
    assert set(sgd["verdict"]) == {"best mean"} and set(samt["best_optimizer"]) == {"sgd"}
    for row, p in p_by_hand.items():
        assert samt.loc[row, "p"] == pytest.approx(p, rel=1e-9)
    ranked = sorted(p_by_hand.values())   # Holm over the table's 3 comparisons
    holm = [3 * ranked[0], max(3 * ranked[0], 2 * ranked[1]), max(2 * ranked[1], ranked[2])]
    assert sorted(samt["p_holm"]) == pytest.approx(holm, rel=1e-9)
    assert set(samt["verdict"]) == {"worse"}


def test_equal_self_tuned_results_are_equivalent_only_with_a_margin(tmp_path):
    root = make_grid(tmp_path, test=lambda val, seed: 90.0 + (0.125 if seed else -0.125))
    runs, _ = load_runs([root])
    sweeps = lr_sweeps(build_groups(runs))
    plain, _ = self_tuning(sweeps)
    assert set(plain[plain["verdict"] != "best mean"]["verdict"]) == {"inconclusive"}
    margins = {w: 2.0 for w in WORKLOADS}   # TOST: t = 2 / se on 2 df, Holm over 3
    table, _ = self_tuning(sweeps, margins)
    others = table[table["verdict"] != "best mean"]
    assert len(others) == 3
    assert all(v.startswith("equivalent (margin 2, TOST p=") for v in others["verdict"])
    t = 2 / (0.125 * math.sqrt(2))
    assert max(others["p_tost_holm"]) == pytest.approx(
        3 * (1 - t / math.sqrt(2 + t * t)) / 2, rel=1e-9)


def test_the_test_metric_never_influences_a_choice(tmp_path):
    upside_down = table_of(make_grid(tmp_path, test=lambda val, seed: 200.0 - val + seed))
    assert choices(upside_down) == EXPECTED


def test_profile_of_the_self_tuned_test_errors(tmp_path):
    costs, dropped = profile_errors(table_of(make_grid(tmp_path)))
    assert dropped == []
    assert costs["sgd"] == pytest.approx({"mnist / mlp": 3.0, "fashion_mnist / mlp": 15.0,
                                          "kmnist / mlp": 6.0})
    assert costs["samt_e"] == pytest.approx({"mnist / mlp": 4.0, "fashion_mnist / mlp": 21.0,
                                             "kmnist / mlp": 10.0})
    # SAMT's ratios: 4/3, 1.4, 5/3
    profile = performance_profile(costs, [1.0, 1.35, 1.5, 2.0])
    assert profile["sgd"] == [1.0, 1.0, 1.0, 1.0]
    assert profile["samt_e"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_a_value_without_a_validation_score_scores_zero():
    points = {"0.1": GridPoint(0.1, 90.0, []), "1": GridPoint(1.0, math.nan, []),
              "10": GridPoint(10.0, 80.0, [])}
    assert normalized_scores(points, ["0.1", "1", "10"], True) == pytest.approx(
        {"0.1": 1.0, "1": 0.0, "10": 0.5})
    rmse = {"a": GridPoint(1.0, 2.0, []), "b": GridPoint(2.0, 4.0, [])}
    assert normalized_scores(rmse, ["a", "b"], False) == {"a": 1.0, "b": 0.5}


def test_samt_report_self_tuning_from_folders_and_from_all_runs_csv(tmp_path):
    make_grid(tmp_path / "runs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "a"), "--self-tuning",
                     "--only", "all_runs", "--formats", "md,csv"]) == 0
        assert main([str(tmp_path / "a" / "all_runs.csv"), "--out", str(tmp_path / "b"),
                     "--only", "self_tuning", "--formats", "md,csv"]) == 0
    assert "self-tuning: 2 optimizer(s) on 3 workload(s)" in printed.getvalue()
    for out in (tmp_path / "a", tmp_path / "b"):
        assert (out / "self_tuning.md").is_file()
        assert (out / "plots" / "self_tuning_profile.png").is_file()
    assert ((tmp_path / "a" / "self_tuning_long.csv").read_text()
            == (tmp_path / "b" / "self_tuning_long.csv").read_text())
    shown = pd.read_csv(tmp_path / "b" / "self_tuning.csv")
    line = shown[(shown["optimizer"] == "samt_e") & (shown["dataset / model"] == "mnist / mlp")]
    assert line.iloc[0]["self-tuned value (leave-one-workload-out)"] == 0.316
    assert line.iloc[0]["its test mean ± std (n)"] == "96.00 ± 0.18 (2)"
