"""Hypothesis properties of one SAMT step over random MLPs, step types, projections and bounds:
finite parameters, every applied step within ``[eta_min, eta_max]`` times the gradient, and only
the updated block moves (invariants 1 and 5)."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from samt.optim import SAMT

CE = nn.functional.cross_entropy
F64 = torch.float64

PROFILE = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])




@st.composite
def configs(draw):
    widths = draw(st.lists(st.integers(1, 7), min_size=0, max_size=3))
    sizes = [draw(st.integers(1, 6)), *widths, draw(st.integers(2, 4))]
    projection = draw(st.sampled_from(["sigmoid", "tanh"]))
    eta_min = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.05]))
    eta0 = eta_min + draw(st.floats(1e-3, 0.5))
    eta_max = eta0 + draw(st.floats(1e-3, 2.0))
    return {
        "sizes": sizes,
        "bias": draw(st.booleans()),
        "act": draw(st.sampled_from([nn.Tanh, nn.ReLU, nn.Sigmoid])),
        "step_type": draw(st.sampled_from(["scalar", "element", "row", "column"])),
        "projection": projection,
        "eta_min": eta_min, "eta0": eta0, "eta_max": eta_max,
        "meta_scale": draw(st.sampled_from([0.0, 0.5, 3.0])),   # move steps off eta0
        "seed": draw(st.integers(0, 2**16)),
        "batch": draw(st.integers(1, 9)),
    }


def build(cfg, **extra):
    torch.manual_seed(cfg["seed"])
    sizes, layers = cfg["sizes"], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, bias=cfg["bias"]))
        if i < len(sizes) - 2:
            layers.append(cfg["act"]())
    model = nn.Sequential(*layers).to(F64)
    x = torch.randn(cfg["batch"], sizes[0], dtype=F64)
    y = torch.randint(0, sizes[-1], (cfg["batch"],))
    opt = SAMT(model, CE, step_type=cfg["step_type"], projection=cfg["projection"],
               eta0=cfg["eta0"], eta_min=cfg["eta_min"], eta_max=cfg["eta_max"], **extra)
    with torch.no_grad():
        for p in opt.meta.parameters():
            p.add_(cfg["meta_scale"] * torch.randn_like(p))
    return model, opt, x, y


def check_step_bounds(before, after, grads, lo, hi):
    for b, a, g in zip(before, after, grads, strict=True):
        step = b - a
        tol = 1e-12 * (1.0 + b.abs())
        assert torch.isfinite(a).all()
        assert (step.abs() <= hi * g.abs() + tol).all(), "step larger than eta_max * |g|"
        assert (step.abs() >= lo * g.abs() - tol).all(), "step smaller than eta_min * |g|"
        assert (step * g >= -tol).all(), "step not along -g"


@PROFILE
@given(cfg=configs())
def test_single_block_step_bounded_by_gradient(cfg):
    """group_size=0: one block, so g is the plain gradient at the initial weights."""
    model, opt, x, y = build(cfg, group_size=0)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    grads = torch.autograd.grad(CE(model(x), y), params)
    loss = opt.step(x, y)
    assert torch.isfinite(loss)
    after = [p.detach() for p in params]
    check_step_bounds(before, after, grads, cfg["eta_min"], cfg["eta_max"])
    assert all(torch.isfinite(p).all() for p in opt.meta.parameters())
    stats = opt.epoch_stats()
    assert cfg["eta_min"] * (1 - 1e-6) <= stats["b0_eta_mean"] <= cfg["eta_max"] * (1 + 1e-6)


@PROFILE
@given(cfg=configs(), meta_mode=st.sampled_from(["exact", "hypergradient", "lookahead"]),
       order=st.sampled_from(["top_down", "bottom_up", "random"]))
def test_blockwise_steps_bounded_and_only_block_k_moves(cfg, meta_mode, order):
    """Several blocks: at every block update, only that block moves, and its step is bounded by
    the gradient at the point where it is taken (recomputed here with autograd)."""
    model, opt, x, y = build(cfg, meta_mode=meta_mode, order=order, meta_lr=0.1)
    params = list(model.parameters())
    orig = opt._apply
    visited = []

    def spy(k, *args, **kwargs):
        before = [p.detach().clone() for p in params]
        block = opt.blocks[k].params
        grads = torch.autograd.grad(CE(model(x), y), block)
        visit = orig(k, *args, **kwargs)
        assert visit is not None
        inside = {id(p) for p in block}
        for p, b in zip(params, before, strict=True):
            if id(p) not in inside:
                assert torch.equal(p.detach(), b), f"block {k} update moved another block"
        idx = [next(i for i, q in enumerate(params) if q is p) for p in block]
        check_step_bounds([before[i] for i in idx], [params[i].detach() for i in idx], grads,
                          cfg["eta_min"], cfg["eta_max"])
        visited.append(k)
        return visit

    opt._apply = spy
    for _ in range(2):
        opt.step(x, y)
    n = len(opt.blocks)
    assert sorted(visited[:n]) == sorted(visited[n:]) == list(range(n))
    assert all(torch.isfinite(p).all() for p in params)
    assert all(torch.isfinite(p).all() for p in opt.meta.parameters())
