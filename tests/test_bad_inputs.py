"""Bad inputs: every one gives one clear message, a non-zero exit status and no result files.

Most cases run the real ``samt-run`` entry point in-process (``run_main`` with ``sys.argv`` set:
Hydra parsing, validation, data loading and run-folder checks exactly as on the command line);
a few run it as a subprocess to prove the exit status and the absence of a traceback for real.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from fixtures_data import IDX_NAMES, snapshot, write_cifar10, write_idx_dataset, write_uci

RESULT_FILES = ("metrics.csv", "summary.json", "checkpoint.pt")  # never written for bad input


def _uci(root: Path, splits: int = 1) -> Path:
    table = np.random.default_rng(0).normal(size=(40, 5)) * 3 + 10
    return write_uci(root, "concrete", table, features=range(4), target=4,
                     splits=[(range(0, 30), range(30, 40))] * splits)


def _mnist(root: Path) -> Path:
    folder = root / "MNIST" / "raw"
    write_idx_dataset(folder, n_train=12, n_test=5)
    return folder


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _uci_non_numeric(root: Path) -> None:
    folder = _uci(root)
    lines = (folder / "data.txt").read_text().splitlines()
    lines[6] = lines[6].replace(lines[6].split()[2], "n/a", 1)
    (folder / "data.txt").write_text("\n".join(lines) + "\n")


def _uci_missing_split_file(root: Path) -> None:
    folder = _uci(root, splits=2)
    (folder / "index_train_1.txt").unlink()


def _uci_bad_index(root: Path) -> None:
    folder = _uci(root)
    (folder / "index_test_0.txt").write_text("3\n400\n")


def _cifar_corrupt(root: Path) -> None:
    write_cifar10(root, n_per_batch=2)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(
        pickle.dumps(["not", "a", "batch"])[:-3])


def _previous_run(root: Path, out: Path, epochs: int = 1) -> None:
    """A finished run in ``out`` (digits, 1 epoch), made by the CLI itself."""
    _cli(root, out, ["dataset=digits", f"epochs={epochs}", "model.hidden=[4]"], expect_exit=False)


def _corrupt_checkpoint(root: Path, out: Path) -> None:
    _previous_run(root, out)
    _truncate(out / "checkpoint.pt", 100)


@dataclass
class Case:
    """One bad input: CLI ``args``, substrings the message must contain, optional file setup."""

    id: str
    args: list[str]
    needles: list[str]
    prepare: Callable[[Path], None] | None = None       # writes files into the data root
    existing: Callable[[Path, Path], None] | None = None  # makes a previous run in the folder
    skip: str | None = None
    extra: dict = field(default_factory=dict)


HYDRA_GROUP = ["Could not find", "Available options"]
CASES = [
    # --- Hydra: unknown group options and keys ---------------------------------------------
    Case("unknown-optimizer", ["optimizer=adamx"], ["optimizer/adamx", *HYDRA_GROUP, "samt_e"]),
    Case("unknown-dataset", ["dataset=imagenet"], ["dataset/imagenet", *HYDRA_GROUP]),
    Case("unknown-key", ["epochz=3"], ["epochz", "not in struct"]),
    # --- top-level values --------------------------------------------------------------------
    Case("epochs-zero", ["epochs=0"], ["epochs=0", ">= 1"]),
    Case("epochs-text", ["epochs=abc"], ["epochs='abc'", "integer"]),
    Case("epochs-float", ["epochs=2.5"], ["epochs=2.5", "integer"]),
    Case("batch-zero", ["batch_size=0"], ["batch_size=0", ">= 1"]),
    Case("batch-too-large", ["batch_size=100000"], ["batch_size=100000", "<= 1438", "digits"]),
    Case("eval-batch-negative", ["eval_batch_size=-1"], ["eval_batch_size=-1"]),
    Case("seed-negative", ["seed=-1"], ["seed=-1", ">= 0"]),
    Case("max-skips-zero", ["max_consecutive_skips=0"], ["max_consecutive_skips=0"]),
    Case("progress-text", ["progress=maybe"], ["progress='maybe'", "auto, true, false"]),
    Case("download-text", ["data.download=maybe"], ["data.download='maybe'", "true or false"]),
    Case("resume-text", ["resume=sometimes"], ["resume='sometimes'", "auto, true, false"]),
    # --- baselines -----------------------------------------------------------------------------
    Case("sgd-lr-zero", ["optimizer=sgd", "optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    Case("adam-lr-negative", ["optimizer.lr=-0.001"], ["optimizer.lr=-0.001"]),
    Case("lr-nan", ["optimizer.lr=nan"], ["optimizer.lr=nan", "finite"]),
    Case("lr-text", ["optimizer.lr=fast"], ["optimizer.lr='fast'", "a number"]),
    Case("betas-short", ["optimizer.betas=[0.9]"], ["optimizer.betas=[0.9]", "two numbers"]),
    Case("momentum-negative", ["optimizer=sgd", "optimizer.momentum=-0.5"],
         ["optimizer.momentum=-0.5"]),
    Case("nesterov-no-momentum", ["optimizer=sgd", "optimizer.nesterov=true"],
         ["optimizer.nesterov", "momentum > 0"]),
    Case("optimizer-unknown-key", ["+optimizer.foo=1"], ["optimizer.foo=1", "unknown key"]),
    Case("schedule-unknown", ["optimizer.schedule=linear"], ["optimizer.schedule", "cosine"]),
    Case("schedule-on-schedule-free", ["optimizer=schedulefree_adamw",
                                       "optimizer.schedule=cosine"],
         ["optimizer.schedule='cosine'", "only constant"]),
    Case("prodigy-unknown-option", ["optimizer=prodigy", "+optimizer.foo=1"],
         ["optimizer='prodigy'", "options were rejected", "'foo'"]),
    # --- SAMT -----------------------------------------------------------------------------------
    Case("eta-min-above-max", ["optimizer=samt_e", "optimizer.eta_min=2.0"],
         ["optimizer.eta_min=2.0", "must be below optimizer.eta_max="]),
    Case("eta0-out-of-range", ["optimizer=samt_e", "optimizer.eta0=5.0"],
         ["optimizer.eta0=5.0", "[eta_min, eta_max]"]),
    Case("eta0-zero", ["optimizer=samt_e", "optimizer.eta0=0"], ["optimizer.eta0=0"]),
    Case("step-type", ["optimizer=samt_e", "optimizer.step_type=diagonal"],
         ["optimizer.step_type='diagonal'", "scalar, element, row, column"]),
    Case("projection", ["optimizer=samt_e", "optimizer.projection=relu"],
         ["optimizer.projection='relu'", "sigmoid, tanh"]),
    Case("combine", ["optimizer=samt_e", "optimizer.combine=sum"], ["optimizer.combine='sum'"]),
    Case("meta-mode", ["optimizer=samt_e", "optimizer.meta_mode=none"],
         ["optimizer.meta_mode='none'", "exact"]),
    Case("feature-name", ["optimizer=samt_e", "optimizer.features=[mean,skew]"],
         ["optimizer.features=['mean', 'skew']", "mean, var, max, min, norm"]),
    Case("features-empty", ["optimizer=samt_e", "optimizer.features=[]"],
         ["optimizer.features=[]"]),
    Case("group-size-negative", ["optimizer=samt_e", "optimizer.group_size=-1"],
         ["optimizer.group_size=-1", ">= 0"]),
    Case("order", ["optimizer=samt_e", "optimizer.order=sideways"], ["optimizer.order"]),
    Case("meta-interval-zero", ["optimizer=samt_e", "optimizer.meta_interval=0"],
         ["optimizer.meta_interval=0"]),
    Case("meta-optimizer", ["optimizer=samt_e", "optimizer.meta_optimizer=rmsprop"],
         ["optimizer.meta_optimizer='rmsprop'", "adam, sgd"]),
    Case("features-per-group-element", ["optimizer=samt_e", "optimizer.features_per_group=true"],
         ["optimizer.features_per_group", "row or column"]),
    # --- model -----------------------------------------------------------------------------------
    Case("hidden-empty", ["model.hidden=[]"], ["model.hidden=[]", "non-empty list"]),
    Case("hidden-zero-width", ["model.hidden=[0,10]"], ["model.hidden=[0, 10]"]),
    Case("activation", ["model.activation=swish"], ["model.activation='swish'", "relu"]),
    Case("cnn-channels-empty", ["model=cnn", "model.channels=[]"], ["model.channels=[]"]),
    Case("model-unknown-key", ["+model.dropuot=0.5"], ["model.dropuot=0.5", "unknown key"]),
    Case("cnn-on-tabular", ["dataset=uci_concrete", "model=cnn", "batch_size=8"],
         ["model=cnn", "image inputs"], prepare=_uci),
    # --- device and data ---------------------------------------------------------------------
    Case("cuda-without-cuda", ["device=cuda"], ["device.type='cuda'", "no CUDA device"],
         skip="torch sees a CUDA device" if torch.cuda.is_available() else None),
    Case("threads-zero", ["device.threads=0"], ["device.threads=0", ">= 1"]),
    Case("data-root-is-a-file", ["data.root=@file"], ["data.root=", "must be a folder"]),
    Case("data-root-unset-env", ["data.root=${oc.env:SAMT_NO_SUCH_VARIABLE}"],
         ["cannot be resolved", "SAMT_NO_SUCH_VARIABLE", "data.root"]),
    Case("download-text", ["data.download=maybe"], ["data.download='maybe'"]),
    Case("split-negative", ["dataset=uci_concrete", "model=regression_mlp", "dataset.split=-1"],
         ["dataset.split=-1", ">= 0"], prepare=_uci),
    Case("uci-split-out-of-range", ["dataset=uci_concrete", "model=regression_mlp",
                                    "dataset.split=5"],
         ["split 5 is out of range", "0..0", "n_splits.txt"], prepare=_uci),
    Case("digits-split", ["+dataset.split=1"], ["digits", "split must be 0"]),
    # --- data files ----------------------------------------------------------------------------
    Case("mnist-truncated", ["dataset=mnist", "data.download=false"],
         [IDX_NAMES["train_images"], "truncated or corrupt"],
         prepare=lambda root: _truncate(_mnist(root) / IDX_NAMES["train_images"], 3000)),
    Case("mnist-bad-magic", ["dataset=mnist", "data.download=false"],
         [IDX_NAMES["test_labels"], "magic number"],
         prepare=lambda root: (_mnist(root) / IDX_NAMES["test_labels"]).write_bytes(b"\0" * 20)),
    Case("mnist-missing-file", ["dataset=mnist", "data.download=false"],
         ["mnist", IDX_NAMES["test_images"], "samt-data mnist"],
         prepare=lambda root: (_mnist(root) / IDX_NAMES["test_images"]).unlink()),
    Case("kmnist-offline", ["dataset=kmnist", "data.download=false"],
         ["kmnist", "KMNIST/raw", "train-images-idx3-ubyte"]),
    Case("cifar-corrupt-pickle", ["dataset=cifar10", "model=cnn", "data.download=false"],
         ["data_batch_3", "not a readable CIFAR batch"], prepare=_cifar_corrupt),
    Case("uci-non-numeric", ["dataset=uci_concrete", "model=regression_mlp"],
         ["data.txt, line 7", "non-numeric value 'n/a'"], prepare=_uci_non_numeric),
    Case("uci-missing-split-file", ["dataset=uci_concrete", "model=regression_mlp",
                                    "dataset.split=1"],
         ["index_train_1.txt", "uci_concrete"], prepare=_uci_missing_split_file),
    Case("uci-index-out-of-range", ["dataset=uci_concrete", "model=regression_mlp"],
         ["index_test_0.txt", "index outside"], prepare=_uci_bad_index),
    # --- run folder ------------------------------------------------------------------------------
    Case("resume-true-nothing-to-resume", ["resume=true"], ["resume=true", "checkpoint.pt"]),
    Case("folder-holds-other-config", ["dataset=digits", "epochs=2", "model.hidden=[4]"],
         ["different config", "epochs: 1 -> 2", "resume=false"], existing=_previous_run),
    Case("corrupt-checkpoint", ["dataset=digits", "epochs=1", "model.hidden=[4]"],
         ["checkpoint.pt cannot be read", "failed reading zip archive", "resume=false"],
         existing=_corrupt_checkpoint),
]
SUBPROCESS_CASES = ("unknown-optimizer", "batch-too-large", "uci-non-numeric")


def _argv(root: Path, out: Path, args: list[str]) -> list[str]:
    base = {"dataset": "dataset=digits", "optimizer": "optimizer=adam", "device": "device=cpu",
            "progress": "progress=false",
            "epochs": "epochs=1", "data.root": f"data.root={root}"}
    for arg in args:
        base[arg.split("=", 1)[0].lstrip("+")] = arg.replace("@file", str(root / "a_file"))
    return [*base.values(), f"hydra.run.dir={out}"]


def _cli(root: Path, out: Path, args: list[str], expect_exit: bool = True) -> int | None:
    code = run_cli(_argv(root, out, args))
    assert code is not None or not expect_exit, \
        f"samt-run {' '.join(args)} did not exit with an error"
    return code


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("SAMT_NO_SUCH_VARIABLE", raising=False)
    root, out = tmp_path / "data", tmp_path / "run"
    root.mkdir()
    (root / "a_file").write_text("not a folder\n")
    return root, out


def _check(case: Case, code: int | None, message: str, out: Path, before: dict | None) -> None:
    assert code not in (0, None), f"{case.id}: exit status {code}"
    for needle in case.needles:
        assert needle in message, f"{case.id}: {needle!r} not in message:\n{message}"
    assert "Traceback" not in message
    if before is None:  # a fresh run folder: nothing left that looks like a result
        assert not out.exists(), f"{case.id}: {sorted(p.name for p in out.iterdir())}"
    else:  # an existing run folder: its results are untouched
        assert all((out / f).exists() for f in RESULT_FILES)
        assert _state(out) == before  # Hydra's own files (.hydra/) are put back too


def _state(out: Path) -> dict:
    """Result files by size and mtime, Hydra's files (rewritten, then put back) by content."""
    state = {k: v for k, v in snapshot(out).items() if not k.startswith(".hydra")}
    state.update({str(p): p.read_bytes() for p in (out / ".hydra").glob("*")})
    return state


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case, paths, capsys):
    if case.skip:
        pytest.skip(case.skip)
    root, out = paths
    if case.prepare:
        case.prepare(root)
    before = None
    if case.existing:
        case.existing(root, out)
        capsys.readouterr()
        before = _state(out)
    code = _cli(root, out, case.args)
    captured = capsys.readouterr()
    _check(case, code, captured.err + captured.out, out, before)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(case_id, paths):
    case = next(c for c in CASES if c.id == case_id)
    root, out = paths
    if case.prepare:
        case.prepare(root)
    done = subprocess.run(
        [sys.executable, "-c", "from samt.cli import run_main; run_main()",
         *_argv(root, out, case.args)], capture_output=True, text=True, timeout=300)
    _check(case, done.returncode, done.stderr + done.stdout, out, None)
    assert done.returncode == (1 if case_id == "unknown-optimizer" else 2)


def test_there_are_at_least_30_bad_inputs():
    assert len(CASES) >= 30
    assert len(SUBPROCESS_CASES) <= 6
