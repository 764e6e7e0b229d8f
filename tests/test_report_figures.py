"""samt-report's figure files: one per row and kind, named after the whole row (a row name may
hold dots, e.g. ``dropout=0.2``), and the count it prints is the count on disk."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from test_report import SGD, write_run

from samt.report.cli import main
from samt.report.plots import unique_slugs


def test_rows_that_differ_after_a_dot_get_their_own_figures(tmp_path: Path):
    for dropout in (0.1, 0.2):
        write_run(tmp_path / "runs" / f"d{dropout}", dataset="digits", optimizer=SGD, seed=0,
                  test=[80.0, 90.0], bookkeeping={"model.dropout": dropout})
    out = tmp_path / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == [f"curves_digits_mlp_dropout={d}.{ext}" for d in (0.1, 0.2)
                     for ext in ("pdf", "png")]
    assert f"plots (png, pdf): {len(names)} files" in printed.getvalue()
    index = (out / "report.md").read_text()
    assert "(plots/curves_digits_mlp_dropout=0.1.png)" in index
    assert "(plots/curves_digits_mlp_dropout=0.2.png)" in index


def test_rows_with_the_same_file_name_part_are_told_apart():
    assert unique_slugs(["a / mlp x=[8]", "a / mlp x=(8)", "b"]) == {
        "a / mlp x=[8]": "a_mlp_x=_8", "a / mlp x=(8)": "a_mlp_x=_8_2", "b": "b"}


def test_committed_tables_name_no_path_of_the_machine(tmp_path: Path, monkeypatch):
    """all_runs.csv: run folders (and path values) inside the current folder are relative to
    it; where the data were (data.root) is left out."""
    import csv

    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "runs" / "a", dataset="digits", optimizer=SGD, seed=0,
              test=[80.0, 90.0])
    assert main([str(tmp_path / "runs"), "--out", "report"]) == 0
    with open(tmp_path / "report" / "all_runs.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["path"] == "runs/a"
    assert "data.root" not in row and "data.download" in row
    assert str(tmp_path) not in (tmp_path / "report" / "aggregates.csv").read_text()


def test_a_path_outside_the_current_folder_is_kept(tmp_path: Path):
    from samt.report.aggregate import shown_path

    assert shown_path(str(tmp_path / "runs" / "a"), base=tmp_path) == "runs/a"
    assert shown_path("/elsewhere/runs", base=tmp_path) == "/elsewhere/runs"
    assert shown_path(str(tmp_path), base=tmp_path) == str(tmp_path)
    assert shown_path(0.5, base=tmp_path) == 0.5 and shown_path("adam") == "adam"
