"""The batched meta step (one sync and one multi-tensor meta step per iteration) computes what
the per-block reference path (``opt.batch_meta = False``: one check, backward and meta step per
block) computes: same weights, meta-parameters, meta-optimizer state and statistics, float64,
over several steps, including skipped blocks and a checkpoint round trip."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import random_batches, tanh_mlp
from torch import nn

from samt.optim import SAMT

F64 = torch.float64


def make_model(seed: int = 0) -> nn.Sequential:
    return tanh_mlp(5, 7, 6, 6, 3, seed=seed)


def batches(n: int = 5, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return random_batches(n, 9, 5, seed=seed)


class FlakyLoss:
    """Cross-entropy that returns NaN on the listed calls (a non-finite pass mid-iteration)."""

    def __init__(self, bad_calls: tuple[int, ...] = ()):
        self.calls, self.bad = 0, set(bad_calls)

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = nn.functional.cross_entropy(out, y)
        return loss * math.nan if self.calls in self.bad else loss


def run_pair(bad_calls: tuple[int, ...] = (), steps: int = 5, **options) -> tuple[SAMT, SAMT,
                                                                               nn.Module,
                                                                               nn.Module]:
    """The same run on the batched and the per-block path."""
    out = []
    for batched in (True, False):
        model = make_model()
        opt = SAMT(model, FlakyLoss(bad_calls), eta_hidden=6, **options)
        with torch.no_grad():  # break the symmetric init so every path of the eta model matters
            g = torch.Generator().manual_seed(3)
            for p in opt.meta.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        opt.batch_meta = batched
        for x, y in batches(steps):
            opt.step(x, y)
        out += [opt, model]
    return out[0], out[2], out[1], out[3]


def assert_same(fast: SAMT, ref: SAMT, fast_model: nn.Module, ref_model: nn.Module
                ) -> dict[str, float]:
    """Same weights, meta-parameters, meta-optimizer state and epoch statistics (returned)."""
    for a, b in zip(fast_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(fast.meta.parameters(), ref.meta.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for oa, ob in zip(fast.meta_optimizers, ref.meta_optimizers, strict=True):
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert sa.keys() == sb.keys()
        for key in sa:
            for name in sa[key]:
                torch.testing.assert_close(sa[key][name], sb[key][name], rtol=1e-12, atol=1e-14)
    sa, sb = fast.epoch_stats(), ref.epoch_stats()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key] == pytest.approx(sb[key], rel=1e-12, abs=1e-14, nan_ok=True), key
    assert (fast.param_updates, fast.skipped_total) == (ref.param_updates, ref.skipped_total)
    return sa


@pytest.mark.parametrize("meta_mode", ["exact", "lookahead"])
@pytest.mark.parametrize(("step_type", "meta_optimizer", "group_size"), [
    ("element", "adam", 1), ("scalar", "adam", 1), ("row", "sgd", 1), ("column", "adam", 2),
])
def test_batched_meta_step_equals_per_block_path(meta_mode, step_type, meta_optimizer,
                                                 group_size):
    fast, ref, fm, rm = run_pair(step_type=step_type, meta_mode=meta_mode, group_size=group_size,
                                 meta_optimizer=meta_optimizer, meta_lr=0.05)
    assert_same(fast, ref, fm, rm)
    assert fast.iteration == 5


@pytest.mark.parametrize(("meta_mode", "bad_calls"), [
    ("exact", (6, 11)),      # the first pass of an iteration: block 3's update is skipped
    ("exact", (7, 13)),      # a pass giving block 3's (block 2's) g' and the next block's g
    ("lookahead", (5, 10)),  # the lookahead pass (all meta-updates), a later block's pass
])
def test_batched_meta_step_skips_like_per_block_path(meta_mode, bad_calls):
    """A NaN loss mid-iteration skips a block's update and another's meta-update alike.

    Per iteration (4 blocks), exact mode calls the loss 5 times (one pass per block, then the
    input block's meta pass), lookahead 4 (the lookahead pass also gives block 3's gradient).
    """
    fast, ref, fm, rm = run_pair(bad_calls=bad_calls, meta_mode=meta_mode, meta_lr=0.05)
    stats = assert_same(fast, ref, fm, rm)
    assert any(v > 0 for k, v in stats.items() if k.endswith("_skipped"))


@pytest.mark.parametrize("options", [
    {"meta_mode": "hypergradient"}, {"eta_shared": True}, {"meta_interval": 2},
])
def test_unbatched_cases_unchanged(options):
    """Hypergradient mode and a shared eta model keep one meta step per block; with
    ``meta_interval`` the batched step runs on meta iterations only."""
    fast, ref, fm, rm = run_pair(meta_lr=0.05, **options)
    assert_same(fast, ref, fm, rm)


def test_batched_checkpoint_round_trip_and_format():
    """The per-block meta-optimizer state is what the batched step advances: a resumed run
    continues exactly, and the state dict keeps one meta-optimizer entry per block."""
    model = make_model()
    opt = SAMT(model, nn.functional.cross_entropy, eta_hidden=6, meta_lr=0.05)
    data = batches(6)
    for x, y in data[:3]:
        opt.step(x, y)
    state = copy.deepcopy(opt.state_dict())
    assert len(state["meta_optimizers"]) == len(opt.blocks)
    assert all(s["state"] for s in state["meta_optimizers"])
    model2 = copy.deepcopy(model)
    opt2 = SAMT(model2, nn.functional.cross_entropy, eta_hidden=6, meta_lr=0.05)
    opt2.load_state_dict(state)
    for x, y in data[3:]:
        opt.step(x, y)
        opt2.step(x, y)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opt.meta.parameters(), opt2.meta.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("meta_mode", ["exact", "hypergradient"])
def test_combined_meta_step_equals_each_blocks_own_optimizer_step(monkeypatch, meta_mode):
    """The meta step (``samt.optim.meta_step.MetaStep``: torch.optim's functional fused Adam
    on the blocks' own state, or one combined ``Optimizer.step`` sharing it) gives what each
    block's own optimizer's ``step()`` gives."""
    from samt.optim.meta_step import MetaStep

    def own_steps(self, owners):
        for k in owners:
            self.optimizers[k].step()

    runs = [run_pair(meta_mode=meta_mode, meta_lr=0.05)[::2]]
    monkeypatch.setattr(MetaStep, "step", own_steps)  # Optimizer.step, one block at a time
    runs.append(run_pair(meta_mode=meta_mode, meta_lr=0.05)[::2])
    _assert_same_runs(runs)


@pytest.mark.parametrize("meta_mode", ["exact", "hypergradient"])
def test_functional_adam_meta_step_equals_the_combined_optimizer_step(monkeypatch, meta_mode):
    """The functional Adam call gives what ``Optimizer.step`` of the combined optimizer gives."""
    import samt.optim.meta_step as meta_step

    runs = []
    for functional in (True, False):
        monkeypatch.setattr(meta_step, "FUNCTIONAL_ADAM", functional)
        runs.append(run_pair(meta_mode=meta_mode, meta_lr=0.05)[::2])
    _assert_same_runs(runs)


def _assert_same_runs(runs: list) -> None:
    """Both (optimizer, model) runs hold equal weights, meta-parameters and meta-optimizer
    state."""
    (fast, fm), (ref, rm) = runs
    for a, b in zip([*fm.parameters(), *fast.meta.parameters()],
                    [*rm.parameters(), *ref.meta.parameters()], strict=True):
        assert torch.equal(a, b)
    for oa, ob in zip(fast.meta_optimizers, ref.meta_optimizers, strict=True):
        assert len(oa.state) == len(ob.state) > 0
        for sa, sb in zip(oa.state.values(), ob.state.values(), strict=True):
            assert all(torch.equal(sa[n], sb[n]) for n in sa)
