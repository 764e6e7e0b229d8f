"""``meta_trace``: in hypergradient mode, each block's meta-gradient pairs the fresh gradient
``g'`` with the decayed trace ``u_t = g_t + d * u_{t-1}`` of the block's visit gradients instead
of the last one alone; ``0`` is the one-step hypergradient (the default, unchanged)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_samt_invariants import CE, batch, make_mlp, perturb_meta

from samt.optim import SAMT

DECAY = 0.8


def make(model: torch.nn.Module, trace: float, step_type: str = "element") -> SAMT:
    torch.manual_seed(0)  # the same eta-model initialization for every optimizer
    opt = SAMT(model, CE, meta_mode="hypergradient", meta_trace=trace, meta_optimizer="sgd",
               meta_lr=0.1, step_type=step_type, eta0=0.1, eta_max=0.5, eta_hidden=6)
    perturb_meta(opt, scale=0.4)
    for meta_opt in opt.meta_optimizers:  # frozen meta-parameters: both take the same steps
        meta_opt.param_groups[0]["lr"] = 0.0
    return opt


def kept(opt: SAMT) -> dict[int, list[torch.Tensor]]:
    return {k: [g.clone() for g in visit.grads] for k, visit in opt._prev.items()}


@pytest.mark.parametrize("step_type", ["scalar", "element"])
def test_the_kept_trace_is_the_decayed_sum_of_the_visit_gradients(step_type):
    base = make_mlp((4, 5, 5, 3))
    traced_model, plain_model = copy.deepcopy(base), copy.deepcopy(base)
    traced, plain = make(traced_model, DECAY, step_type), make(plain_model, 0.0, step_type)
    expected: dict[int, list[torch.Tensor]] = {}
    for t in range(4):
        x, y = batch(seed=10 + t)
        traced.step(x, y)
        plain.step(x, y)
        for a, b in zip(traced_model.parameters(), plain_model.parameters(), strict=True):
            assert torch.equal(a, b), "the trace changes meta-gradients only, not the steps"
        visit_grads = kept(plain)  # without a trace the kept tensors are the visit's gradients
        assert len(visit_grads) == 3
        for k, grads in visit_grads.items():
            expected[k] = ([g + DECAY * u for g, u in zip(grads, expected[k], strict=True)]
                           if k in expected else grads)
        for k, trace in kept(traced).items():
            for got, want in zip(trace, expected[k], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_the_meta_gradient_pairs_the_fresh_gradient_with_the_trace():
    """Same state, once with the trace kept and once with the plain optimizer given that trace
    by hand: the next step's meta-gradients are equal, and differ from the plain ones."""
    base = make_mlp((4, 5, 5, 3))
    traced_model, plain_model = copy.deepcopy(base), copy.deepcopy(base)
    traced, plain = make(traced_model, DECAY), make(plain_model, 0.0)
    for t in range(3):
        x, y = batch(seed=10 + t)
        traced.step(x, y)
        plain.step(x, y)
    handed_model, handed = copy.deepcopy((plain_model, plain))
    for k, trace in kept(traced).items():
        handed._prev[k].grads = trace
    x, y = batch(seed=20)
    for opt in (traced, plain, handed):
        opt.step(x, y)
    want = dict(handed.meta.named_parameters())
    other = dict(plain.meta.named_parameters())
    checked = differs = 0
    for name, p in traced.meta.named_parameters():
        if p.grad is None:
            continue
        torch.testing.assert_close(p.grad, want[name].grad, rtol=1e-10, atol=1e-14)
        checked += 1
        differs += not torch.allclose(p.grad, other[name].grad, rtol=1e-6, atol=0.0)
    assert checked and differs, "degenerate test: no meta-gradient, or the trace changed none"


def test_zero_is_the_one_step_hypergradient_bit_for_bit():
    base = make_mlp((4, 5, 3))
    runs = []
    for options in ({}, {"meta_trace": 0.0}):
        model = copy.deepcopy(base)
        torch.manual_seed(0)
        opt = SAMT(model, CE, meta_mode="hypergradient", meta_optimizer="sgd", meta_lr=0.1,
                   eta_hidden=6, **options)
        for t in range(3):
            opt.step(*batch(seed=10 + t))
        runs.append([p.detach().clone() for p in list(model.parameters())
                     + list(opt.meta.parameters())])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_a_resumed_run_keeps_its_trace():
    base = make_mlp((4, 5, 3))
    model = copy.deepcopy(base)
    opt = make(model, DECAY)
    for t in range(2):
        opt.step(*batch(seed=10 + t))
    twin_model = copy.deepcopy(model)
    twin = make(twin_model, DECAY)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for a in (opt, twin):
        a.step(*batch(seed=30))
    for a, b in zip(model.parameters(), twin_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k, trace in kept(opt).items():
        for a, b in zip(trace, twin._prev[k].grads, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("bad, message", [
    ({"meta_trace": 1.0}, "meta_trace must lie in [0, 1)"),
    ({"meta_trace": -0.1}, "meta_trace must lie in [0, 1)"),
    ({"meta_trace": 0.5, "meta_mode": "exact"}, "needs meta_mode hypergradient"),
])
def test_the_constructor_rejects_bad_traces(bad, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        SAMT(make_mlp((4, 5, 3)), CE, **{"meta_mode": "hypergradient", **bad})

