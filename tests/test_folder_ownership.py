"""A run replaces only what a samt-run wrote: a user's own files in a run folder (a
``config.yaml``, a ``tensorboard/`` folder) are never overwritten or deleted, and a logger that
cannot start is a one-line user error that leaves a finished run as it was (``resume=false``
included). The CLI runs in-process (``run_cli``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from fixtures_data import snapshot
from helpers import digits_args, error_lines


def _users_folder(tmp_path: Path, config: bool = True) -> Path:
    """A folder of the user's own: ``tensorboard/ev`` and (``config``) ``config.yaml``."""
    folder = tmp_path / "P"
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "ev").write_text("x\n")
    if config:
        (folder / "config.yaml").write_text("mine\n")
    return folder


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize("resume", ["auto", "false"])
def test_a_users_config_yaml_is_never_overwritten(tmp_path, capsys, resume):
    folder = _users_folder(tmp_path)
    before = snapshot(folder)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", f"resume={resume}")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "holds config.yaml but no run of samt-run" in error and "move them away" in error
    assert snapshot(folder) == before
    assert (folder / "config.yaml").read_text() == "mine\n"


def test_a_users_tensorboard_folder_survives_a_fresh_run(tmp_path):
    folder = _users_folder(tmp_path, config=False)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert (folder / "tensorboard" / "ev").read_text() == "x\n"


def test_resume_false_removes_only_the_event_files_of_the_previous_run(tmp_path):
    folder = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    events = folder / "tensorboard"
    events.mkdir()
    (events / "events.out.tfevents.1.host.1.0").write_bytes(b"old run")
    (events / "notes.txt").write_text("mine\n")
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", "resume=false")) is None
    assert sorted(p.name for p in events.iterdir()) == ["notes.txt"]


def test_a_config_yaml_of_this_very_config_is_a_run_killed_as_it_started(tmp_path):
    """A run killed between writing config.yaml and summary.json: the rerun just starts."""
    folder = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    for name in ("summary.json", "metrics.csv", "checkpoint.pt", "learning_curves.png"):
        (folder / name).unlink()
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


# --- a logger that cannot start ------------------------------------------------------------------


def _finished_run(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}")) is None
    return folder, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()
                    and p.name != "cli.log"}


def _same(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / name).read_bytes() == data for name, data in files.items())


def test_an_unimportable_tensorboard_keeps_a_finished_run(tmp_path, capsys, monkeypatch):
    folder, files = _finished_run(tmp_path)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", "logger=tensorboard",
                         "resume=false")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "logger='tensorboard' is invalid" in error and "logger=none" in error
    assert _same(folder, files) and not (folder / "tensorboard").exists()


def test_a_file_named_tensorboard_is_a_user_error_that_keeps_a_finished_run(tmp_path, capsys):
    folder, files = _finished_run(tmp_path)
    (folder / "tensorboard").write_text("a file of mine\n")
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", "logger=tensorboard",
                         "resume=false")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "tensorboard is a file" in error and "logger=none" in error
    assert _same(folder, files) and (folder / "tensorboard").read_text() == "a file of mine\n"
