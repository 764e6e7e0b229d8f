"""A run's life in its folder (red-team findings): a refused run deletes only what it created,
default folder names never collide, labels cannot leave the outputs folder, unusable run folder
paths are user errors, a full disk keeps metrics, summary and checkpoint together, a finished
run always has its plots, unknown top-level keys are typos, and every run says how it ended.

The CLI runs in-process (``run_cli``) except where a second real process is the point.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import hydra.core.utils
import pytest
from conftest import CONF_DIR, run_cli
from fixtures_data import snapshot
from helpers import digits_args, error_lines, read_rows, read_summary
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import samt.atomic as atomic
import samt.train.records as records
from samt.cli import report_run, run_job
from samt.run_folder import FolderLock, FolderState, RunFolderError, prepare_folder
from samt.train import Run
from samt.train.checkpoint import CHECKPOINT, load_checkpoint
from samt.train.folder import RunFolder
from samt.validation import ConfigError, check_name_part

RESULT_FILES = ("metrics.csv", "summary.json", CHECKPOINT)


def _state(folder: Path) -> dict:
    """Every path under ``folder`` by size and mtime; Hydra's ``.hydra/`` files by content
    (Hydra rewrites them before the job starts; a refused run puts them back)."""
    state = {k: v for k, v in snapshot(folder).items() if not k.startswith(".hydra")}
    state.update({str(p): p.read_bytes() for p in (folder / ".hydra").glob("*")})
    return state


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


# --- 1: a refused second writer never deletes the first run's folder -----------------------------


# The first writer, slow to load its data (as MNIST is): it holds the folder's lock while the
# folder has nothing but Hydra's files in it.
SLOW_SETUP = ("import time\n"
              "from samt.train.runner import Run\n"
              "setup = Run.setup\n"
              "Run.setup = lambda self: (time.sleep(2), setup(self))[1]\n"
              "from samt.cli import run_main\n"
              "run_main()\n")


@pytest.mark.slow  # real processes, about 10-25 s: make test-slow
def test_a_refused_second_writer_leaves_the_first_runs_folder(tmp_path, capsys):
    out = tmp_path / "two"
    args = digits_args(tmp_path, "optimizer=sgd", "epochs=2", f"hydra.run.dir={out}")
    first = subprocess.Popen([sys.executable, "-c", SLOW_SETUP, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / FolderLock.NAME).exists():  # the first run holds the folder now
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.01)
        assert run_cli(args) == 2
        err = capsys.readouterr().err
        assert len(error_lines(err)) == 1 and "another samt-run process is writing" in err
        assert out.is_dir() and (out / ".hydra").is_dir()
        assert not (out / "config.yaml").exists()  # the first run was still setting up
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()
    assert read_summary(out)["status"] == "completed" and len(read_rows(out)) == 2


def test_a_refused_writer_leaves_a_folder_another_process_created_meanwhile(
        tmp_path, monkeypatch, capsys):
    """The race: the folder did not exist when this process looked, another one made it (and
    holds its lock) before this one got there. Nothing of it may be removed."""
    out = tmp_path / "run"
    real_execute = Run.execute
    held: list[FolderLock] = []

    def the_other_process_got_there_first(self):
        (self.run_dir / "config.yaml").write_text("the other run's\n")
        held.append(FolderLock(self.run_dir).__enter__())
        return real_execute(self)

    monkeypatch.setattr(Run, "execute", the_other_process_got_there_first)
    try:
        assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}")) == 2
    finally:
        for lock in held:
            lock.__exit__()
    assert "another samt-run process is writing" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "the other run's\n"
    assert (out / ".hydra").is_dir()


def test_undo_removes_only_what_this_process_added(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's\n")
    state = FolderState.capture(folder, restore=[".hydra"])
    state.added = ("cli.log",)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("hydra's\n")
    (folder / "cli.log").write_text("")
    (folder / "metrics.csv").write_text("not named as this process's: kept\n")
    assert state.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv", "notes.txt"]


def test_undo_does_nothing_while_another_process_holds_the_folder(tmp_path):
    folder = tmp_path / "new"
    state = FolderState.capture(folder, restore=[".hydra"])
    state.created = prepare_folder("hydra.run.dir", folder)
    (folder / ".hydra").mkdir()
    with FolderLock(folder):
        assert not state.undo()
    assert (folder / ".hydra").is_dir()
    assert state.undo() and not folder.exists()  # once free: all of it was this process's


# --- 2: default folder names are unique to the microsecond ---------------------------------------


class _SameSecond(datetime):
    """``datetime.now()`` always in the same second, one microsecond later at each call."""

    calls = 0

    @classmethod
    def now(cls, tz=None):
        cls.calls += 1
        return cls(2026, 11, 28, 12, 0, 0, cls.calls)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hydra.core.utils, "datetime", _SameSecond)
    monkeypatch.chdir(tmp_path)
    for lr in ("0.1", "0.03"):
        assert run_cli(digits_args(tmp_path, "optimizer=sgd", f"optimizer.lr={lr}")) is None
    folders = sorted((tmp_path / "outputs" / "2026-11-28").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("12-00-00-") for f in folders)
    assert {read_summary(f)["status"] for f in folders} == {"completed"}
    assert len(error_lines(capsys.readouterr().err)) == 0


def test_default_sweep_folder_has_microseconds():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    folders = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert "%f" in folders["run"]["dir"] and "%f" in folders["sweep"]["dir"]


# --- 3 and 4: a refused run leaves an existing folder exactly as it was ---------------------------


def test_resume_false_with_a_setup_error_leaves_a_finished_run_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}")) is None
    before = _state(out)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "resume=false",
                         "batch_size=100000")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "batch_size=100000 is invalid" in error
    assert _state(out) == before and read_summary(out)["status"] == "completed"


def test_resume_false_with_a_setup_crash_keeps_the_finished_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}")) is None
    results = {name: (out / name).read_bytes() for name in RESULT_FILES}

    def crash(self):
        raise RuntimeError("injected setup crash")

    monkeypatch.setattr(Run, "setup", crash)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "resume=false")) == 1
    assert "run failed: RuntimeError: injected setup crash" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in RESULT_FILES} == results


@pytest.mark.parametrize("bad", ["epochs=0", "batch_size=100000", "resume=true"])
def test_a_users_own_folder_survives_a_refused_run(tmp_path, bad, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own config\n")
    (folder / "train.log").write_text("my own log\n")
    before = snapshot(folder)
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={folder}", bad)) == 2
    assert len(error_lines(capsys.readouterr().err)) == 1
    assert snapshot(folder) == before  # no .hydra/ or job log left either


def test_a_refused_run_in_a_new_folder_removes_the_folders_it_made(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "batch_size=100000")) == 2
    assert not (tmp_path / "new").exists()


# --- 5: labels cannot leave the outputs or sweep folder ------------------------------------------


@pytest.mark.parametrize("label", ["../../../../escaped", "a/b", "..", "x..y", "/abs", "a b", ""])
def test_a_label_that_is_not_a_folder_name_part_is_refused_up_front(
        tmp_path, monkeypatch, label, capsys):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    assert run_cli(digits_args(tmp_path, f"optimizer.label='{label}'")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert f"optimizer.label={label!r} is invalid" in error
    assert "letters, digits and _ . + -" in error
    assert snapshot(tmp_path) == before  # no folder written anywhere


def test_a_sweep_with_an_escaping_label_is_refused_before_any_folder(tmp_path, capsys):
    sweep = tmp_path / "a" / "b" / "sweep"
    before = snapshot(tmp_path)
    code = run_cli(["-m", *digits_args(tmp_path, "optimizer.label=fine,'../../../../escaped'"),
                    f"hydra.sweep.dir={sweep}"])
    assert code == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "optimizer.label='../../../../escaped' is invalid" in error
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("label", ["samt_e_no_mean", "lr0.1", "adam+wd", "SGD-momentum"])
def test_ordinary_labels_are_allowed(label):
    check_name_part("optimizer.label", label)


def test_a_sweep_job_outside_the_sweep_folder_writes_nothing_there(tmp_path, capsys):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=digits_args(
            tmp_path, "optimizer.label='../../escaped'"))
    outside = tmp_path / "escaped_s0"
    outside.mkdir()
    assert run_job(cfg, outside, multirun=True, sweep_dir=tmp_path / "sweep") is None
    assert "optimizer.label" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


# --- 14: a run folder path that cannot be a folder ---------------------------------------------


def _file(tmp_path: Path) -> Path:
    target = tmp_path / "a_file"
    target.write_text("keep me\n")
    return target


def _broken_link(tmp_path: Path) -> Path:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    return link


@pytest.mark.parametrize(("where", "needle"), [
    (lambda tmp: _file(tmp), "it is a file"),
    (lambda tmp: _file(tmp) / "sub" / "run", "is a file, so no folder can be made under it"),
    (lambda tmp: Path("/proc/samt_no_such_folder/run"), "cannot create the folder"),
    (lambda tmp: _broken_link(tmp), "is a broken link"),
], ids=["a-file", "under-a-file", "under-proc", "broken-link"])
def test_an_unusable_run_folder_is_a_one_line_user_error(tmp_path, where, needle, capsys):
    target = where(tmp_path)
    if str(target).startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    code = run_cli(digits_args(tmp_path, f"hydra.run.dir={target}"))
    captured = capsys.readouterr()
    assert code == 2, captured.err
    (error,) = error_lines(captured.err)
    assert f"hydra.run.dir='{target}' is invalid" in error and needle in error
    assert "Traceback" not in captured.err + captured.out
    if (tmp_path / "a_file").exists():
        assert (tmp_path / "a_file").read_text() == "keep me\n"


def test_a_sweep_folder_that_is_a_file_is_a_one_line_user_error(tmp_path, capsys):
    target = _file(tmp_path)
    assert run_cli(["-m", *digits_args(tmp_path, "seed=0,1"), f"hydra.sweep.dir={target}"]) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert f"hydra.sweep.dir='{target}' is invalid" in error
    assert target.read_text() == "keep me\n"


def test_prepare_folder_reports_what_it_made(tmp_path):
    made = prepare_folder("hydra.run.dir", tmp_path / "x" / "y")
    assert made == [tmp_path / "x", tmp_path / "x" / "y"]
    assert prepare_folder("hydra.run.dir", tmp_path / "x" / "y") == []
    with pytest.raises(RunFolderError, match="is a file"):
        prepare_folder("hydra.run.dir", _file(tmp_path))


# --- 16: a full disk at a checkpoint keeps metrics, summary and checkpoint together ------------


class _FullDisk:
    """A file being written when the disk fills: the first ``room`` bytes get there, then
    ``write`` raises ENOSPC."""

    def __init__(self, fh, room: int = 100):
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        self.fh.write(data[:self.room])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def test_disk_full_at_a_checkpoint_keeps_the_folder_consistent_and_resumable(
        tmp_path, monkeypatch, capsys):
    args = digits_args(tmp_path, "epochs=3", "model.hidden=[16]", "batch_size=64")
    assert run_cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"]) is None
    real_open = atomic._open_temporary
    checkpoints = [0]

    def full_at_the_second_checkpoint(path: Path):
        if path.name == f".{CHECKPOINT}.tmp":
            checkpoints[0] += 1
            if checkpoints[0] == 2:
                return _FullDisk(real_open(path))
        return real_open(path)

    monkeypatch.setattr(atomic, "_open_temporary", full_at_the_second_checkpoint)
    out = tmp_path / "run"
    assert run_cli([*args, f"hydra.run.dir={out}"]) == 1
    assert "run failed: OSError" in capsys.readouterr().err
    summary = read_summary(out)
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert summary["epochs_completed"] == 1 and len(read_rows(out)) == 1
    assert load_checkpoint(out / CHECKPOINT)["epoch"] == 1
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(atomic, "_open_temporary", real_open)
    assert run_cli([*args, f"hydra.run.dir={out}"]) is None  # resumes after epoch 1, exactly
    assert read_summary(out)["resumed_from"] == [1]
    assert read_rows(out) == read_rows(tmp_path / "ref")


def test_a_failed_atomic_write_removes_its_temporary_file(tmp_path, monkeypatch):
    real_open = atomic._open_temporary
    monkeypatch.setattr(atomic, "_open_temporary", lambda path: _FullDisk(real_open(path), 1))
    with pytest.raises(OSError):
        records.write_atomic(tmp_path / "summary.json", "{}\n")
    assert list(tmp_path.iterdir()) == []


# --- 17: a finished run always has its plots -----------------------------------------------------


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def _digits_cfg(tmp_path: Path, *overrides: str) -> dict:
    from samt.cli import resolve_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=digits_args(tmp_path, *overrides))
    return resolve_config(cfg)


def test_plots_are_written_before_the_summary_says_completed(tmp_path, monkeypatch):
    real = RunFolder.write_summary

    def killed_once_completed(self, summary):
        real(self, summary)
        if summary["status"] == "completed":
            raise _Killed

    monkeypatch.setattr(RunFolder, "write_summary", killed_once_completed)
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        Run(_digits_cfg(tmp_path, "optimizer=samt_e"), out).execute()
    assert read_summary(out)["status"] == "completed"
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert (out / "samt_steps.png").stat().st_size > 1000


def test_a_rerun_of_a_finished_run_writes_missing_plots_again(tmp_path, capsys):
    out = tmp_path / "run"
    args = digits_args(tmp_path, "optimizer=samt_e", f"hydra.run.dir={out}")
    assert run_cli(args) is None
    for name in ("learning_curves.png", "samt_steps.png"):
        (out / name).unlink()
    metrics = (out / "metrics.csv").read_bytes()
    assert run_cli(args) is None
    captured = capsys.readouterr()
    assert "nothing to do" in captured.out and "plots were missing" in captured.err
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert (out / "samt_steps.png").stat().st_size > 1000
    assert (out / "metrics.csv").read_bytes() == metrics


# --- 19: an unknown top-level key is a typo ------------------------------------------------------


@pytest.mark.parametrize(("arg", "needles"), [
    ("+optimiser=sgd", ["optimiser='sgd'", "unknown top-level key", "did you mean optimizer=sgd"]),
    ("+epoch=3", ["epoch=3", "unknown top-level key", "did you mean epochs"]),
    ("+tag=x", ["tag='x'", "unknown top-level key", "known keys: batch_size"]),
])
def test_an_unknown_top_level_key_is_refused_with_the_close_match(tmp_path, arg, needles,
                                                                   capsys):
    out = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, arg, f"hydra.run.dir={out}")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    for needle in needles:
        assert needle in error
    assert not out.exists()


# --- a run says how it ended ---------------------------------------------------------------------


def test_a_completed_run_reports_status_metric_time_and_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "epochs=2")) is None
    err = capsys.readouterr().err
    summary = read_summary(out)
    final, best = summary["final"]["test_metric"], summary["best_test_metric"]
    assert "samt-run: run completed\n" in err
    assert (f"  test accuracy: {final:.2f} % final, {best:.2f} % best "
            f"(epoch {summary['best_epoch']})") in err
    assert "  epochs: 2 of 2; wall time " in err and " s (training " in err
    assert f"  run folder: {out}" in err
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "epochs=2")) is None
    assert "samt-run: run already finished (completed): nothing to do" in capsys.readouterr().err


def test_a_crashed_run_names_the_error_and_the_folder_with_its_log(tmp_path, monkeypatch,
                                                                  capsys):
    real = Run.train_epoch

    def crash_in_epoch_2(self, bar):
        if self.rows:
            raise RuntimeError("injected crash")
        return real(self, bar)

    monkeypatch.setattr(Run, "train_epoch", crash_in_epoch_2)
    out = tmp_path / "run"
    assert run_cli(digits_args(tmp_path, f"hydra.run.dir={out}", "epochs=2")) == 1
    err = capsys.readouterr().err
    block = err[err.index("samt-run: run failed"):]
    assert block.startswith("samt-run: run failed: RuntimeError: injected crash\n")
    assert "  epochs: 1 of 2" in block
    assert f"  run folder: {out} (summary.json; the traceback is in cli.log)" in block
    log = (out / "cli.log").read_text()
    assert "Traceback" in log and "RuntimeError: injected crash" in log


def test_report_names_rmse_for_regression(tmp_path):
    summary = {"status": "diverged", "error": "50 consecutive iterations\nmore", "metric": "rmse",
               "epochs": 4, "epochs_completed": 2, "final": {"test_metric": 3.14159},
               "best_test_metric": 2.5, "best_epoch": 1, "wall_time_s": 1.25}
    text = report_run(summary, tmp_path, 2.0)
    assert text.splitlines() == [
        "samt-run: run diverged: 50 consecutive iterations",
        "  test RMSE: 3.142 final, 2.5 best (epoch 1)",
        "  epochs: 2 of 4; wall time 2.0 s (training 1.2 s)",
        f"  run folder: {tmp_path}"]


def test_a_sweep_reports_counts_failures_folder_and_the_report_command(tmp_path, capsys):
    """A job that fails once it runs (its batch is larger than the data it loads: a bad value
    in the config alone stops the sweep before any job, tests/test_sweep_checks.py)."""
    sweep = tmp_path / "sweep"
    code = run_cli(["-m", *digits_args(tmp_path, "batch_size=64,100000,32"),
                    f"hydra.sweep.dir={sweep}"])
    assert code == 1
    err = capsys.readouterr().err
    block = err[err.index("samt-run: sweep ended"):]
    lines = block.splitlines()
    assert lines[0].startswith("samt-run: sweep ended: 3 job(s): 2 completed, 1 failed; "
                               "wall time ")
    assert lines[1] == "  1 sweep job(s) failed:"
    assert lines[2].startswith(f"    {sweep / '1_digits_mlp_adam_s0'}: ConfigError: "
                               "batch_size=100000 is invalid")
    assert lines[3:5] == [f"  sweep folder: {sweep}", f"  next: samt-report {sweep}"]


def test_a_sweep_without_failures_exits_0_with_its_report(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert run_cli(["-m", *digits_args(tmp_path, "seed=0,1"), f"hydra.sweep.dir={sweep}"]) is None
    err = capsys.readouterr().err
    assert "samt-run: sweep ended: 2 job(s): 2 completed; wall time" in err
    assert f"  next: samt-report {sweep}" in err and "failed" not in err


def test_config_error_in_a_label_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer.label='a/b' is invalid"):
        check_name_part("optimizer.label", "a/b")
