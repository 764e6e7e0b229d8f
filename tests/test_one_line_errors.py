"""Inputs that gave a traceback (or ran out of memory) now give one line ``samt-run: error: ...``
naming the key, exit 2, and leave nothing behind: path parts longer than a file name may be,
sizes that cannot fit in memory, a config group set to null, broken yaml in ``--config-dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

import samt.train.fits

LONG = "a" * 300


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["dataset=digits", "model.hidden=[8]", "epochs=1", "device=cpu", "progress=false",
            f"data.root={tmp_path}", *extra]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("samt-run: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize("key", ["hydra.run.dir", "data.root", "optimizer.meta_init"])
def test_a_path_part_longer_than_a_file_name_is_one_line(tmp_path, capsys, key):
    value = f"{tmp_path}/{LONG}/x"
    run = [] if key == "hydra.run.dir" else [f"hydra.run.dir={tmp_path / 'run'}"]
    extra = ["optimizer=samt_e"] if key == "optimizer.meta_init" else []
    assert run_cli(_args(tmp_path, *extra, f"{key}={value}", *run)) == 2
    error = _one_error(capsys)
    assert f"{key}=" in error and "has 300 bytes, more than the 255" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_sweep_folder_part_longer_than_a_file_name_is_one_line(tmp_path, capsys):
    assert run_cli(["-m", *_args(tmp_path, "seed=0,1",
                                 f"hydra.sweep.dir={tmp_path}/{LONG}")]) == 2
    assert "hydra.sweep.dir=" in _one_error(capsys)


@pytest.mark.parametrize("override, key", [
    ("model.hidden=[100000000]", "model.hidden=[100000000] is invalid: model mlp would have"),
    ("optimizer.eta_hidden=100000000", "optimizer.eta_hidden=100000000 is invalid: SAMT's eta"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating(
        tmp_path, capsys, monkeypatch, override, key):
    monkeypatch.setattr(samt.train.fits, "available_memory", lambda device: 10**9)
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, "optimizer=samt_e", override, f"hydra.run.dir={run}")) == 2
    error = _one_error(capsys)
    assert key in error and "more than the memory available" in error and "1 GB" in error
    assert not run.exists()


def test_sizes_that_fit_are_not_refused(monkeypatch):
    import torch

    monkeypatch.setattr(samt.train.fits, "available_memory", lambda device: 10**9)
    cfg = {"model": {"name": "mlp", "hidden": [400]},
           "optimizer": {"eta_hidden": 32, "features": ["mean", "var"], "combine": "convex",
                         "group_size": 1, "eta_shared": False}}
    samt.train.fits.check_fits(cfg, (784,), 10, torch.device("cpu"))


def test_more_threads_than_can_help_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, "device.threads=100000", f"hydra.run.dir={run}")) == 2
    error = _one_error(capsys)
    assert "device.threads=100000 is invalid" in error and "allowed: 1 to" in error
    assert not run.exists()


def test_a_config_group_set_to_null_is_one_line(tmp_path, capsys):
    assert run_cli(_args(tmp_path, "optimizer=null", f"hydra.run.dir={tmp_path / 'run'}")) == 2
    assert "optimizer=null is invalid: the config group optimizer needs one of its options" in \
        _one_error(capsys)


def test_broken_yaml_in_the_config_dir_is_one_line(tmp_path, capsys):
    conf = tmp_path / "myconf" / "optimizer"
    conf.mkdir(parents=True)
    (conf / "broken.yaml").write_text("lr: [1,\n  x: : :\n")
    assert run_cli(["--config-dir", str(conf.parent), *_args(
        tmp_path, "optimizer=broken", f"hydra.run.dir={tmp_path / 'run'}")]) == 2
    error = _one_error(capsys)
    assert "optimizer/broken.yaml is not valid YAML" in error and "line 2" in error
    assert not (tmp_path / "run").exists()
