"""More bad inputs (red-team findings): overflowing, mis-shaped or undecodable data, optimizer
options that only fail when used, out-of-range seeds, malformed run folders for the report,
incomplete checkpoints, and the permissions of prepared data files.

Each case runs the real entry point (``samt-run`` in-process via ``run_cli``, or
``samt.report.cli.main``) and, where a loader is involved, the loader alone too.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli
from fixtures_data import IDX_NAMES, idx_bytes, write_idx_dataset, write_uci

from samt.data import CorruptDataError, load_dataset, prepare_dataset
from samt.report.cli import main as report_main
from samt.train.checkpoint import CheckpointError, load_checkpoint
from samt.train.folder import RunFolder
from samt.train.records import write_atomic

# --- helpers -------------------------------------------------------------------------------------


def _argv(root: Path, out: Path, args: list[str]) -> list[str]:
    """A fast digits/adam CLI command line with ``args`` overriding the defaults."""
    base = {"dataset": "dataset=digits", "optimizer": "optimizer=adam", "device": "device=cpu",
            "progress": "progress=false", "epochs": "epochs=1", "model.hidden": "model.hidden=[4]",
            "data.root": f"data.root={root}"}
    for arg in args:
        base[arg.split("=", 1)[0].lstrip("+")] = arg
    return [*base.values(), f"hydra.run.dir={out}"]


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(data root, run folder) in ``tmp_path``; Hydra's full tracebacks off."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root, out = tmp_path / "data", tmp_path / "run"
    root.mkdir()
    return root, out


def _refused(capsys: pytest.CaptureFixture, code: int | None, needles: list[str]) -> str:
    """Exit 2, exactly one ``samt-run: error:`` line holding every needle, no traceback."""
    captured = capsys.readouterr()
    message = captured.err + captured.out
    assert code == 2, f"exit status {code}:\n{message}"
    errors = [line for line in message.splitlines() if line.startswith("samt-run: error:")]
    assert len(errors) == 1, message
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    assert "Traceback" not in message
    return errors[0]


def _uci(root: Path) -> Path:
    """A 40-row concrete set: features 0..3, target 4, split 0 = rows 0..29 / 30..39."""
    table = np.random.default_rng(0).normal(size=(40, 5)) * 3 + 10
    return write_uci(root, "concrete", table, features=range(4), target=4,
                     splits=[(range(0, 30), range(30, 40))])


def _set_cell(folder: Path, line: int, column: int, text: str) -> None:
    """Replace the cell on 1-based ``line`` and 0-based ``column`` of data.txt."""
    lines = (folder / "data.txt").read_text().splitlines()
    cells = lines[line - 1].split()
    cells[column] = text
    lines[line - 1] = " ".join(cells)
    (folder / "data.txt").write_text("\n".join(lines) + "\n")


UCI_ARGS = ["dataset=uci_concrete", "model=regression_mlp", "batch_size=8"]

# --- 8: non-finite or overflowing UCI data -------------------------------------------------------


@pytest.mark.parametrize("text", ["1e300", "-1e39", "nan", "inf", "-Infinity"])
def test_uci_value_outside_float32_is_a_data_error(tmp_path: Path, text: str) -> None:
    folder = _uci(tmp_path)
    _set_cell(folder, 7, 2, text)
    with pytest.raises(CorruptDataError) as info:
        load_dataset("uci_concrete", tmp_path)
    message = str(info.value)
    assert f"{folder / 'data.txt'}, line 7, column index 2" in message
    assert repr(text) in message and "finite" in message and "3.4e+38" in message


def test_uci_standardization_overflow_is_a_data_error(tmp_path: Path) -> None:
    """A column nearly constant on the train rows standardizes a test value beyond float32."""
    folder = _uci(tmp_path)
    lines = (folder / "data.txt").read_text().splitlines()
    for i in range(40):  # column 1: 0 or 1e-40 on the train rows, 1.0 on test row 35
        cells = lines[i].split()
        cells[1] = "1.0" if i == 35 else ("1e-40" if i % 2 else "0")
        lines[i] = " ".join(cells)
    (folder / "data.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptDataError) as info:
        load_dataset("uci_concrete", tmp_path)
    message = str(info.value)
    assert f"{folder / 'data.txt'}, line 36, column index 1" in message
    assert "standardizes to" in message and "float32" in message and "std" in message


def test_uci_overflowing_value_through_the_cli(paths, capsys) -> None:
    root, out = paths
    _set_cell(_uci(root), 7, 2, "1e300")
    code = run_cli(_argv(root, out, UCI_ARGS))
    _refused(capsys, code, ["data.txt, line 7, column index 2", "'1e300'", "finite"])
    assert not out.exists()


def test_uci_values_at_float32_scale_still_load(tmp_path: Path) -> None:
    folder = _uci(tmp_path)
    _set_cell(folder, 3, 0, "3e38")
    splits = load_dataset("uci_concrete", tmp_path)
    assert torch.isfinite(splits.x_train).all() and torch.isfinite(splits.x_test).all()


# --- 9: test images of another shape than the train images -------------------------------------


def _mnist_with_small_test_images(root: Path) -> Path:
    folder = root / "MNIST" / "raw"
    write_idx_dataset(folder, n_train=12, n_test=5)
    small = np.zeros((5, 14, 14), dtype=np.uint8)
    (folder / IDX_NAMES["test_images"]).write_bytes(idx_bytes(small))
    return folder


def test_idx_test_images_of_another_shape_are_refused(tmp_path: Path) -> None:
    folder = _mnist_with_small_test_images(tmp_path)
    with pytest.raises(CorruptDataError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    for needle in (str(folder / IDX_NAMES["test_images"]), str(folder / IDX_NAMES["train_images"]),
                   "14x14", "28x28"):
        assert needle in message


def test_idx_test_images_of_another_shape_through_the_cli(paths, capsys) -> None:
    root, out = paths
    _mnist_with_small_test_images(root)
    code = run_cli(_argv(root, out, ["dataset=mnist", "data.download=false"]))
    _refused(capsys, code, [IDX_NAMES["test_images"], "14x14", "28x28"])
    assert not out.exists()


# --- 10: a byte that is not UTF-8 in a UCI text file ---------------------------------------------


def _non_utf8(root: Path) -> int:
    """Put byte 0xff into line 5 of data.txt; return its byte offset in the file."""
    folder = _uci(root)
    data = (folder / "data.txt").read_bytes()
    lines = data.split(b"\n")
    offset = sum(len(line) + 1 for line in lines[:4]) + 3
    (folder / "data.txt").write_bytes(data[:offset] + b"\xff" + data[offset + 1:])
    return offset


def test_uci_non_utf8_byte_names_file_line_and_offset(tmp_path: Path) -> None:
    offset = _non_utf8(tmp_path)
    with pytest.raises(CorruptDataError) as info:
        load_dataset("uci_concrete", tmp_path)
    message = str(info.value)
    assert "data.txt, line 5" in message and f"byte offset {offset}" in message
    assert "0xff" in message and "UTF-8" in message


def test_uci_non_utf8_byte_in_a_real_process(paths) -> None:
    root, out = paths
    _non_utf8(root)
    done = subprocess.run(
        [sys.executable, "-c", "from samt.cli import run_main; run_main()",
         *_argv(root, out, UCI_ARGS)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "data.txt, line 5" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


# --- 11: optimizer options that pass the checks but fail when used ------------------------------

OPTION_CASES = {
    "prodigy-d-coef-text": (["optimizer=prodigy", "+optimizer.d_coef=fast"],
                            ["optimizer.d_coef='fast'", "a number", "1.0"]),
    "prodigy-slice-p-zero": (["optimizer=prodigy", "+optimizer.slice_p=0"],
                             ["optimizer.slice_p=0", ">= 1"]),
    "prodigy-beta3-text": (["optimizer=prodigy", "+optimizer.beta3=abc"],
                           ["optimizer.beta3='abc'", "test step", "allowed"]),
    "schedulefree-r-text": (["optimizer=schedulefree_adamw", "+optimizer.r=abc"],
                            ["optimizer.r='abc'", "a number", "0.0"]),
    "adam-capturable-cpu": (["+optimizer.capturable=true"],
                            ["optimizer.capturable=True", "CUDA", "false"]),
    "adam-differentiable": (["+optimizer.differentiable=true"],
                            ["optimizer.differentiable=True", "allowed: false"]),
    "sgd-maximize-text": (["optimizer=sgd", "+optimizer.maximize=1"],
                          ["optimizer.maximize=1", "true or false"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_optimizer_option_failing_at_the_first_step_is_refused_up_front(case, paths, capsys):
    args, needles = OPTION_CASES[case]
    root, out = paths
    code = run_cli(_argv(root, out, args))
    _refused(capsys, code, needles)
    assert not out.exists()  # refused before any folder output: nothing left behind


def test_unknown_prodigy_option_still_names_the_rejection(paths, capsys) -> None:
    root, out = paths
    code = run_cli(_argv(root, out, ["optimizer=prodigy", "+optimizer.foo=1"]))
    _refused(capsys, code, ["optimizer='prodigy'", "options were rejected", "'foo'"])


@pytest.mark.parametrize("args", [["optimizer=prodigy", "+optimizer.d_coef=0.5",
                                   "+optimizer.slice_p=2"],
                                  ["optimizer=schedulefree_adamw", "+optimizer.r=0.5"],
                                  ["+optimizer.amsgrad=true", "+optimizer.foreach=null"]])
def test_valid_extra_optimizer_options_still_train(args, paths) -> None:
    root, out = paths
    assert run_cli(_argv(root, out, args)) is None
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# --- 12: seeds out of range ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**64, 2**63])
def test_seed_beyond_int64_is_refused(seed: int, paths, capsys) -> None:
    root, out = paths
    code = run_cli(_argv(root, out, [f"seed={seed}"]))
    _refused(capsys, code, [f"seed={seed}", "0..9223372036854775807"])
    assert not out.exists()


def test_largest_seed_trains(paths) -> None:
    root, out = paths
    assert run_cli(_argv(root, out, [f"seed={2**63 - 1}"])) is None
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# --- 13: samt-report on malformed run folders ----------------------------------------------------


def _report_run(folder: Path, seed: int = 0) -> Path:
    """A minimal completed digits/adam run folder in the documented format."""
    folder.mkdir(parents=True)
    cfg = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "hidden": [4]},
           "optimizer": {"name": "adam", "label": "adam", "lr": 0.001}, "seed": seed,
           "epochs": 1}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.csv").write_text(
        "epoch,train_loss,train_metric,test_loss,test_metric,epoch_time_s,wall_time_s,"
        "iterations,param_updates,skipped\n1,0.5,90.0,0.5,90.0,1.0,1.0,10,20,0\n")
    summary = {"status": "completed", "dataset": "digits", "model": "mlp", "optimizer": "adam",
               "label": "adam", "seed": seed, "epochs": 1, "epochs_completed": 1,
               "error": None, "metric": "accuracy", "higher_is_better": True,
               "final": {"train_loss": 0.5, "train_metric": 90.0, "test_loss": 0.5,
                         "test_metric": 90.0},
               "best_test_metric": 90.0, "best_epoch": 1, "wall_time_s": 1.0,
               "iterations": 10, "param_updates": 20}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _summary_null(folder: Path) -> None:
    (folder / "summary.json").write_text("null")


def _config_a_string(folder: Path) -> None:
    (folder / "config.yaml").write_text('"hello"\n')


def _config_empty(folder: Path) -> None:
    (folder / "config.yaml").write_text("")


def _final_a_string(folder: Path) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "final": "oops"}))


def _summary_a_list(folder: Path) -> None:
    (folder / "summary.json").write_text("[1, 2]")


def _metrics_without_epoch(folder: Path) -> None:
    (folder / "metrics.csv").write_text("a,b\n1,2\n")


MALFORMED = {"summary-null": (_summary_null, "summary.json"),
             "summary-list": (_summary_a_list, "summary.json"),
             "config-string": (_config_a_string, "config.yaml"),
             "config-empty": (_config_empty, "config.yaml"),
             "final-string": (_final_a_string, "final"),
             "metrics-no-epoch": (_metrics_without_epoch, "metrics.csv")}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_report_skips_one_malformed_folder_with_one_warning(case, tmp_path, capsys) -> None:
    break_it, reason = MALFORMED[case]
    _report_run(tmp_path / "runs" / "good")
    bad = _report_run(tmp_path / "runs" / "bad", seed=1)
    break_it(bad)
    out = tmp_path / "out"
    assert report_main([str(tmp_path / "runs"), "--out", str(out), "--formats", "csv"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(bad) in warnings[0] and reason in warnings[0], captured.err
    assert "1 runs" in captured.out and "1 unreadable" in captured.out
    runs = (out / "all_runs.csv").read_text()
    assert str(bad) not in runs and str(tmp_path / "runs" / "good") in runs
    aggregates = (out / "aggregates.csv").read_text().splitlines()
    assert len(aggregates) == 2 and "None" not in aggregates[1]  # one group: digits / mlp


def test_report_out_naming_a_file_is_exit_2(tmp_path, capsys) -> None:
    _report_run(tmp_path / "runs" / "good")
    target = tmp_path / "a_file"
    target.write_text("keep me\n")
    assert report_main([str(tmp_path / "runs"), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "samt-report: error:" in err and str(target) in err and "folder" in err
    assert "Traceback" not in err and target.read_text() == "keep me\n"


# --- 15: a checkpoint missing keys ---------------------------------------------------------------


def test_folder_plan_names_missing_checkpoint_keys(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "epoch": 2, "rows": "oops"}, path)
    assert load_checkpoint(path)["epoch"] == 2  # the plain reader still reads it
    with pytest.raises(CheckpointError) as info:
        RunFolder(tmp_path).plan({"resume": "auto"}, "cpu")
    message = str(info.value)
    assert str(path) in message and "missing keys: config, device, model" in message
    assert "rows (str, expected list)" in message and "resume=false" in message
    assert path.is_file()


def test_checkpoint_missing_keys_through_the_cli_keeps_the_file(paths, capsys) -> None:
    root, out = paths
    out.mkdir()
    torch.save({"format": 1, "epoch": 2}, out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    code = run_cli(_argv(root, out, []))
    _refused(capsys, code, [str(out / "checkpoint.pt"), "missing", "config", "resume=false"])
    assert (out / "checkpoint.pt").read_bytes() == before


# --- 18: prepared files respect the umask --------------------------------------------------------


@pytest.fixture
def umask():
    """Set the process umask for one test (returns a setter); the old one is put back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_prepared_files_get_the_umask_mode(mask, tmp_path, monkeypatch, umask) -> None:
    source = tmp_path / "shared"
    write_idx_dataset(source / "KMNIST" / "raw")
    monkeypatch.setenv("SAMT_DATA_ROOT", str(source))
    umask(mask)
    folder = prepare_dataset("kmnist", tmp_path / "data")
    modes = {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {0o666 & ~mask}


def test_run_folder_files_get_the_umask_mode(tmp_path, umask) -> None:
    umask(0o022)
    write_atomic(tmp_path / "summary.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
