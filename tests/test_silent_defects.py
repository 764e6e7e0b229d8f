"""Defects that went by silently: a changed checkpoint resumed from, Dropout1d on 2-D input
masking single entries, a run without a single applied update called completed, repeated
features, a NaN report target, a state-dict mismatch cut to its first line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from helpers import error_lines
from torch import nn
from torch.nn import functional as F

import samt.train.runner
from samt.optim import SAMT
from samt.report.cli import main as report_main
from samt.train.checkpoint import load_checkpoint, save_checkpoint


def _args(tmp_path: Path, run: Path, *extra: str) -> list[str]:
    return ["dataset=digits", "optimizer=adam", "model.hidden=[8]", "epochs=1", "device=cpu",
            "progress=false", f"data.root={tmp_path}", f"hydra.run.dir={run}", *extra]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


def _flip_a_weight_bit(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor stored in the torch zip ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0x04
    path.write_bytes(bytes(data))


def test_a_bit_flipped_checkpoint_is_refused_not_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, run)) is None
    checkpoint = run / "checkpoint.pt"
    _flip_a_weight_bit(checkpoint)
    torch.load(checkpoint, weights_only=True)  # torch itself reads the changed file
    (run / "summary.json").unlink()  # as if killed after the checkpoint: it would resume
    before = checkpoint.read_bytes()
    assert run_cli(_args(tmp_path, run)) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "checkpoint.pt is corrupt: its content does not match the checksum" in error
    assert checkpoint.read_bytes() == before  # kept, for the user to look at
    other = tmp_path / "other"
    assert run_cli(_args(tmp_path, other, "optimizer=samt_e",
                         f"optimizer.meta_init={checkpoint}")) == 2
    assert "is corrupt" in error_lines(capsys.readouterr().err)[0]


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path):
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, run)) is None
    state = load_checkpoint(run / "checkpoint.pt")
    assert len(state.pop("checksum")) == 64
    torch.save(state, run / "old.pt")
    assert load_checkpoint(run / "old.pt")["epoch"] == 1


def test_a_state_dict_mismatch_names_the_tensor(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, run, "epochs=2")) is None
    state = load_checkpoint(run / "checkpoint.pt")
    state["model"]["1.weight"] = torch.zeros(3, 3)
    del state["checksum"]
    save_checkpoint(run / "checkpoint.pt", state)
    (run / "summary.json").unlink()
    assert run_cli(_args(tmp_path, run, "epochs=2")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "size mismatch for 1.weight" in error and "torch.Size([3, 3])" in error


def test_dropout1d_on_2d_input_drops_whole_rows_as_torch_does():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout1d(0.5), nn.Linear(6, 3)).double()
    seen: list[torch.Tensor] = []
    model[1].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach()))
    opt = SAMT(model, F.cross_entropy, step_type="scalar", eta0=0.05, eta_max=0.3)
    x = torch.rand(16, 6, dtype=torch.float64) + 0.1
    opt.step(x, torch.randint(0, 3, (16,)))
    rows_dead = (seen[0] == 0).all(dim=1)
    assert torch.equal(rows_dead, (seen[0] == 0).any(dim=1))  # whole rows or nothing
    assert rows_dead.any() and not rows_dead.all()
    for later in seen[1:]:  # every later pass of the step reuses the mask
        assert torch.equal((later == 0).all(dim=1), rows_dead)


def test_a_run_without_a_single_applied_update_is_diverged(tmp_path, monkeypatch):
    def nan_loss(task: str):
        return lambda out, y: (out * float("nan")).sum()

    monkeypatch.setattr(samt.train.runner, "loss_function", nan_loss)
    run = tmp_path / "run"
    assert run_cli(_args(tmp_path, run, "max_consecutive_skips=1000")) is None
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["param_updates"] == 0
    assert "no update was applied" in summary["error"]


def test_repeated_features_are_refused(tmp_path, capsys):
    assert run_cli(_args(tmp_path, tmp_path / "run", "optimizer=samt_e",
                         "optimizer.features=[mean,var,mean]")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "optimizer.features=['mean', 'var', 'mean'] is invalid: lists mean more than once" \
        in error


@pytest.mark.parametrize("target", ["digits=nan", "inf", "digits=-inf"])
def test_a_report_target_must_be_finite(tmp_path, capsys, target):
    with pytest.raises(SystemExit) as exc:
        report_main([str(tmp_path), "--target", target])
    assert exc.value.code == 2
    assert "expected a finite number" in capsys.readouterr().err
