"""Fault injection: SIGKILL/SIGINT/SIGTERM mid-epoch and exact resume, NaN batches and
gradients, crashing and failing sweep jobs, atomic checkpoints, one writer per run folder.

The CLI runs in-process (``run_main`` with ``sys.argv`` set) except where a real process is
the point: a SIGKILL, a Ctrl-C, a sweep's exit status.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from helpers import digits_config, read_rows, read_summary

import samt.atomic as atomic
from samt.train import Run
from samt.train.checkpoint import (
    CHECKPOINT,
    FolderLock,
    RunFolderError,
    load_checkpoint,
    save_checkpoint,
)

CLI = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]
# SAMT-E with the hypergradient meta mode carries state from one iteration to the next (the
# pending visits), so an exact resume needs all of it. Batch size 2: ~1 s per epoch.
SLOW_ARGS = ["dataset=digits", "optimizer=samt_e_hypergradient", "model.hidden=[16]",
             "batch_size=2", "epochs=3", "seed=5", "device=cpu", "device.threads=1",
             "progress=false"]


def _cli(args: list[str]) -> int | None:
    """``samt-run ARGS`` in this process; the exit status if it exited, else None."""
    return run_cli(args)


def _config(root: Path, *overrides: str) -> dict:
    return digits_config(root, "model.hidden=[16]", "batch_size=64", "epochs=3", *overrides)


def _finite(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite(v) for v in obj)
    return True


@pytest.fixture(autouse=True)
def _no_full_hydra_errors(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """Metrics of the uninterrupted SLOW_ARGS run (the CLI, in-process)."""
    root = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    assert _cli([*SLOW_ARGS, f"data.root={root}", f"hydra.run.dir={root / 'run'}"]) is None
    return read_rows(root / "run")


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[str]]:
    out = tmp_path / "run"
    args = [*SLOW_ARGS, f"data.root={tmp_path}", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return proc, out, args


def _stop_during_epoch_2(proc: subprocess.Popen, out: Path, sig: int) -> None:
    """Wait for epoch 1's row (written right after its checkpoint), then signal a third of an
    epoch into epoch 2."""
    deadline = time.monotonic() + 120
    while not (out / "metrics.csv").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.01)
    with open(out / "metrics.csv") as fh:
        epoch_time = float(next(csv.DictReader(fh))["epoch_time_s"])
    time.sleep(epoch_time / 3)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(sig)
    proc.wait(timeout=60)


@pytest.mark.slow  # real processes, about 10-25 s: make test-slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, reference):
    proc, out, args = _start(tmp_path)
    _stop_during_epoch_2(proc, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    epoch = load_checkpoint(out / CHECKPOINT)["epoch"]
    assert 1 <= epoch < 3 and len(read_rows(out)) == epoch
    assert read_summary(out)["status"] == "running"  # killed: nobody could write anything else
    assert _cli(args) is None  # the same command again continues from the checkpoint
    assert read_rows(out) == reference
    summary = read_summary(out)
    assert summary["status"] == "completed" and summary["resumed_from"] == [epoch]
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow  # real processes, about 10-25 s: make test-slow
def test_sigint_stops_cleanly_as_interrupted_and_resumes_exactly(tmp_path, reference):
    proc, out, args = _start(tmp_path)
    _stop_during_epoch_2(proc, out, signal.SIGINT)
    stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert "interrupted (SIGINT)" in stderr and f"hydra.run.dir={out}" in stderr
    assert "Traceback" not in stderr
    summary = read_summary(out)
    assert summary["status"] == "interrupted" and summary["error"] == "interrupted (Ctrl-C)"
    assert summary["epochs_completed"] == load_checkpoint(out / CHECKPOINT)["epoch"]
    assert _cli([*args, "resume=true"]) is None
    assert read_rows(out) == reference and read_summary(out)["status"] == "completed"
    assert _cli(args) is None  # finished: a rerun is a no-op
    assert read_rows(out) == reference


def test_sigterm_stops_as_interrupted_then_resume_and_rerun(tmp_path, monkeypatch, capsys):
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        pytest.skip("SIGTERM is handled by the test process itself")
    args = ["dataset=digits", "optimizer=adam", "model.hidden=[16]", "epochs=3", "device=cpu",
            "progress=false", f"data.root={tmp_path}"]
    assert _cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"]) is None
    real_step = torch.optim.Adam.step

    def step_then_sigterm(self, *a, **kw):
        out = real_step(self, *a, **kw)
        if int(self.state[self.param_groups[0]["params"][0]]["step"]) == 15:  # in epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_sigterm)
    out = tmp_path / "run"
    assert _cli([*args, f"hydra.run.dir={out}"]) == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler removed again
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    summary = read_summary(out)
    assert summary["status"] == "interrupted" and summary["error"] == "interrupted (SIGTERM)"
    assert summary["epochs_completed"] == 1
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert _cli([*args, f"hydra.run.dir={out}"]) is None
    assert read_rows(out) == read_rows(tmp_path / "ref")
    mtime = (out / "metrics.csv").stat().st_mtime_ns
    assert _cli([*args, f"hydra.run.dir={out}"]) is None
    assert "already holds a finished run" in capsys.readouterr().out
    assert (out / "metrics.csv").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("overrides", [  # Adam: see the SIGTERM test
    ("optimizer=sgd", "optimizer.momentum=0.9", "optimizer.schedule=cosine"),
    ("optimizer=schedulefree_adamw",),  # checkpointed in eval mode, switched back to train
    ("optimizer=prodigy",),
    ("optimizer=hypergradient_sgd",),
    ("optimizer=samt_e",),
    ("optimizer=samt_e_lookahead",),
    ("optimizer=samt_s", "optimizer.order=random", "optimizer.meta_interval=2"),
    ("optimizer=samt_e", "data.augment=crop_flip"),  # crops and flips from the run's generator
], ids=lambda o: "+".join(x.split("=")[1] for x in o))
def test_resume_after_an_interrupt_at_any_iteration_is_exact(tmp_path, overrides):
    cfg = _config(tmp_path, *overrides)
    Run(cfg, tmp_path / "ref").execute()

    class StopInEpoch2(Run):
        def setup(self):
            super().setup()
            step, calls = self.optimizer.step, [0]

            def stopping_step(x, y):
                calls[0] += 1
                if calls[0] == 30:  # 23 iterations per epoch
                    raise KeyboardInterrupt
                return step(x, y)
            self.optimizer.step = stopping_step

    with pytest.raises(KeyboardInterrupt):
        StopInEpoch2(cfg, tmp_path / "run").execute()
    assert read_summary(tmp_path / "run")["status"] == "interrupted"
    run = Run(cfg, tmp_path / "run")
    run.execute()
    assert run.outcome == "resumed" and run.summary["resumed_from"] == [1]
    assert read_rows(tmp_path / "run") == read_rows(tmp_path / "ref")


class _NaNGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class Poisoned(Run):
    """Feeds NaN inputs (``nan_input``) or NaN gradients (``nan_grad``) into chosen iterations
    and records whether any weight changed in them."""

    nan_input: callable = staticmethod(lambda i: False)
    nan_grad: callable = staticmethod(lambda i: False)

    def setup(self):
        super().setup()
        step, loss_fn = self.optimizer.step, self.optimizer.loss_fn
        self.poisoned, self.moved = 0, 0

        def poisoned_step(x, y):
            i = self.optimizer.iteration + 1
            bad_x, bad_g = self.nan_input(i), self.nan_grad(i)
            if not (bad_x or bad_g):
                return step(x, y)
            self.poisoned += 1
            before = [p.detach().clone() for p in self.model.parameters()]
            if bad_x:
                x = torch.full_like(x, float("nan"))
            if bad_g:
                self.optimizer.loss_fn = lambda out, t: loss_fn(_NaNGrad.apply(out), t)
            try:
                return step(x, y)
            finally:
                self.optimizer.loss_fn = loss_fn
                self.moved += any(not torch.equal(a, p) for a, p in
                                  zip(before, self.model.parameters(), strict=True))
        self.optimizer.step = poisoned_step


@pytest.mark.parametrize("optimizer", ["adam", "samt_e"])
def test_a_few_non_finite_batches_and_gradients_are_skipped(tmp_path, optimizer):
    run = Poisoned(_config(tmp_path, f"optimizer={optimizer}", "epochs=2"), tmp_path / "run")
    run.nan_input = lambda i: i % 9 == 0
    run.nan_grad = lambda i: i % 7 == 0
    summary = run.execute()
    assert summary["status"] == "completed"
    assert run.poisoned == 5 + 6 and run.moved == 0  # no poisoned iteration moved a weight
    rows = read_rows(tmp_path / "run")
    assert sum(float(r["skipped"]) for r in rows) >= run.poisoned
    assert float(rows[-1]["test_metric"]) > 20  # still learns (chance: 10)
    assert all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert _finite(state["model"]) and _finite(state["optimizer"])


@pytest.mark.parametrize("optimizer", ["adam", "samt_e"])
def test_non_finite_from_epoch_2_on_diverges_keeping_the_rows(tmp_path, optimizer):
    cfg = _config(tmp_path, f"optimizer={optimizer}", "max_consecutive_skips=5")
    run = Poisoned(cfg, tmp_path / "run")
    run.nan_input = lambda i: i > 23 and i % 2 == 0  # epoch 2 on: NaN inputs ...
    run.nan_grad = lambda i: i > 23 and i % 2 == 1   # ... and NaN gradients, alternating
    summary = run.execute()
    assert summary["status"] == "diverged" and "5 consecutive" in summary["error"]
    assert run.poisoned == 5 and run.moved == 0
    assert summary["epochs_completed"] == 1 and len(read_rows(tmp_path / "run")) == 1
    assert all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["epoch"] == 1 and _finite(state["model"]) and _finite(state["optimizer"])
    again = Run(cfg, tmp_path / "run")  # diverged is final: a rerun has nothing to do
    assert again.execute()["status"] == "diverged" and again.outcome == "done"


def test_checkpoint_holds_everything_a_resume_needs(tmp_path):
    Run(_config(tmp_path, "optimizer=samt_e", "epochs=2"), tmp_path / "run").execute()
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["epoch"] == 2 and len(state["rows"]) == 2
    assert {"meta", "iteration", "generator"} <= set(state["optimizer"])  # SAMT's meta state
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "batch_generator"}
    assert set(state["counters"]) == {"wall_time", "iterations", "consecutive_skips"}
    assert state["config"]["optimizer"]["label"] == "samt_e" and state["device"] == "cpu"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, {"format": 1, "epoch": 1})

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"format": 1, "epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1  # the old checkpoint, whole


def test_one_process_per_run_folder(tmp_path):
    (tmp_path / "run").mkdir()
    with FolderLock(tmp_path / "run"), pytest.raises(RunFolderError, match="another samt-run"):
        Run(_config(tmp_path), tmp_path / "run").execute()


@pytest.mark.slow  # a real joblib sweep of three processes (make test-slow, CI stage 2)
def test_sweep_with_a_failing_job_runs_the_others_and_exits_non_zero(tmp_path, capsys):
    """Job 1 fails once it runs (a batch larger than the data); a value the config check
    refuses stops the sweep before any job instead (tests/test_sweep_checks.py)."""
    args = ["-m", "dataset=digits", "optimizer=adam", "model.hidden=[8]", "epochs=1",
            "batch_size=64,100000,32", "device=cpu", "progress=false",
            f"data.root={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "1 sweep job(s) failed" in done.stderr and "batch_size=100000" in done.stderr
    jobs = sorted((tmp_path / "sweep").glob("*_digits_*"))
    statuses = [read_summary(j)["status"] for j in jobs]
    assert statuses == ["completed", "failed", "completed"]
    assert "batch_size=100000" in read_summary(jobs[1])["error"]
    # The same sweep again: finished jobs are skipped, the failing one fails again.
    mtimes = [(j / "metrics.csv").stat().st_mtime_ns for j in (jobs[0], jobs[2])]
    assert _cli(args) == 1
    assert capsys.readouterr().out.count("nothing to do") == 2
    assert [(j / "metrics.csv").stat().st_mtime_ns for j in (jobs[0], jobs[2])] == mtimes


def test_sweep_job_crashing_mid_training_is_recorded_and_the_sweep_goes_on(
        tmp_path, monkeypatch, capsys):
    real = Run.train_epoch

    def crash_for_seed_1(self, bar):
        if self.cfg["seed"] == 1 and self.rows:
            raise RuntimeError("injected crash")
        return real(self, bar)

    monkeypatch.setattr(Run, "train_epoch", crash_for_seed_1)
    code = _cli(["-m", "dataset=digits", "optimizer=adam", "model.hidden=[8]", "epochs=2",
                 "seed=0,1,2", "device=cpu", "progress=false", f"data.root={tmp_path}",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 1
    assert "RuntimeError: injected crash" in capsys.readouterr().err
    jobs = sorted((tmp_path / "sweep").glob("*_digits_*"))
    assert [read_summary(j)["status"] for j in jobs] == ["completed", "failed", "completed"]
    crashed = read_summary(jobs[1])
    assert crashed["error"] == "RuntimeError: injected crash" and crashed["epochs_completed"] == 1
    assert len(read_rows(jobs[1])) == 1 and (jobs[1] / CHECKPOINT).exists()
