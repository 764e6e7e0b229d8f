"""Tuneability figures of samt-report: the sensitivity curve against decades from the chosen step
size, and the expected result of tuning with k random grid points (exact, checked by brute
force)."""

from __future__ import annotations

import itertools
import math

import pytest
from test_report import ADAM, SGD, write_run

from samt.report.aggregate import build_groups, lr_sweeps
from samt.report.cli import main
from samt.report.collect import load_runs
from samt.report.sensitivity import chosen, expected_best, failed_values, sweep_points


def _brute_force(val, test, k, higher):
    picks = []
    for subset in itertools.combinations(range(len(val)), k):
        best = max(subset, key=lambda i: val[i] if higher else -val[i])
        picks.append((val[best], test[best]))
    return (sum(p[0] for p in picks) / len(picks), sum(p[1] for p in picks) / len(picks))


@pytest.mark.parametrize("higher", [True, False])
def test_expected_best_of_k_random_grid_points_is_exact(higher):
    val = [0.3, 0.9, 0.5, 0.7, 0.1]
    test = [1.0, 2.0, 3.0, 4.0, 5.0]
    for k in range(1, 6):
        assert expected_best(val, test, k, higher) == pytest.approx(
            _brute_force(val, test, k, higher))
    assert expected_best(val, test, 1, higher) == pytest.approx((0.5, 3.0))  # the grid's mean
    assert expected_best(val, test, 5, higher)[1] == (2.0 if higher else 5.0)  # the choice
    with pytest.raises(ValueError, match="k=6"):
        expected_best(val, test, 6, higher)


def _sweep_runs(tmp_path):
    """Adam at three rates (two seeds each) and SGD at two rates, with validation scores."""
    for lr, vals in ((1e-4, (90.0, 90.4)), (1e-3, (95.0, 95.2)), (1e-2, (93.0, 92.0))):
        for seed, v in enumerate(vals):
            write_run(tmp_path / f"adam_{lr}_{seed}", dataset="mnist", seed=seed,
                      optimizer={**ADAM, "lr": lr}, test=[v - 0.5], val=[v])
    for lr, v in ((0.01, 91.0), (0.1, 94.0)):
        write_run(tmp_path / f"sgd_{lr}", dataset="mnist", seed=0, optimizer={**SGD, "lr": lr},
                  test=[v + 0.1], val=[v])


def test_sweep_points_choose_on_the_mean_validation_score(tmp_path):
    _sweep_runs(tmp_path)
    runs, _ = load_runs([tmp_path])
    sweeps = {s.name: s for s in lr_sweeps(build_groups(runs))}
    adam = sweep_points(sweeps["adam"])
    assert [p.value for p in adam] == [1e-4, 1e-3, 1e-2]
    assert [p.n for p in adam] == [2, 2, 2]
    assert adam[1].val[0] == pytest.approx(95.1) and adam[1].test[0] == pytest.approx(94.6)
    assert adam[1].val[1] < 95.1 < adam[1].val[2]  # a 95 % band from two seeds
    assert chosen(adam, higher_is_better=True) == 1
    sgd = sweep_points(sweeps["sgd"])
    assert math.isnan(sgd[0].val[1])  # one run: no band
    assert chosen(sgd, higher_is_better=True) == 1


def test_samt_report_writes_the_sensitivity_and_tuning_budget_figures(tmp_path):
    _sweep_runs(tmp_path / "runs")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"),
                 "--formats", "md"]) == 0
    plots = {p.name for p in (tmp_path / "report" / "plots").iterdir()}
    assert {"sensitivity_mnist_mlp.png", "tuning_budget_mnist_mlp.png",
            "sensitivity_mnist_mlp.pdf"} <= plots
    assert "sensitivity_mnist_mlp.png" in (tmp_path / "report" / "report.md").read_text()


def test_a_samt_grid_over_eta_max_with_eta0_tied_is_one_sweep(tmp_path):
    from test_report import SAMT_E

    for eta_max, v in ((0.1, 90.0), (0.316, 92.0), (1.0, 91.0)):
        write_run(tmp_path / f"samt_{eta_max}", dataset="mnist", seed=100, test=[v], val=[v],
                  optimizer={**SAMT_E, "eta_max": eta_max, "eta0": 0.3 * eta_max})
    runs, _ = load_runs([tmp_path])
    (sweep,) = lr_sweeps(build_groups(runs))
    assert sweep.lr_key == "optimizer.eta_max" and sweep.name == "samt_e"
    assert [value for value, _ in sweep.points] == [0.1, 0.316, 1.0]
    assert chosen(sweep_points(sweep), higher_is_better=True) == 1


def test_a_value_whose_every_run_failed_is_marked_not_dropped(tmp_path):
    _sweep_runs(tmp_path / "runs")
    for seed in (0, 1):  # Adam at 0.1: both runs diverged (no validation metric)
        write_run(tmp_path / "runs" / f"adam_0.1_{seed}", dataset="mnist", seed=seed,
                  optimizer={**ADAM, "lr": 0.1}, test=[10.0], val=[float("nan")],
                  status="diverged")
    runs, _ = load_runs([tmp_path / "runs"])
    sweeps = {s.name: s for s in lr_sweeps(build_groups(runs))}
    assert [p.value for p in sweep_points(sweeps["adam"])] == [1e-4, 1e-3, 1e-2]
    assert failed_values(sweeps["adam"]) == [0.1] and failed_values(sweeps["sgd"]) == []
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"),
                 "--formats", "md", "--only", "sensitivity"]) == 0
    assert (tmp_path / "report" / "plots" / "sensitivity_mnist_mlp.png").is_file()
