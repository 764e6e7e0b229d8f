"""samt-report on an all_runs.csv instead of run folders (re-analysis of committed results), the
--only selection, relative equivalence margins and the forest plot of SAMT minus the best peer."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as st
from test_report import ADAM, SAMT_E, SGD, make_runs, write_run

from samt.report.aggregate import build_groups, rows_and_columns
from samt.report.cli import main, parse_margins
from samt.report.collect import load_runs
from samt.report.forest import forest_table
from samt.report.significance import Margin
from samt.report.stats import difference_ci

MARGINS = ("--margin", "mnist=0.1", "--margin", "uci_boston=5%")
# every table and CSV, the forest plot and time to target; the other figures take seconds
TABLES = ("final_test_metric,best_test_metric,final_train_loss,epoch_time_s,param_updates,"
          "run_counts,significance,aggregates,all_runs,forest,time_to_target")


def report(paths: list[Path], out: Path, *extra: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*map(str, paths), "--out", str(out), "--formats", "md,csv", *extra]) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> tuple[Path, Path, str]:
    """A report from fixture run folders (failed, diverged, single-run and UCI split groups),
    then one from its own all_runs.csv."""
    root = make_runs(tmp_path_factory.mktemp("reanalysis"))
    folders = [root / d for d in ("sweep", "fashion", "uci", "grid")]
    first = report(folders, root / "from_folders", *MARGINS, "--only", TABLES)
    assert "no per-epoch curves" not in first
    printed = report([root / "from_folders" / "all_runs.csv"], root / "from_csv", *MARGINS,
                     "--only", f"{TABLES},curves")
    return root / "from_folders", root / "from_csv", printed


@pytest.mark.parametrize("name", ["significance.csv", "aggregates.csv", "all_runs.csv",
                                  "final_test_metric.csv", "run_counts.csv", "forest.csv",
                                  "final_train_loss.csv", "epoch_time_s.csv"])
def test_a_report_from_its_all_runs_csv_is_the_same(twice, name):
    folders, from_csv, _ = twice
    assert (from_csv / name).read_text() == (folders / name).read_text()


def test_outputs_that_need_curves_are_skipped_with_one_note(twice):
    folders, from_csv, printed = twice
    notes = [line for line in printed.splitlines() if "no per-epoch curves" in line]
    assert len(notes) == 1 and "curves" in notes[0] and "time_to_target" in notes[0]
    assert (folders / "time_to_target.md").is_file()
    assert not (from_csv / "time_to_target.md").exists()
    assert not list((from_csv / "plots").glob("curves_*"))
    assert (from_csv / "plots" / "forest.png").is_file()


def test_relative_margin_is_percent_of_the_rows_best_mean(twice):
    folders, _, _ = twice
    sig = pd.read_csv(folders / "significance.csv")
    uci = sig[sig["dataset / model"] == "uci_boston / regression_mlp"]
    # adam's splits 3.0, 3.2 -> 3.1; sgd's 2.8, 3.0 -> 2.9, the best mean
    verdict = uci[uci["optimizer"] == "adam"].iloc[0, -1]
    assert "margin 5% = 0.145" in verdict  # 5 % of sgd's 2.9


def test_only_writes_the_named_outputs_and_leaves_the_others(tmp_path):
    root = make_runs(tmp_path / "runs")
    out = tmp_path / "results"
    (out / "plots").mkdir(parents=True)
    kept = {out / "report.md": "committed index\n", out / "all_runs.csv": "x\n",
            out / "plots" / "curves_mnist_mlp.png": "png"}
    for path, text in kept.items():
        path.write_text(text)
    report([root / "sweep", root / "grid"], tmp_path / "first", "--only", "all_runs")
    report([tmp_path / "first" / "all_runs.csv"], out, "--only", "significance,forest",
           "--margin", "mnist=0.1")
    assert all(path.read_text() == text for path, text in kept.items())
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written - {p.relative_to(out).as_posix() for p in kept} == {
        "significance.md", "significance.csv", "forest.csv", "plots/forest.png",
        "plots/forest.pdf"}


def test_bad_only_and_margin_values_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--only", "significance,nonsense"])
    assert exc.value.code == 2 and "nonsense" in capsys.readouterr().err
    for bad in ("mnist=-1", "mnist=0%", "mnist=x%", "nan"):
        with pytest.raises(SystemExit):
            main([str(tmp_path), "--margin", bad])
    assert parse_margins(["mnist=0.1", "2%"]) == {"mnist": Margin(0.1), "*": Margin(2.0, True)}


def test_a_csv_that_is_not_a_run_table_is_refused(tmp_path, capsys):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert main([str(tmp_path / "other.csv"), "--out", str(tmp_path / "out")]) == 2
    assert "not an all_runs.csv" in capsys.readouterr().err


# --- forest plot -------------------------------------------------------------------------------

def _forest_runs(root: Path) -> None:
    """mnist: SAMT 98.0/98.2/98.4 against SGD 98.5/98.6/98.7 (the best peer) and Adam 97.0/97.5;
    uci_boston (RMSE): SAMT 2.0/2.2 against Adam 2.4/2.6 (best peer) and SGD 3.0/3.0."""
    plan = [("mnist", "mlp", SAMT_E, (98.0, 98.2, 98.4)), ("mnist", "mlp", SGD, (98.5, 98.6, 98.7)),
            ("mnist", "mlp", ADAM, (97.0, 97.5)),
            ("uci_boston", "regression_mlp", SAMT_E, (2.0, 2.2)),
            ("uci_boston", "regression_mlp", ADAM, (2.4, 2.6)),
            ("uci_boston", "regression_mlp", SGD, (3.0, 3.0))]
    for dataset, model, optimizer, finals in plan:
        for seed, final in enumerate(finals):
            write_run(root / f"{dataset}_{optimizer['label']}_{seed}", dataset=dataset,
                      model=model, optimizer=optimizer, seed=seed, test=[final])


def _welch_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """By hand: Welch-Satterthwaite interval of mean(a) - mean(b)."""
    va, vb = st.tvar(a) / len(a), st.tvar(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    diff = sum(a) / len(a) - sum(b) / len(b)
    half = st.t.ppf(0.975, df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def test_forest_table_numbers(tmp_path):
    _forest_runs(tmp_path)
    runs, _ = load_runs([tmp_path])
    groups = build_groups(runs)
    rows, _ = rows_and_columns(groups)
    table = forest_table(groups, rows, {"mnist": 0.1, "uci_boston": Margin(2.0, relative=True)})
    mnist, uci = (table[table["dataset"] == d].iloc[0] for d in ("mnist", "uci_boston"))
    assert (mnist["samt"], mnist["peer"], mnist["unit"]) == ("samt_e", "sgd", "points")
    diff, low, high = _welch_ci([98.0, 98.2, 98.4], [98.5, 98.6, 98.7])
    assert diff == pytest.approx(-0.4)
    assert [mnist["difference"], mnist["low"], mnist["high"]] == pytest.approx([diff, low, high])
    assert mnist["margin"] == 0.1 and (mnist["samt_n"], mnist["peer_n"]) == (3, 3)
    # RMSE: 100 (peer - SAMT) / peer = 100 (2.5 - 2.1) / 2.5 = 16 %; df = 2 here
    assert (uci["peer"], uci["unit"]) == ("adam", "% of peer")
    half = st.t.ppf(0.975, 2) * math.sqrt(0.02 / 2 + 0.02 / 2)
    assert [uci["difference"], uci["low"], uci["high"]] == pytest.approx(
        [16.0, 40 * (0.4 - half), 40 * (0.4 + half)])
    assert uci["margin"] == pytest.approx(40 * 0.02 * 2.1)  # 2 % of the best mean (SAMT 2.1)


def test_difference_ci_edge_cases():
    assert difference_ci([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5, 0.5)
    diff, low, high = difference_ci([1.0], [0.0, 1.0])
    assert diff == 0.5 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in difference_ci([], [1.0, 2.0]))


def test_forest_plot_is_written(tmp_path):
    _forest_runs(tmp_path / "runs")
    printed = report([tmp_path / "runs"], tmp_path / "out", "--only", "forest")
    assert (tmp_path / "out" / "plots" / "forest.png").stat().st_size > 0
    assert (tmp_path / "out" / "plots" / "forest.pdf").is_file()
    written = pd.read_csv(tmp_path / "out" / "forest.csv")
    assert list(written["dataset"]) == ["mnist", "uci_boston"]
    assert "forest plot" not in printed  # nothing to complain about
