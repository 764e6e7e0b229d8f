"""Peer optimizers: Schedule-Free AdamW, Prodigy and hypergradient SGD train end to end through
the runner; hypergradient SGD's learning rate follows g_t . g_{t-1}; Schedule-Free AdamW is
switched to its averaged weights for evaluation and back for training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import digits_config

import samt.train.runner as runner
from samt.optim.hypergradient_sgd import HypergradientSGD
from samt.train import Run, run_training
from samt.train.checkpoint import CHECKPOINT, load_checkpoint


def _config(root: Path, *overrides: str) -> dict:
    return digits_config(root, "device.threads=1", "model.hidden=[16]", "epochs=2", *overrides)


@pytest.mark.parametrize("optimizer", ["schedulefree_adamw", "prodigy", "hypergradient_sgd"])
def test_peer_trains_digits_through_the_runner(optimizer, tmp_path):
    summary = run_training(_config(tmp_path, f"optimizer={optimizer}"), tmp_path / "run")
    assert summary["status"] == "completed"
    assert summary["label"] == optimizer
    assert summary["final"]["test_metric"] > 25.0  # digits, chance is 10 %
    rows = load_checkpoint(tmp_path / "run" / CHECKPOINT)["rows"]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)["optimizer"]
    if optimizer == "hypergradient_sgd":  # the learning rate is trained state
        assert state["optimizer"]["param_groups"][0]["lr"] != pytest.approx(0.1, abs=1e-6)


def test_hypergradient_sgd_lr_follows_the_sign_of_consecutive_gradients():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = HypergradientSGD([w], lr=0.1, hyper_lr=0.01)

    def step(grad: list[float]) -> float:
        w.grad = torch.tensor(grad)
        opt.step()
        return opt.param_groups[0]["lr"]

    assert step([1.0, 2.0]) == pytest.approx(0.1)      # no previous gradient: lr unchanged
    assert w.detach().tolist() == pytest.approx([-0.1, -0.2])
    lr = step([3.0, -1.0])                             # g2 . g1 = 1 > 0: lr grows
    assert lr == pytest.approx(0.1 + 0.01 * 1.0)
    assert w.detach().tolist() == pytest.approx([-0.1 - lr * 3.0, -0.2 + lr * 1.0])
    lr = step([-3.0, 0.0])                             # g3 . g2 = -9 < 0: lr shrinks
    assert lr == pytest.approx(0.11 - 0.01 * 9.0)
    assert step([-3.0, 0.0]) == pytest.approx(lr + 0.01 * 9.0)  # aligned again: grows back
    frozen = HypergradientSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, hyper_lr=0.0)
    for g in ([1.0], [-1.0]):
        frozen.param_groups[0]["params"][0].grad = torch.tensor(g)
        frozen.step()
    assert frozen.param_groups[0]["lr"] == 0.1         # hyper_lr 0 is plain SGD


def test_schedulefree_evaluates_averaged_weights_and_trains_on_the_others(tmp_path,
                                                                          monkeypatch):
    from schedulefree import AdamWScheduleFree

    events: list[tuple[str, bool]] = []

    def mode() -> bool:
        return bool(run.optimizer.optimizer.param_groups[0]["train_mode"])

    def spy(name, original):
        def wrapper(*args, **kwargs):
            if name in ("train", "eval"):
                events.append((name, None))
                return original(*args, **kwargs)
            events.append((name, mode()))
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(AdamWScheduleFree, "train", spy("train", AdamWScheduleFree.train))
    monkeypatch.setattr(AdamWScheduleFree, "eval", spy("eval", AdamWScheduleFree.eval))
    monkeypatch.setattr(AdamWScheduleFree, "step", spy("step", AdamWScheduleFree.step))
    monkeypatch.setattr(runner, "evaluate", spy("evaluate", runner.evaluate))
    run = Run(_config(tmp_path, "optimizer=schedulefree_adamw"), tmp_path / "run")
    assert run.execute()["status"] == "completed"

    collapsed = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    epoch = [("train", None), ("step", True), ("eval", None), ("evaluate", False)]
    assert collapsed == epoch * 2
    assert sum(e == ("evaluate", False) for e in events) == 4  # train and test set, 2 epochs
