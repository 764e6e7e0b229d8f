"""``samt-reproduce`` (``samt.tune.reproduce``) as an installed command: it runs from any folder,
takes ``--runs``/``--out`` from the current folder, checks the ``tuning`` block against its
schema (``samt.schema.TuningConfig``), treats an unreadable summary as unfinished, and ends on
Ctrl-C with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from samt.tune import reproduce

BIN = Path(sys.executable).parent


def test_samt_reproduce_help_from_another_folder(tmp_path: Path):
    out = subprocess.run([str(BIN / "samt-reproduce"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: samt-reproduce") and "--dry-run" in out.stdout


def test_runs_and_results_are_taken_from_the_current_folder(tmp_path: Path, monkeypatch,
                                                             capsys):
    """A dry run from a fresh folder plans runs/<experiment>/... there, with relative paths in
    the commands it would record, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    reproduce.main(["smoke", "--dry-run"])
    text = capsys.readouterr().out
    assert "hydra.sweeper.jobs=runs/smoke/stages/grid_0.yaml" in text
    assert "hydra.sweep.dir=runs/smoke/grid" in text and str(tmp_path) not in text
    assert list(tmp_path.iterdir()) == []


def _tuning(**changes) -> dict:
    base = {"datasets": ["digits"], "seeds": [0, 1], "grid_seed": 100,
            "optimizers": {"sgd": {"key": "lr", "grid": [0.01, 0.1]}}}
    return {**base, **changes}


@pytest.mark.parametrize("tuning, says", [
    (_tuning(seed=[0]), "unknown key 'seed' (did you mean 'seeds'?)"),
    ({k: v for k, v in _tuning().items() if k != "grid_seed"}, "tuning.grid_seed is missing"),
    (_tuning(datasets="digits"), "tuning.datasets: expected a non-empty list of dataset names"),
    (_tuning(max_extensions=-1), "tuning.max_extensions: expected an integer >= 0"),
    (_tuning(optimizers={"sgd": {"key": "lr", "grids": [0.1]}}),
     "tuning.optimizers.sgd: unknown key 'grids' (did you mean 'grid'?)"),
    (_tuning(optimizers={"sgd": {"grid": [0.1]}}), "tuning.optimizers.sgd.key is missing"),
    (_tuning(margins={"mnist": 0.1}), "tuning.margins: expected a mapping from datasets of the "
                                      "table to positive numbers"),
    (_tuning(margins={"digits": 0}), "tuning.margins: expected a mapping"),
])
def test_the_tuning_block_is_checked_against_its_schema(tuning, says):
    with pytest.raises(SystemExit) as exc:
        reproduce.check_tuning_keys("x", tuning)
    assert says in str(exc.value)


def test_the_schema_default_of_max_extensions_is_the_protocols():
    reproduce.check_tuning_keys("x", _tuning())  # a valid block passes
    reproduce.check_tuning_keys("x", _tuning(margins={"digits": 0.5}))
    assert reproduce.MAX_EXTENSIONS == 3


def test_an_unreadable_summary_counts_as_not_finished(tmp_path: Path):
    (tmp_path / "summary.json").write_text("")
    assert not reproduce.finished(tmp_path) and not reproduce.completed(tmp_path)
    assert reproduce.grid_score(tmp_path) == (None, None)
    (tmp_path / "summary.json").write_text('{"status": "completed"}')
    assert reproduce.finished(tmp_path) and reproduce.completed(tmp_path)


def test_ctrl_c_ends_with_one_line(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "reproduce", interrupted)
    with pytest.raises(SystemExit) as exc:
        reproduce.main(["smoke"])
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samt-reproduce: interrupted")
