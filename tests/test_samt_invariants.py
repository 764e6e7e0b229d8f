"""The six invariants of the SAMT specification (docs: shared/design/samt-algorithm.md).

1. While block k is updated, no parameter outside block k changes.
2. ``combine: fixed``, one block, one iteration == plain SGD with lr ``eta0``.
3. ``exact`` mode: the meta-gradient equals a float64 central finite difference of
   ``l(W - clamp(eta_bar(theta)) * g)``, built here from the spec's formulas.
4. Hypergradient identity ``d l(W - eta*g) / d eta = -g' * g``, and SAMT uses it.
5. Every applied step is finite and in ``[eta_min, eta_max]``; non-finite loss/gradient is skipped.
6. Same seed, same config: identical parameters.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from samt.optim import SAMT

CE = nn.functional.cross_entropy
F64 = torch.float64


# --- helpers -----------------------------------------------------------------------------------



def make_mlp(sizes=(4, 5, 3), bias=True, dtype=F64, seed=0, act=nn.Tanh) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(dtype)


def make_cnn(dtype=F64, seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 2 * 2, 4), nn.Tanh(),
                         nn.Linear(4, 3)).to(dtype)


def batch(n=8, shape=(4,), classes=3, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def perturb_meta(opt: SAMT, scale: float = 0.3, seed: int = 5) -> None:
    """Move the meta-parameters off their symmetric init so every path of the eta model matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in opt.meta.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


class ApplySpy:
    """Wraps ``opt._apply``: records (k, params before, params after, grads, returned visit)."""

    def __init__(self, opt: SAMT, model: nn.Module):
        self.calls: list[tuple] = []
        self._orig = opt._apply
        self._model = model
        opt._apply = self

    def __call__(self, k, loss, grads, *args, **kwargs):
        before = snapshot(self._model)
        visit = self._orig(k, loss, grads, *args, **kwargs)
        self.calls.append((k, before, snapshot(self._model), [g.clone() for g in grads], visit))
        return visit


# --- invariant 1: only block k moves -----------------------------------------------------------

INV1_CONFIGS = [
    {},
    {"order": "bottom_up"},
    {"order": "random", "seed": 3},
    {"meta_mode": "hypergradient"},
    {"meta_mode": "lookahead"},
    {"group_size": 2},
    {"step_type": "row", "features_per_group": True},
    {"step_type": "scalar", "projection": "tanh", "eta_shared": True},
    {"combine": "fixed"},
]


@pytest.mark.parametrize("kwargs", INV1_CONFIGS, ids=lambda c: str(c) or "default")
@pytest.mark.parametrize("arch", ["mlp", "cnn", "bn"])
def test_invariant1_only_the_updated_block_changes(kwargs, arch):
    if arch == "mlp":
        model, (x, y) = make_mlp((4, 6, 5, 4, 3)), batch()
    elif arch == "cnn":
        model, (x, y) = make_cnn(), batch(shape=(1, 4, 4))
    else:   # normalization parameters belong to the block of the layer before them
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.BatchNorm1d(6), nn.Tanh(),
                              nn.Linear(6, 5),
                              nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
        x, y = batch()
    opt = SAMT(model, CE, eta0=0.1, meta_lr=1e-2, **kwargs)
    spy = ApplySpy(opt, model)
    params = list(model.parameters())
    n_blocks = len(opt.blocks)
    assert n_blocks == (2 if kwargs.get("group_size") == 2 else 4 if arch == "mlp" else 3)
    last = snapshot(model)
    n_steps = 3
    for _ in range(n_steps):
        opt.step(x, y)
    assert len(spy.calls) == n_steps * n_blocks
    for t in range(n_steps):
        visited = [c[0] for c in spy.calls[t * n_blocks:(t + 1) * n_blocks]]
        assert sorted(visited) == list(range(n_blocks)), "every block exactly once per iteration"
    for k, before, after, _, visit in spy.calls:
        assert visit is not None
        # nothing moved between two block updates (meta steps, passes, ... touch no weight)
        for p0, p1 in zip(last, before, strict=True):
            assert torch.equal(p0, p1)
        inside = {id(p) for p in opt.blocks[k].params}
        for p, b, a in zip(params, before, after, strict=True):
            if id(p) in inside:
                assert not torch.equal(a, b), f"block {k}: a parameter of the block did not move"
                assert torch.isfinite(a).all()
            else:
                assert torch.equal(a, b), f"block {k} update changed a parameter outside block {k}"
        last = after
    for p0, p in zip(last, params, strict=True):
        assert torch.equal(p0, p.detach())


@pytest.mark.parametrize("meta_mode", ["exact", "hypergradient", "lookahead"])
def test_step_returns_the_loss_before_the_update(meta_mode):
    model = make_mlp((4, 6, 5, 3))
    opt = SAMT(model, CE, meta_mode=meta_mode, meta_lr=1e-2)
    for t in range(3):
        x, y = batch(seed=t)
        with torch.no_grad():
            expected = CE(model(x), y)
        loss = opt.step(x, y)
        assert not loss.requires_grad
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    assert opt.iteration == 3 and opt.param_updates == 9


def test_block_order_top_down_bottom_up_random():
    x, y = batch()
    seen = {}
    for order in ("top_down", "bottom_up", "random"):
        model = make_mlp((4, 5, 5, 5, 3))
        opt = SAMT(model, CE, order=order, seed=0)
        spy = ApplySpy(opt, model)
        for _ in range(6):
            opt.step(x, y)
        seen[order] = [tuple(c[0] for c in spy.calls[i:i + 4]) for i in range(0, 24, 4)]
    assert set(seen["top_down"]) == {(3, 2, 1, 0)}
    assert set(seen["bottom_up"]) == {(0, 1, 2, 3)}
    assert all(sorted(o) == [0, 1, 2, 3] for o in seen["random"])
    assert len(set(seen["random"])) > 1, "order=random must draw a fresh permutation per iteration"


def test_gauss_seidel_reuses_block_inputs_in_top_down():
    """Top-down: the bottom block's input is never recomputed, and no block runs a full forward
    per block update (the spec's 'slow reference'). Block j is forwarded once plus once per update
    of a block below it that has to see the new weights."""
    model = make_mlp((4, 5, 5, 5, 3))
    opt = SAMT(model, CE, combine="fixed")
    counts = [0] * 4
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for j, lin in enumerate(linears):
        lin.register_forward_hook(lambda *_, j=j: counts.__setitem__(j, counts[j] + 1))
    opt.step(*batch())
    assert counts == [1, 2, 3, 4]


# --- invariant 2: fixed steps on one block == SGD ---------------------------------------------

def sgd_reference(model, x, y, lr, steps=1):
    sgd = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        sgd.zero_grad()
        loss = CE(model(x), y)
        loss.backward()
        sgd.step()
        losses.append(loss.detach())
    return losses


@pytest.mark.parametrize("step_type", ["scalar", "element", "row", "column"])
@pytest.mark.parametrize("bias", [True, False])
def test_invariant2_fixed_single_block_equals_sgd(step_type, bias):
    model = make_mlp((4, 6, 3), bias=bias, dtype=torch.float32)
    ref = copy.deepcopy(model)
    x, y = batch(dtype=torch.float32)
    opt = SAMT(model, CE, combine="fixed", group_size=0, eta0=0.05, step_type=step_type)
    loss = opt.step(x, y)
    (ref_loss,) = sgd_reference(ref, x, y, 0.05)
    torch.testing.assert_close(loss, ref_loss)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert opt.param_updates == 2 and opt.iteration == 1


def test_invariant2_fixed_single_block_cnn_several_steps():
    model = make_cnn(dtype=torch.float32)
    ref = copy.deepcopy(model)
    x, y = batch(shape=(1, 4, 4), dtype=torch.float32)
    opt = SAMT(model, CE, combine="fixed", group_size=0, eta0=0.2)
    losses = [opt.step(x, y) for _ in range(3)]
    ref_losses = sgd_reference(ref, x, y, 0.2, steps=3)
    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses))
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_invariant2_fixed_single_block_equals_sgd_in_float64():
    """Float tolerance of a float64 model is ~1e-15: the fixed step must be eta0 in the model's
    dtype, not eta0 rounded to float32 (that gives a ~1e-8 relative error per step)."""
    model = make_mlp((4, 6, 3))
    ref = copy.deepcopy(model)
    x, y = batch()
    opt = SAMT(model, CE, combine="fixed", group_size=0, eta0=0.1)
    opt.step(x, y)
    sgd_reference(ref, x, y, 0.1)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-14)


def test_convex_at_init_first_step_equals_sgd():
    """Zero last layer + theta_init: beta = 0.5, eta_hat = eta0, so the first step is eta0 * g."""
    for projection in ("sigmoid", "tanh"):
        model = make_mlp((4, 6, 3))
        ref = copy.deepcopy(model)
        x, y = batch()
        opt = SAMT(model, CE, group_size=0, eta0=0.1, eta_max=0.5, projection=projection)
        opt.step(x, y)
        sgd_reference(ref, x, y, 0.1)
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_fixed_multi_block_is_gauss_seidel_sgd(order):
    """Several blocks: each block takes an SGD step at the gradient where the blocks already
    updated in this iteration have their new values (not all at the iteration's start)."""
    model = make_mlp((4, 5, 5, 3))
    ref = copy.deepcopy(model)
    x, y = batch()
    opt = SAMT(model, CE, combine="fixed", eta0=0.3, eta_max=1.0, order=order)
    for _ in range(2):
        opt.step(x, y)
    layers = [m for m in ref if isinstance(m, nn.Linear)]
    seq = range(len(layers) - 1, -1, -1) if order == "top_down" else range(len(layers))
    for _ in range(2):
        for k in seq:
            lin = layers[k]
            gw, gb = torch.autograd.grad(CE(ref(x), y), [lin.weight, lin.bias])
            with torch.no_grad():
                lin.weight -= 0.3 * gw
                lin.bias -= 0.3 * gb
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


# --- invariant 3: exact meta-gradient == finite difference ------------------------------------

def spec_features(g: torch.Tensor, group_dim: int | None) -> torch.Tensor:
    """Squashed [mean, var, max, min, norm] of g (per group along group_dim), from the spec."""
    flat = g.reshape(1, -1) if group_dim is None else g.movedim(group_dim, 0).flatten(1)
    f = torch.stack([flat.mean(1), flat.var(1, unbiased=False), flat.amax(1), flat.amin(1),
                     flat.norm(dim=1)], dim=1)
    f = torch.sign(f) * torch.log1p(f.abs())
    return f[0] if group_dim is None else f


def spec_eta(phi, theta, eta_params, cfg, shape):
    """eta model 5 -> h -> h -> 2 (tanh), gate, projection, combine, clamp (the spec's formulas)."""
    w0, b0, w1, b1, w2, b2 = eta_params
    z = torch.tanh(torch.tanh(phi @ w0.T + b0) @ w1.T + b1) @ w2.T + b2
    z_beta, z_m = z[..., 0], z[..., 1]
    if z.dim() == 2:                     # per-group features: one (beta, z_m) per row/column
        z_beta, z_m = z_beta.reshape(shape), z_m.reshape(shape)
    beta = torch.sigmoid(z_beta)
    u = theta + z_m
    if cfg["projection"] == "sigmoid":
        eta_hat = cfg["eta_max"] * torch.sigmoid(u)
    else:
        eta_hat = cfg["eta0"] * torch.exp(math.log(100.0) * torch.tanh(u))
    if cfg.get("combine", "convex") == "convex":
        eta_bar = beta * cfg["eta0"] + (1 - beta) * eta_hat
    else:
        eta_bar = eta_hat
    return eta_bar.clamp(cfg["eta_min"], cfg["eta_max"])


def spec_bias_step(eta: torch.Tensor, step_type: str) -> torch.Tensor:
    if step_type in ("row", "element"):
        return eta.reshape(eta.shape[0], -1).mean(1)
    return eta.mean()


EXACT_CASES = [
    (st, proj, False, "convex", None)
    for st in ("scalar", "element", "row", "column") for proj in ("sigmoid", "tanh")
] + [
    ("row", "sigmoid", True, "convex", None),
    ("column", "tanh", True, "convex", None),
    ("element", "sigmoid", False, "learned", None),
    ("element", "sigmoid", False, "convex", (0.075, 1.0)),  # some steps clamped at eta_min
]


@pytest.mark.parametrize(("step_type", "projection", "per_group", "comb", "bounds"), EXACT_CASES)
def test_invariant3_exact_meta_gradient_matches_finite_difference(
        step_type, projection, per_group, comb, bounds):
    eta_min, eta_max = bounds or ((1e-4, 1.0) if projection == "sigmoid" else (1e-4, 20.0))
    cfg = {"eta0": 0.1, "eta_min": eta_min, "eta_max": eta_max, "projection": projection,
           "combine": comb}
    model = make_mlp((3, 4, 2))
    x, y = batch(n=6, shape=(3,), classes=2)
    opt = SAMT(model, CE, step_type=step_type, features_per_group=per_group, combine=comb,
               meta_mode="exact", meta_optimizer="sgd", meta_lr=0.0, eta_hidden=6, **{
                   k: cfg[k] for k in ("eta0", "eta_min", "eta_max", "projection")})
    perturb_meta(opt, scale=1.5 if bounds else 0.4)
    names = [n for n, _ in model.named_parameters()]      # 0.weight 0.bias 2.weight 2.bias
    before_apply: dict[int, dict[str, torch.Tensor]] = {}
    meta_grads: dict[int, dict[str, torch.Tensor]] = {}
    orig_apply, orig_meta = opt._apply, opt._meta_update

    def apply_spy(k, *args, **kwargs):
        before_apply[k] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return orig_apply(k, *args, **kwargs)

    def meta_spy(k, *args, **kwargs):
        orig_meta(k, *args, **kwargs)
        meta_grads[k] = {n: p.grad.clone() for n, p in opt.meta.named_parameters()
                         if p.grad is not None}

    opt._apply, opt._meta_update = apply_spy, meta_spy
    meta_before = {n: p.detach().clone() for n, p in opt.meta.named_parameters()}
    opt.step(x, y)
    assert sorted(meta_grads) == [0, 1], "exact mode: one meta-update per block"
    for n, p in opt.meta.named_parameters():
        assert torch.equal(p, meta_before[n]), "meta_lr = 0 must leave meta-parameters in place"
    group_dim = {"row": 0, "column": 1}[step_type] if per_group else None
    clamped_any = False

    for k in (1, 0):                     # top block (g at the initial W) and the bottom block
        state = before_apply[k]
        wn, bn = names[2 * k], names[2 * k + 1]
        w, b = state[wn].clone().requires_grad_(), state[bn].clone().requires_grad_()
        gw, gb = torch.autograd.grad(CE(functional_call(model, {**state, wn: w, bn: b}, x), y),
                                     [w, b])
        phi = spec_features(gw, group_dim)
        theta0 = meta_before[f"theta.{k}"]
        shape = theta0.shape
        eta_names = [f"eta.{k}.net.{i}.{t}" for i in (0, 2, 4) for t in ("weight", "bias")]

        def meta_loss(theta, eta_params, state=state, wn=wn, bn=bn, gw=gw, gb=gb, phi=phi,
                      shape=shape):
            eta = spec_eta(phi, theta, eta_params, cfg, shape)
            new = {**state, wn: state[wn] - eta * gw,
                   bn: state[bn] - spec_bias_step(eta, step_type) * gb}
            return CE(functional_call(model, new, x), y)

        eta_params = [meta_before[n] for n in eta_names]
        got = meta_grads[k]
        assert got[f"theta.{k}"].shape == shape
        # central finite differences in float64, theta element by element
        h = 1e-6
        fd = torch.zeros_like(theta0)
        for j in range(theta0.numel()):
            e = torch.zeros_like(theta0).reshape(-1)
            e[j] = h
            e = e.reshape(shape)
            fd.reshape(-1)[j] = (meta_loss(theta0 + e, eta_params)
                                 - meta_loss(theta0 - e, eta_params)) / (2 * h)
        torch.testing.assert_close(got[f"theta.{k}"], fd, rtol=1e-5, atol=1e-9)
        assert fd.abs().max() > 1e-6, "degenerate test: the meta-gradient is zero"
        # one element of the first and of the last eta-model layer
        for name, idx in ((eta_names[0], (1, 2)), (eta_names[4], (1, 3)), (eta_names[5], (0,))):
            i = eta_names.index(name)
            plus, minus = list(eta_params), list(eta_params)
            plus[i], minus[i] = eta_params[i].clone(), eta_params[i].clone()
            plus[i][idx] += h
            minus[i][idx] -= h
            fd_e = (meta_loss(theta0, plus) - meta_loss(theta0, minus)) / (2 * h)
            torch.testing.assert_close(got[name][idx], fd_e, rtol=1e-5, atol=1e-9)
        # and all meta-parameters of block k against autograd of the reference
        leaves = [theta0.clone().requires_grad_()] + [p.clone().requires_grad_()
                                                      for p in eta_params]
        ref = torch.autograd.grad(meta_loss(leaves[0], leaves[1:]), leaves)
        for name, r in zip([f"theta.{k}", *eta_names], ref, strict=True):
            torch.testing.assert_close(got[name], r, rtol=1e-8, atol=1e-12)
        # the other block's meta-parameters get no gradient from block k's meta loss
        other = 1 - k
        assert f"theta.{other}" not in got or torch.all(got[f"theta.{other}"] == 0)
        eta = spec_eta(phi, theta0, eta_params, cfg, shape)
        clamped_any |= bool((eta <= eta_min).any())
    if bounds:
        assert clamped_any, "degenerate test: no step was clamped"


# --- invariant 4: hypergradient identity -------------------------------------------------------

@pytest.mark.parametrize("step_shape", ["scalar", "element", "row"])
def test_invariant4_hypergradient_identity_autograd(step_shape):
    model = make_mlp((4, 5, 3))
    x, y = batch()
    w = model[0].weight.detach()
    shape = {"scalar": (), "element": w.shape, "row": (w.shape[0], 1)}[step_shape]
    eta = torch.full(shape, 0.3, dtype=F64) + 0.1 * torch.rand(shape, dtype=F64)
    eta.requires_grad_()
    wp = w.clone().requires_grad_()
    (g,) = torch.autograd.grad(CE(functional_call(model, {"0.weight": wp}, x), y), [wp])
    w_new = w - eta * g
    (d_eta,) = torch.autograd.grad(CE(functional_call(model, {"0.weight": w_new}, x), y), [eta])
    wn = w_new.detach().requires_grad_()
    (g_new,) = torch.autograd.grad(CE(functional_call(model, {"0.weight": wn}, x), y), [wn])
    hyper = -(g_new * g)
    hyper = hyper.sum() if shape == () else hyper.sum(1, keepdim=True) if step_shape == "row" \
        else hyper
    torch.testing.assert_close(d_eta, hyper, rtol=1e-12, atol=1e-15)
    assert d_eta.abs().max() > 0


def _deta_dtheta(eta0, eta_max):
    """d eta_bar / d theta at init for sigmoid projection: beta = 0.5, eta_hat = eta0."""
    s = eta0 / eta_max
    return 0.5 * eta_max * s * (1 - s)


@pytest.mark.parametrize("bias", [False, True])
def test_invariant4_samt_exact_meta_gradient_is_minus_gprime_times_g(bias):
    """Single block: theta.grad == -(g' * g) * d eta_bar/d theta, g' at W' on the same batch."""
    model = make_mlp((4, 5, 3), bias=bias)
    ref = copy.deepcopy(model)
    x, y = batch()
    opt = SAMT(model, CE, step_type="element", group_size=0, eta0=0.1, eta_max=0.5,
               meta_optimizer="sgd", meta_lr=0.0)
    g = torch.autograd.grad(CE(ref(x), y), list(ref.parameters()))
    opt.step(x, y)
    g_new = torch.autograd.grad(CE(model(x), y), list(model.parameters()))
    d = _deta_dtheta(0.1, 0.5)
    per = 2 if bias else 1
    for i in range(2):
        expected = -(g_new[per * i] * g[per * i]) * d
        if bias:   # the bias step is the row mean of the element steps
            n_in = g[per * i].shape[1]
            expected = expected - (g_new[per * i + 1] * g[per * i + 1])[:, None] * d / n_in
        torch.testing.assert_close(opt.meta.theta[i].grad, expected, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("mode", ["hypergradient", "lookahead"])
def test_invariant4_delayed_modes_use_next_gradient(mode):
    """hypergradient: g' is the block's fresh gradient at its next visit; lookahead: the gradient
    on the next batch before any block moves. For one block both are grad at W1 on batch 2."""
    model = make_mlp((4, 5, 3), bias=False)
    x1, y1 = batch(seed=1)
    x2, y2 = batch(seed=2)
    opt = SAMT(model, CE, step_type="element", group_size=0, eta0=0.1, eta_max=0.5,
               meta_mode=mode, meta_optimizer="sgd", meta_lr=0.0)
    g1 = torch.autograd.grad(CE(model(x1), y1), list(model.parameters()))
    opt.step(x1, y1)
    assert all(t.grad is None for t in opt.meta.theta), "no meta step after the first visit"
    g2 = torch.autograd.grad(CE(model(x2), y2), list(model.parameters()))
    opt.step(x2, y2)
    d = _deta_dtheta(0.1, 0.5)
    for i in range(2):
        torch.testing.assert_close(opt.meta.theta[i].grad, -(g2[i] * g1[i]) * d,
                                   rtol=1e-9, atol=1e-14)


def test_meta_step_moves_steps_downhill():
    """Sign check end to end: with SGD on theta, the meta step lowers the same-batch meta loss."""
    model = make_mlp((4, 8, 3), bias=False)
    x, y = batch()
    opt = SAMT(model, CE, step_type="scalar", group_size=0, eta0=0.05, eta_max=1.0,
               meta_optimizer="sgd", meta_lr=1.0)
    theta0 = [t.detach().clone() for t in opt.meta.theta]
    start = copy.deepcopy(model)
    opt.step(x, y)
    grads = [t.grad.clone() for t in opt.meta.theta]
    g = torch.autograd.grad(CE(start(x), y), list(start.parameters()))
    # on this problem a larger step lowers l(W - eta g): the meta-gradient is negative
    assert all(gr < 0 for gr in grads)
    assert all(t > t0 for t, t0 in zip(opt.meta.theta, theta0, strict=True))

    def loss_at(eta):
        new = {n: p - eta * gi for (n, p), gi in zip(start.named_parameters(), g, strict=True)}
        return CE(functional_call(start, new, x), y)

    assert loss_at(0.06) < loss_at(0.05)


# --- invariant 5: bounded, finite steps; non-finite never reaches the weights ----------------

@pytest.mark.parametrize(("projection", "theta_fill", "eta_min", "eta_max", "expect"), [
    ("tanh", 3.0, 0.08, 0.12, 0.12),       # eta_hat ~ 10: clamped at eta_max
    ("sigmoid", -20.0, 0.09, 0.5, 0.09),   # eta_hat ~ 0: eta_bar ~ eta0/2, clamped at eta_min
])
def test_invariant5_steps_clamped_into_range(projection, theta_fill, eta_min, eta_max, expect):
    model = make_mlp((4, 5, 3))
    ref = copy.deepcopy(model)
    x, y = batch()
    opt = SAMT(model, CE, step_type="scalar", eta0=0.1, eta_min=eta_min, eta_max=eta_max,
               projection=projection, meta_optimizer="sgd", meta_lr=0.0)
    with torch.no_grad():
        for t in opt.meta.theta:
            t.fill_(theta_fill)
    g = torch.autograd.grad(CE(ref(x), y), [ref[2].weight, ref[2].bias])
    opt.step(x, y)
    # top block in top_down order: its gradient is the one at the initial weights
    for p, p0, gi in zip((model[2].weight, model[2].bias), (ref[2].weight, ref[2].bias), g,
                         strict=True):
        ratio = (p0 - p).detach() / gi
        mask = gi.abs() > 1e-8
        torch.testing.assert_close(ratio[mask], torch.full_like(ratio[mask], expect),
                                   rtol=1e-9, atol=1e-12)
    stats = opt.epoch_stats()
    for k in range(2):
        assert stats[f"b{k}_clamped"] == pytest.approx(1.0)
        assert stats[f"b{k}_eta_mean"] == pytest.approx(expect)
    assert stats["b0_skipped"] == 0 and opt.skipped_total == 0


@pytest.mark.parametrize("kwargs", [
    {"step_type": "element", "projection": "tanh", "eta_min": 0.02, "eta_max": 0.3},
    {"step_type": "row", "projection": "sigmoid", "eta_min": 0.05, "eta_max": 0.2},
    {"step_type": "column", "projection": "tanh", "eta_min": 0.01, "eta_max": 0.5,
     "meta_mode": "hypergradient"},
    {"step_type": "scalar", "projection": "sigmoid", "eta_min": 0.05, "eta_max": 0.15,
     "meta_mode": "lookahead", "combine": "learned"},
])
def test_invariant5_every_applied_step_in_range(kwargs):
    """Aggressive meta learning: every applied elementwise step |dW|/|g| lies in the range, and
    the recorded eta_mean too."""
    model = make_mlp((4, 6, 5, 3))
    x, y = batch(n=16)
    opt = SAMT(model, CE, eta0=0.1, meta_lr=0.5, **kwargs)
    perturb_meta(opt, scale=2.0)
    spy = ApplySpy(opt, model)
    lo, hi = kwargs["eta_min"], kwargs["eta_max"]
    clamped = 0.0
    for _ in range(4):
        opt.step(x, y)
        stats = opt.epoch_stats()
        for k in range(len(opt.blocks)):
            # stats are accumulated in float32
            assert lo * (1 - 1e-6) <= stats[f"b{k}_eta_mean"] <= hi * (1 + 1e-6)
            assert 0.0 <= stats[f"b{k}_clamped"] <= 1.0
            clamped += stats[f"b{k}_clamped"]
    params = list(model.parameters())
    for k, before, after, grads, _ in spy.calls:
        ids = [id(p) for p in params]
        for p, g in zip(opt.blocks[k].params, grads, strict=True):
            i = ids.index(id(p))
            step = before[i] - after[i]
            assert torch.isfinite(step).all()
            tol = 1e-12 * (1 + before[i].abs())
            assert (step.abs() <= hi * g.abs() + tol).all()
            assert (step.abs() >= lo * g.abs() - tol).all()
            assert (step * g >= -tol).all(), "a step must go downhill along -g"
    assert clamped > 0, "degenerate test: the perturbed meta-parameters never hit the clamp"


@pytest.mark.parametrize("meta_mode", ["exact", "hypergradient", "lookahead"])
def test_invariant5_nan_input_batch_is_skipped(meta_mode):
    model = make_mlp((4, 5, 5, 3))
    x, y = batch()
    opt = SAMT(model, CE, meta_mode=meta_mode)
    opt.step(x, y)
    opt.epoch_stats()
    before = snapshot(model)
    meta_before = [p.detach().clone() for p in opt.meta.parameters()]
    bad = x.clone()
    bad[3, 1] = float("nan")
    opt.step(bad, y)
    for p0, p in zip(before, model.parameters(), strict=True):
        assert torch.equal(p0, p.detach()), "a NaN batch must not change any weight"
    for p0, p in zip(meta_before, opt.meta.parameters(), strict=True):
        assert torch.equal(p0, p.detach()), "no meta step may use the NaN batch"
    assert opt.skipped_total == 3
    stats = opt.epoch_stats()
    assert all(stats[f"b{k}_skipped"] >= 1 for k in range(3))
    # training resumes on the next good batch
    opt.step(x, y)
    assert opt.skipped_total == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(p0, p.detach())
               for p0, p in zip(before, model.parameters(), strict=True))


class FlakyLoss:
    """Cross entropy that misbehaves on the ``bad_call``-th call (1-based)."""

    def __init__(self, bad_call: int, kind: str):
        self.calls, self.bad_call, self.kind = 0, bad_call, kind

    def __call__(self, out, y):
        self.calls += 1
        loss = CE(out, y)
        if self.calls != self.bad_call:
            return loss
        if self.kind == "inf_loss":
            return loss + float("inf")           # loss inf, gradient still finite
        # loss finite, gradient NaN (sqrt at 0)
        return loss + torch.sqrt((out - out.detach()).abs()).sum()


@pytest.mark.parametrize("kind", ["inf_loss", "nan_grad"])
def test_invariant5_nonfinite_loss_or_gradient_on_one_pass_skips_that_block(kind):
    """Top-down, exact mode, 2 blocks: pass 1 = block 1's gradient, pass 2 = block 1's meta loss
    and block 0's gradient. A bad pass 2 must skip block 0 only."""
    model = make_mlp((4, 5, 3))
    x, y = batch()
    loss_fn = FlakyLoss(2, kind)
    opt = SAMT(model, loss_fn)
    spy = ApplySpy(opt, model)
    before = snapshot(model)
    meta_before = [p.detach().clone() for p in opt.meta.parameters()]
    opt.step(x, y)
    assert [c[0] for c in spy.calls] == [1, 0]
    assert spy.calls[0][4] is not None and spy.calls[1][4] is None
    after = snapshot(model)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert not torch.equal(after[2], before[2]) and not torch.equal(after[3], before[3])
    assert all(torch.isfinite(p).all() for p in after)
    assert all(torch.isfinite(p).all() for p in opt.meta.parameters())
    # the meta step fed by the bad pass is skipped too: no meta-parameter moved
    for p0, p in zip(meta_before, opt.meta.parameters(), strict=True):
        assert torch.equal(p0, p.detach())
    assert opt.skipped_total == 1
    stats = opt.epoch_stats()
    assert stats["b0_skipped"] >= 1


def test_invariant5_nonfinite_step_size_never_reaches_the_weights():
    """A non-finite eta_bar (e.g. meta-parameters blown up by an overflowing meta-gradient) is
    not a finite step in [eta_min, eta_max]: clamp() passes NaN through, so it must be caught."""
    model = make_mlp((4, 5, 3))
    x, y = batch()
    opt = SAMT(model, CE)
    with torch.no_grad():
        opt.meta.theta[0].view(-1)[0] = float("nan")
    opt.step(x, y)
    for p in model.parameters():
        assert torch.isfinite(p).all(), "a NaN step size reached the weights"


# --- invariant 6: determinism ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {},
    {"order": "random", "seed": 7},
    {"meta_mode": "hypergradient", "step_type": "row"},
    {"meta_mode": "lookahead", "step_type": "column", "projection": "tanh"},
    {"eta_shared": True, "step_type": "scalar", "order": "random", "seed": 1},
], ids=lambda c: str(c) or "default")
def test_invariant6_same_seed_same_result(kwargs):
    def run():
        torch.manual_seed(123)
        model = make_mlp((4, 6, 5, 3), dtype=torch.float32, seed=11)
        opt = SAMT(model, CE, meta_lr=1e-2, **kwargs)
        losses = []
        for t in range(5):
            x, y = batch(seed=t, dtype=torch.float32)
            losses.append(opt.step(x, y))
        return snapshot(model), [p.detach().clone() for p in opt.meta.parameters()], \
            torch.stack(losses), opt.epoch_stats()

    a, b = run(), run()
    for pa, pb in zip(a[0] + a[1], b[0] + b[1], strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(a[2], b[2])
    assert a[3].keys() == b[3].keys()
    for key in a[3]:
        assert a[3][key] == b[3][key] or (math.isnan(a[3][key]) and math.isnan(b[3][key]))


def test_invariant6_random_order_depends_on_seed():
    orders = {}
    for seed in (0, 1):
        model = make_mlp((4, 5, 5, 5, 5, 3))
        opt = SAMT(model, CE, order="random", seed=seed, combine="fixed")
        spy = ApplySpy(opt, model)
        for _ in range(3):
            opt.step(*batch())
        orders[seed] = [c[0] for c in spy.calls]
    assert orders[0] != orders[1]
