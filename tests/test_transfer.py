"""Eta-model transfer: ``SAMT.save_meta`` and ``meta_init`` (SAMT reads its own file; the runner's
``optimizer.meta_init`` also a checkpoint or a run folder), clear errors for what does not fit,
the runner's ``samt_meta.pt``, and no re-application of ``meta_init`` on resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import digits_config, read_rows
from torch import nn

from samt.cli import run_job
from samt.optim import SAMT, MetaInitError, TorchOptimizerStep, read_meta
from samt.run_folder import CHECKPOINT, SAMT_META
from samt.train import Run, run_training
from samt.train.checkpoint import config_differences, load_checkpoint
from samt.train.folder import RunFolder, read_meta_source
from samt.validation import ConfigError


def _config(root: Path, *overrides: str) -> dict:
    return digits_config(root, "device.threads=1", "model.hidden=[8]", "optimizer=samt_e",
                         "epochs=1", *overrides)


def _digits_mlp(hidden: int = 8) -> nn.Sequential:
    """The runner's MLP on digits (8x8 inputs, 10 classes), same block and theta shapes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _samt(model: nn.Module, **options) -> SAMT:
    return SAMT(model, nn.functional.cross_entropy, eta0=0.1, eta_max=0.3, **options)


def _init_meta(source, optimizer) -> str:
    """The message of the ``ConfigError`` that the runner raises when ``optimizer.meta_init``
    (``source``) cannot initialize ``optimizer`` (no setup needed: ``Run.init_meta`` alone)."""
    run = Run({"optimizer": {"name": "samt", "label": "samt_e"}}, Path("unused"))
    run.optimizer = optimizer
    with pytest.raises(ConfigError) as err:
        run.init_meta(str(source))
    return str(err.value)


def _same_meta(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A finished SAMT-E run folder (digits, one epoch): checkpoint.pt and samt_meta.pt."""
    root = tmp_path_factory.mktemp("transfer")
    summary = run_training(_config(root, "seed=1"), root / "source")
    assert summary["status"] == "completed"
    return root / "source"


def test_save_meta_round_trip(tmp_path):
    torch.manual_seed(0)
    opt = _samt(_digits_mlp())
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(4):
        opt.step(x, y)
    opt.save_meta(tmp_path / "meta.pt")
    payload = torch.load(tmp_path / "meta.pt", weights_only=True)
    assert payload["format"] == "samt_meta"
    assert payload["config"]["step_type"] == "element"
    assert payload["config"]["theta_shapes"] == [[8, 64], [10, 8]]
    assert payload["config"]["iterations"] == 4

    fresh = _samt(_digits_mlp())
    assert not _same_meta(fresh.meta.state_dict(), opt.meta.state_dict())  # it did learn
    loaded = _samt(_digits_mlp(), meta_init=str(tmp_path / "meta.pt"))
    assert _same_meta(loaded.meta.state_dict(), opt.meta.state_dict())
    assert loaded.meta_init == tmp_path / "meta.pt"
    # Only the meta-parameters: a fresh meta-optimizer and fresh counters.
    assert all(not o.state_dict()["state"] for o in loaded.meta_optimizers)
    assert loaded.iteration == 0
    loaded.step(x, y)  # and it trains from there


def test_meta_init_from_checkpoint_run_folder_and_samt_meta(source):
    expected = load_checkpoint(source / CHECKPOINT)["optimizer"]["meta"]
    saved = torch.load(source / SAMT_META, weights_only=True)
    assert _same_meta(saved["meta"], expected)  # the runner's samt_meta.pt: the final meta
    # The runner's side reads a run folder, its checkpoint.pt or a save_meta file ...
    for path, read in ((source, source / CHECKPOINT), (source / CHECKPOINT, source / CHECKPOINT),
                       (source / SAMT_META, source / SAMT_META)):
        meta = read_meta_source(path)
        assert meta.file == read, path
        opt = _samt(_digits_mlp(), meta_init=meta)
        assert _same_meta(opt.meta.state_dict(), expected), path
        assert opt.meta_init == read
    # ... SAMT itself only its own file.
    opt = _samt(_digits_mlp(), meta_init=source / SAMT_META)
    assert _same_meta(opt.meta.state_dict(), expected)
    assert opt.meta_init == source / SAMT_META
    assert read_meta(source / SAMT_META).file == source / SAMT_META


def test_samt_reads_only_its_own_meta_file(source):
    """``samt.optim`` knows no run folder: a folder or a checkpoint.pt is no ``save_meta`` file,
    and its errors name the file, not a config key."""
    for path, why in ((source, "no such file"), (source / CHECKPOINT, "is not a file written by "
                                                 "SAMT.save_meta")):
        with pytest.raises(MetaInitError) as err:
            _samt(_digits_mlp(), meta_init=path)
        assert str(err.value).startswith(f"meta_init='{path}'") and why in str(err.value)
        assert "optimizer." not in str(err.value)


def test_a_folder_with_only_samt_meta_is_enough(source, tmp_path):
    shutil.copy(source / SAMT_META, tmp_path / SAMT_META)
    assert RunFolder(tmp_path).read_meta().file == tmp_path / SAMT_META
    opt = _samt(_digits_mlp(), meta_init=read_meta_source(tmp_path))
    assert opt.meta_init == tmp_path / SAMT_META


@pytest.mark.parametrize("options, hidden, mismatch", [
    ({"step_type": "scalar"}, 8, "step_type: 'element'"),
    ({"step_type": "row"}, 8, "theta_shapes"),
    ({}, 9, "theta_shapes: [[8, 64], [10, 8]]"),
    ({"features": ["mean", "var", "max", "min"]}, 8, "features"),
    ({"eta_hidden": 16}, 8, "eta_hidden: 32"),
    ({"eta_shared": True}, 8, "eta_shared: False"),
    ({"group_size": 0}, 8, "block_sizes: [1, 1]"),
    ({"projection": "tanh"}, 8, "projection: 'sigmoid'"),
])
def test_incompatible_meta_init_names_key_path_and_mismatch(source, options, hidden, mismatch):
    message = _init_meta(source, _samt(_digits_mlp(hidden), **options))
    assert message.startswith(f"optimizer.meta_init='{source}' does not fit")
    assert str(source / CHECKPOINT) in message
    assert mismatch in message
    # SAMT's own error names the file it was given and the mismatch, no config key.
    with pytest.raises(MetaInitError) as err:
        _samt(_digits_mlp(hidden), meta_init=read_meta_source(source), **options)
    assert str(err.value).startswith(f"meta_init='{source / CHECKPOINT}' does not fit")
    assert mismatch in str(err.value) and "optimizer." not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unusable_meta_init_sources(source, tmp_path):
    def error(path, **options) -> str:
        message = _init_meta(path, _samt(_digits_mlp(), **options))
        assert message.startswith(f"optimizer.meta_init='{path}'")
        return message

    assert "no such file or folder" in error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "neither checkpoint.pt nor samt_meta.pt" in error(tmp_path / "empty")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    assert "cannot be read" in error(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert "neither a samt-run checkpoint.pt nor" in error(tmp_path / "other.pt")
    torch.save({"format": 1, "config": {"optimizer": {"name": "adam", "label": "adam"}},
                "optimizer": {"optimizer": {}}}, tmp_path / "adam.pt")
    assert "optimizer 'adam', not of SAMT" in error(tmp_path / "adam.pt")
    assert "combine='fixed' learns no step sizes" in error(source, combine="fixed")
    model = _digits_mlp()
    adam = TorchOptimizerStep(model, nn.functional.cross_entropy,
                              torch.optim.Adam(model.parameters()))
    assert "has no meta-parameters" in _init_meta(source, adam)


def test_transferred_run_starts_from_the_source_steps(source, tmp_path, capsys):
    fresh = run_training(_config(tmp_path), tmp_path / "fresh")
    cfg = _config(tmp_path, f"optimizer.meta_init={source}")
    assert cfg["optimizer"]["meta_init"] == str(source)
    transferred = run_training(cfg, tmp_path / "transferred")
    assert fresh["status"] == transferred["status"] == "completed"
    a, b = read_rows(tmp_path / "fresh")[0], read_rows(tmp_path / "transferred")[0]
    assert a["b0_eta_mean"] != b["b0_eta_mean"]
    assert a["b1_eta_mean"] != b["b1_eta_mean"]
    assert (tmp_path / "transferred" / SAMT_META).is_file()
    assert f"meta_init: {source}" in (tmp_path / "transferred" / "config.yaml").read_text()

    # Through the CLI's job function: a mismatch is a user error (exit 2, one line, no files).
    bad = _config(tmp_path, f"optimizer.meta_init={source}", "model.hidden=[5]")
    with pytest.raises(SystemExit) as exit_info:
        run_job(bad, tmp_path / "bad")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"samt-run: error: optimizer.meta_init='{source}' does not fit")
    assert "theta_shapes" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_meta_init_is_applied_at_a_fresh_start_only(source, tmp_path, monkeypatch):
    copy = tmp_path / "source_copy"
    shutil.copytree(source, copy)
    cfg = _config(tmp_path, "epochs=2", f"optimizer.meta_init={copy}")
    run_training(cfg, tmp_path / "straight")

    calls = []
    original = Run.train_epoch

    def interrupt_second_epoch(self, bar):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, bar)

    monkeypatch.setattr(Run, "train_epoch", interrupt_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "resumed")
    monkeypatch.setattr(Run, "train_epoch", original)
    assert RunFolder(tmp_path / "resumed").plan(cfg, "cpu").kind == "resume"
    shutil.rmtree(copy)  # the resumption must not need (or reload) the source
    run = Run(cfg, tmp_path / "resumed")
    assert run.execute()["status"] == "completed"
    assert run.outcome == "resumed"
    assert read_rows(tmp_path / "resumed") == read_rows(tmp_path / "straight")


def test_config_comparison_new_null_keys_and_tuning():
    old = {"optimizer": {"name": "samt", "eta0": 0.1}, "tuning": {"seeds": [0]}}
    new = {"optimizer": {"name": "samt", "eta0": 0.1, "meta_init": None},
           "tuning": {"seeds": [0, 1], "optimizers": {"prodigy": {"key": "lr"}}}}
    assert config_differences(old, new) == []
    assert config_differences(old, {**new, "tuning": None}) == []
    other = {**new, "optimizer": {**new["optimizer"], "meta_init": "/runs/source"}}
    assert config_differences(old, other) == ["optimizer.meta_init: '<absent>' -> '/runs/source'"]
