"""``meta_anchor``: the meta-loss gains ``rho/2 * sum(((eta - eta0) * g)^2)`` over each block's
weights. Its meta-gradient is checked against autograd on that term alone, on the analytic
(sigmoid) and the autograd (tanh) paths and in the exact and hypergradient modes; its effect, a
step held nearer ``eta0``, is checked over a short run."""

from __future__ import annotations

import copy

import pytest
import torch
from test_samt_invariants import CE, batch, make_mlp, perturb_meta

from samt.optim import SAMT

RHO = 0.7


def make(model: torch.nn.Module, anchor: float, step_type: str, meta_mode: str,
         projection: str, meta_lr: float = 0.0) -> SAMT:
    torch.manual_seed(0)  # the same eta-model initialization for every optimizer
    opt = SAMT(model, CE, meta_mode=meta_mode, meta_anchor=anchor, meta_optimizer="sgd",
               meta_lr=0.1, step_type=step_type, eta0=0.1, eta_max=0.5, eta_hidden=6,
               projection=projection, tanh_c=0.5)
    perturb_meta(opt, scale=0.4)
    for meta_opt in opt.meta_optimizers:  # lr 0: both optimizers keep the same meta-parameters
        meta_opt.param_groups[0]["lr"] = meta_lr
    return opt


def record_visits(opt: SAMT) -> list[tuple[int, list[torch.Tensor], list[torch.Tensor]]]:
    """Wrap ``opt._meta_update``: record each visit's block, features and gradients (copies,
    taken before the meta-update overwrites the gradients)."""
    calls: list[tuple[int, list[torch.Tensor], list[torch.Tensor]]] = []
    original = opt._meta_update

    def spy(k, visit, new_grads, meta_loss):
        calls.append((k, [p.clone() for p in visit.phis], [g.clone() for g in visit.grads]))
        return original(k, visit, new_grads, meta_loss)

    opt._meta_update = spy
    return calls


def block_meta_params(opt: SAMT, k: int) -> list[torch.nn.Parameter]:
    return opt._meta_params[k]


@pytest.mark.parametrize("step_type, meta_mode, projection", [
    ("scalar", "hypergradient", "sigmoid"),
    ("element", "hypergradient", "sigmoid"),
    ("row", "hypergradient", "sigmoid"),
    ("element", "exact", "sigmoid"),
    ("scalar", "exact", "sigmoid"),
    ("element", "hypergradient", "tanh"),   # autograd path
])
def test_the_anchor_adds_the_gradient_of_its_penalty(step_type, meta_mode, projection):
    base = make_mlp((4, 5, 5, 3))
    anchored_model, plain_model = copy.deepcopy(base), copy.deepcopy(base)
    anchored = make(anchored_model, RHO, step_type, meta_mode, projection)
    plain = make(plain_model, 0.0, step_type, meta_mode, projection)
    for t in range(2):  # hypergradient mode meta-updates from the second step on
        calls = record_visits(anchored)
        x, y = batch(seed=10 + t)
        anchored.step(x, y)
        plain.step(x, y)
        for a, b in zip(anchored_model.parameters(), plain_model.parameters(), strict=True):
            assert torch.equal(a, b), "the anchor changes meta-gradients only, not the steps"
    assert len(calls) == 3, "one meta-update per block in the last step"
    checked = 0
    for k, phis, grads in calls:
        block = anchored.blocks[k]
        grad_of = dict(zip(map(id, block.params), grads, strict=True))
        penalty = torch.zeros((), dtype=torch.float64)
        for unit, step in zip(block.units, anchored._unit_steps(k, phis), strict=True):
            displacement = (step.raw - anchored.eta0) * grad_of[id(unit.weight)]
            penalty = penalty + 0.5 * RHO * displacement.square().sum()
        params = block_meta_params(anchored, k)
        expected = torch.autograd.grad(penalty, params, allow_unused=True)
        plain_params = block_meta_params(plain, k)
        for p, q, want in zip(params, plain_params, expected, strict=True):
            if want is None:
                continue
            got = p.grad - q.grad
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
            checked += int(want.abs().max() > 1e-8)
    assert checked >= 3, "the penalty's gradient is not trivially zero"


def test_anchor_zero_is_the_plain_meta_gradient():
    base = make_mlp((4, 5, 3))
    a_model, b_model = copy.deepcopy(base), copy.deepcopy(base)
    a = make(a_model, 0.0, "element", "hypergradient", "sigmoid", meta_lr=0.1)
    torch.manual_seed(0)  # the default (no meta_anchor key), built as make() builds
    b = SAMT(b_model, CE, meta_mode="hypergradient", meta_optimizer="sgd", meta_lr=0.1,
             step_type="element", eta0=0.1, eta_max=0.5, eta_hidden=6, projection="sigmoid",
             tanh_c=0.5)
    perturb_meta(b, scale=0.4)
    for t in range(3):
        x, y = batch(seed=20 + t)
        a.step(x, y)
        b.step(x, y)
    for p, q in zip(a_model.parameters(), b_model.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(a.meta.parameters(), b.meta.parameters(), strict=True):
        assert torch.equal(p, q)


def mean_step_gap(anchor: float) -> float:
    """Mean |applied step - eta0| over the last steps of a short run with a fast meta-optimizer."""
    model = make_mlp((4, 8, 3))
    opt = make(model, anchor, "scalar", "hypergradient", "sigmoid", meta_lr=2.0)
    gaps = []
    for t in range(40):
        x, y = batch(n=16, seed=100 + t)
        opt.step(x, y)
        if t >= 30:
            steps = [s.raw.detach() for k in range(len(opt.blocks))
                     for s in opt._unit_steps(k, opt._prev[k].phis)]
            gaps.append(torch.stack([(s - opt.eta0).abs().mean() for s in steps]).mean())
    return float(torch.stack(gaps).mean())


def test_a_strong_anchor_holds_the_steps_near_eta0():
    free, held = mean_step_gap(0.0), mean_step_gap(100.0)
    assert free > 0.01, f"the free steps should drift from eta0 (gap {free:.4f})"
    assert held < 0.25 * free, f"anchored gap {held:.4f} vs free {free:.4f}"


def test_a_negative_anchor_is_refused():
    with pytest.raises(ValueError, match="meta_anchor"):
        SAMT(make_mlp((4, 5, 3)), CE, meta_anchor=-1.0)
