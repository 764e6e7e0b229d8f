"""Figures a reader can read: whole-epoch ticks, a % sign on accuracy axes, validation curves
when the runs hold a split; progress bars only on a terminal (``progress=auto``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from matplotlib.ticker import MaxNLocator, PercentFormatter

from samt.train import plots as run_plots
from samt.train.runner import show_progress


def _rows(val: bool) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "train_metric": 80.0 + e,
             "test_metric": 79.0 + e, "val_loss": 1.1 / e if val else None,
             "val_metric": 78.0 + e if val else None} for e in (1, 2, 3)]


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the per-run plot functions render, instead of files."""
    caught: list = []
    monkeypatch.setattr(run_plots, "_save", lambda fig, path: caught.append(fig))
    return caught


@pytest.mark.parametrize("val", [True, False])
def test_a_runs_learning_curves(figures, val):
    run_plots.plot_learning_curves(_rows(val), "accuracy", Path("unused.png"), "t")
    (fig,) = figures
    ax_loss, ax_metric = fig.axes
    assert ax_metric.get_legend_handles_labels()[1] == (
        ["train", "val", "test"] if val else ["train", "test"])
    assert isinstance(ax_metric.yaxis.get_major_formatter(), PercentFormatter)
    for ax in (ax_loss, ax_metric):
        assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
        assert all(t == int(t) for t in ax.get_xticks() if 1 <= t <= 3)


def test_rmse_has_no_percent_sign(figures):
    run_plots.plot_learning_curves(_rows(False), "rmse", Path("unused.png"), "t")
    assert not isinstance(figures[0].axes[1].yaxis.get_major_formatter(), PercentFormatter)


def test_report_curves_draw_validation_dashed(tmp_path: Path, monkeypatch):
    from test_report import SGD, write_run

    from samt.report import plots as report_plots
    from samt.report.aggregate import build_groups
    from samt.report.collect import load_runs

    for seed in (0, 1):
        write_run(tmp_path / f"s{seed}", dataset="digits", optimizer=SGD, seed=seed,
                  test=[80.0, 90.0], val=[79.0, 88.0])
    runs, _ = load_runs([tmp_path])
    groups = build_groups(runs)
    caught: list = []
    monkeypatch.setattr(report_plots, "save_figure", lambda fig, path: caught.append(fig) or [])
    report_plots.plot_curves(groups[0].row, groups, report_plots.palette(["sgd"]), tmp_path)
    ax = caught[0].axes[0]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]
    assert list(ax.get_lines()[1].get_ydata()) == [79.0, 88.0]
    assert "validation" in ax.get_ylabel()
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)


def test_progress_bars_only_on_a_terminal(monkeypatch):
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty in (True, False):
        monkeypatch.setattr(sys, "stderr", Stream(tty))
        assert show_progress("auto") is tty
        assert show_progress(True) is True and show_progress(False) is False


def test_samt_report_writes_beside_the_runs_by_default(tmp_path: Path, monkeypatch):
    from test_report import SGD, write_run

    from samt.report.cli import main

    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "sweep" / "a", dataset="digits", optimizer=SGD, seed=0, test=[80.0])
    assert main(["sweep", "--formats", "md"]) == 0
    assert (tmp_path / "sweep" / "report" / "report.md").is_file()
    assert not (tmp_path / "report").exists()
