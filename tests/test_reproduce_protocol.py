"""samt-reproduce's protocol (docs/tuning.md) on fake grid run folders with known
validation and test numbers: the choice reads the validation metric only, edge extension, fair
grids, fresh seeds, UCI splits. No training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_presets import reproduce

SGD_GRID = [0.01, 0.0316, 0.1, 0.316, 1.0]
SAMT_GRID = [0.0316, 0.1, 0.316, 1.0, 3.16]


def protocol(**extra) -> dict:
    return {"datasets": ["digits"], "seeds": [0, 1, 2, 3, 4], "grid_seed": 100,
            "optimizers": {"sgd": {"key": "lr", "grid": SGD_GRID},
                           "samt_e": {"key": "eta_max", "grid": SAMT_GRID,
                                      "tied": {"eta0": 0.3}}}, **extra}


def write_summary(folder: Path, val: float | None, test: float | None,
                  status: str = "completed") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"status": status, "higher_is_better": True, "val_size": 144,
               "final": {"train_metric": 99.0, "val_metric": val, "test_metric": test},
               "best_test_metric": test}
    (folder / "summary.json").write_text(json.dumps(summary))


def value_of(job) -> float:
    """The grid value a job runs (its ``optimizer.<key>=`` argument, key lr or eta_max)."""
    arg = next(a for a in job.args if a.startswith(("optimizer.lr=", "optimizer.eta_max=")))
    return float(arg.split("=", 1)[1])


def fake_runner(val, test, log: list | None = None):
    """``run_jobs`` for ``tune``: writes each job's summary with ``val(value)``, ``test(value)``
    (a folder that already holds one is left alone, as run_all does)."""
    def run(jobs):
        for job in jobs:
            if log is not None:
                log.append(job.folder.name)
            if not (job.folder / "summary.json").is_file():
                write_summary(job.folder, val(value_of(job)), test(value_of(job)))
    return run


def peak(at: float):
    """A validation score that is best at ``at`` and falls off in log distance."""
    return lambda v: 95.0 - (math.log10(v) - math.log10(at)) ** 2


def chosen(tunings) -> dict[str, float]:
    return {t.variant.name: t.chosen for t in tunings}


def test_changing_a_grid_runs_test_metric_cannot_change_the_choice(tmp_path):
    p = protocol()
    val = peak(0.1)  # sgd best at 0.1, samt_e best at 0.1 (interior in both grids)
    first = reproduce.tune("mnist_mlp", p, tmp_path, [], fake_runner(val, lambda v: 90.0))
    assert chosen(first) == {"sgd": 0.1, "samt_e": 0.1}
    # Now give the runs test metrics that favour every other value, then none at all.
    for test in ({"mode": "inverse"}, {"mode": "none"}, {"mode": "best_at_edge"}):
        for folder in (tmp_path / "grid").iterdir():
            summary = json.loads((folder / "summary.json").read_text())
            v = float(folder.name.split("_lr" if "_lr" in folder.name else "_eta_max")[1]
                      .split("_s")[0])
            summary["final"]["test_metric"] = {"inverse": 100.0 - val(v), "none": None,
                                               "best_at_edge": 100.0 * v}[test["mode"]]
            summary["best_test_metric"] = summary["final"]["test_metric"]
            (folder / "summary.json").write_text(json.dumps(summary))
        again = reproduce.tune("mnist_mlp", p, tmp_path, [], fake_runner(val, lambda v: 0.0))
        assert chosen(again) == chosen(first), test
        assert [t.scores for t in again] == [t.scores for t in first]


def test_validation_metric_decides_and_failed_runs_are_left_out(tmp_path):
    p = protocol()
    runner = fake_runner(peak(0.316), lambda v: 100.0 - v)  # test favours the smallest value
    grid = tmp_path / "grid"
    # The value with the best validation score failed: the next best is chosen.
    write_summary(grid / "digits_sgd_lr0.316_s100", None, None, status="diverged")
    (t_sgd, t_samt) = reproduce.tune("mnist_mlp", p, tmp_path, [], runner)
    assert t_sgd.scores[0.316] is None
    assert t_sgd.chosen == 0.1  # 0.1 is a little closer to 0.316 than 1.0 is (log scale)
    assert t_samt.chosen == 0.316 and not t_samt.extensions


def test_a_choice_at_an_edge_extends_the_grid_until_interior(tmp_path):
    p = protocol()
    names: list[str] = []
    tunings = reproduce.tune("mnist_mlp", p, tmp_path, [],
                             fake_runner(peak(3.16), lambda v: 0.0, names))
    sgd, samt = tunings
    assert sgd.extensions == [3.16, 10.0] and sgd.chosen == 3.16 and sgd.at_edge is None
    assert sgd.grid == [*SGD_GRID, 3.16, 10.0]
    assert samt.extensions == [10.0] and samt.chosen == 3.16  # 3.16 was its upper edge
    assert "digits_sgd_lr10.0_s100" in names and names.count("digits_sgd_lr3.16_s100") == 1
    lines = "\n".join(reproduce.tuning_lines(p, tunings, 20))
    assert "added 3.16, 10" in lines and "| 7 x 20 |" in lines and "| 6 x 20 |" in lines
    assert "eta0 = 0.3 x eta_max" in lines


def test_edge_extension_stops_at_the_cap_and_says_so(tmp_path):
    p = protocol(max_extensions=2)
    sgd, _ = reproduce.tune("mnist_mlp", p, tmp_path, [], fake_runner(peak(1e-6), lambda v: 0))
    assert sgd.extensions == [0.00316, 0.001] and sgd.chosen == 0.001
    assert sgd.at_edge == "low"
    lines = "\n".join(reproduce.tuning_lines(p, [sgd], 20))
    assert "still at the low edge after the cap (2)" in lines


def test_extension_values_stay_on_the_half_decade_ladder():
    assert reproduce.extend(SGD_GRID, "high") == 3.16
    assert reproduce.extend(SGD_GRID, "low") == 0.00316
    assert reproduce.extend(SAMT_GRID, "high") == 10.0
    assert reproduce.extend([0.1, 0.2, 0.4], "high") == 0.8  # other ratios: kept, 3 digits


def test_tuning_record_shows_validation_scores_only(tmp_path):
    p = protocol()
    tunings = reproduce.tune("mnist_mlp", p, tmp_path, [],
                             fake_runner(peak(0.1), lambda v: 12.345))
    text = "\n".join(reproduce.tuning_lines(p, tunings, 20))
    assert "validation metric per value (seed 100)" in text and "12.34" not in text
    assert "0.1: 95" in text


def test_protocol_refuses_unfair_or_test_tuned_setups(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    with pytest.raises(SystemExit, match="data.val_fraction"):
        reproduce.load_protocol("mnist_mlp", ["data.val_fraction=0"])
    unfair = protocol()
    unfair["optimizers"]["sgd"]["grid"] = SGD_GRID[:3]
    with pytest.raises(SystemExit, match="same size"):
        reproduce.check_protocol("x", unfair, 0.1)
    with pytest.raises(SystemExit, match="must not reuse grid_seed"):
        reproduce.check_protocol("x", protocol(seeds=[0, 100]), 0.1)
    bad = protocol()
    bad["optimizers"]["sgd"]["grid"] = [0.1, 0.01, 1.0, 3.0, 10.0]
    with pytest.raises(SystemExit, match="increasing"):
        reproduce.check_protocol("x", bad, 0.1)


def test_presets_tune_five_values_and_run_five_fresh_replicates(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    for name in ("mnist_mlp", "regression", "cifar_cnn"):
        p = reproduce.load_protocol(name, [])
        tuned = [v for v in reproduce.variants(p) if len(v.grid) > 1]
        assert tuned and {len(v.grid) for v in tuned} == {5}, name
        for v in tuned:
            ratios = [b / a for a, b in zip(v.grid, v.grid[1:], strict=False)]
            assert all(3.1 < r < 3.2 for r in ratios), (name, v.name, ratios)
            if v.optimizer.startswith("samt"):
                assert v.key == "eta_max" and v.tied == {"eta0": 0.3}
        replicates = len(p["seeds"]) * len(p.get("splits") or [None])
        assert replicates >= 5 and p["grid_seed"] not in p["seeds"], name


def test_uci_finals_run_over_splits_and_the_grid_on_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    p = reproduce.load_protocol("regression", [])
    assert p["splits"] == [0, 1, 2, 3, 4]
    grid = reproduce.grid_jobs("regression", p, tmp_path, [])
    assert all("dataset.split=0" in j.args and "_split0_s100" in j.folder.name for j in grid)
    finals = reproduce.final_jobs("regression", p, tmp_path, [],
                                  {("uci_boston", "adam"): 0.001})
    assert [j.folder.name for j in finals] == [
        f"uci_boston_adam_lr0.001_split{k}_s0" for k in range(5)]
    assert [a for j in finals for a in j.args if a.startswith("dataset.split=")] == [
        f"dataset.split={k}" for k in range(5)]


def test_seed_mean_runs_every_value_on_every_seed_and_chooses_on_the_mean(tmp_path):
    p = protocol(choice="seed_mean", seeds=[0, 1, 2])
    reproduce.check_protocol("x", p, 0.1)  # grid_seed is not used: no clash to refuse

    def noisy(job) -> float:
        """Seed 0 alone favours 1.0; the mean over the 3 seeds favours 0.1."""
        seed = int(job.folder.name.rsplit("_s", 1)[1])
        value = value_of(job)
        return {0: {1.0: 96.5}}.get(seed, {}).get(value, peak(0.1)(value) + seed * 0.01)

    def run(jobs):
        for job in jobs:
            write_summary(job.folder, noisy(job), 50.0)
    sgd, _ = reproduce.tune("mnist_mlp", p, tmp_path, [], run)
    assert sgd.chosen == 0.1 and sgd.details[0.1].runs == 3 and sgd.details[0.1].scored == 3
    assert math.isclose(sgd.scores[0.1], 95.01)  # (95 + 95.01 + 95.02) / 3
    assert math.isclose(sgd.details[0.1].se, 0.01 / math.sqrt(3))
    assert not any("_s100" in f.name for f in (tmp_path / "grid").iterdir())
    finals = reproduce.final_jobs("mnist_mlp", p, tmp_path, [], {("digits", "sgd"): 0.1})
    assert [j.folder for j in finals] == [
        tmp_path / "grid" / f"digits_sgd_lr0.1_s{k}" for k in range(3)]
    lines = "\n".join(reproduce.tuning_lines(p, [sgd], 20))
    assert "mean ± standard error over seeds [0, 1, 2]" in lines
    assert "0.1: 95.01 ± 0.0058" in lines and "| 15 x 20 |" in lines


def test_seed_mean_a_value_with_one_failed_run_does_not_score(tmp_path):
    p = protocol(choice="seed_mean", seeds=[0, 1])
    write_summary(tmp_path / "grid" / "digits_sgd_lr0.1_s1", None, None, status="diverged")
    sgd, _ = reproduce.tune("mnist_mlp", p, tmp_path, [],
                            fake_runner(peak(0.1), lambda v: 0.0))
    assert sgd.scores[0.1] is None and sgd.chosen in (0.0316, 0.316)
    assert sgd.details[0.1].cell() == "failed (1 of 2 runs)"


def test_seed_mean_on_uci_splits_runs_every_split_and_refuses_an_unknown_choice(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    p = reproduce.load_protocol("regression", ["+tuning.choice=seed_mean"])
    (v,) = [v for v in reproduce.variants(p) if v.name == "adam"]
    runs = reproduce.grid_runs("regression", p, tmp_path, [], "uci_energy", v, 0.001)
    assert [j.folder.name for j in runs] == [
        f"uci_energy_adam_lr0.001_split{k}_s0" for k in range(5)]
    with pytest.raises(SystemExit, match="tuning.choice: expected one of one_seed, seed_mean"):
        reproduce.load_protocol("regression", ["+tuning.choice=best"])
