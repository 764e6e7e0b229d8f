"""``meta_normalize``: each block's meta-gradient is the plain one divided by ``|g'| |g|`` (over
the block's weights and biases), on the analytic path (sigmoid) and the autograd path (tanh),
in every meta mode; with it, the meta-update no longer depends on the loss's scale."""

from __future__ import annotations

import copy

import pytest
import torch
from test_samt_invariants import CE, batch, make_mlp, perturb_meta

from samt.optim import SAMT


def one_step(model, normalize, x, y, loss_fn=CE, **options):
    torch.manual_seed(0)  # the same eta-model initialization for both
    opt = SAMT(model, loss_fn, meta_normalize=normalize, meta_optimizer="sgd", meta_lr=0.0,
               eta_hidden=6, **options)
    perturb_meta(opt, scale=0.4)
    opt.step(x, y)
    return opt


@pytest.mark.parametrize("projection", ["sigmoid", "tanh"])
@pytest.mark.parametrize("step_type", ["scalar", "element", "row"])
def test_single_block_meta_gradient_is_the_plain_one_over_the_gradient_norms(projection,
                                                                              step_type):
    eta_max = 0.5 if projection == "sigmoid" else 20.0
    options = dict(step_type=step_type, group_size=0, eta0=0.1, eta_max=eta_max,
                   projection=projection, meta_mode="exact")
    base = make_mlp((4, 5, 3))
    x, y = batch()
    g = torch.autograd.grad(CE(base(x), y), list(base.parameters()))
    plain_model, norm_model = copy.deepcopy(base), copy.deepcopy(base)
    plain = one_step(plain_model, False, x, y, **options)
    normed = one_step(norm_model, True, x, y, **options)
    for a, b in zip(plain_model.parameters(), norm_model.parameters(), strict=True):
        assert torch.equal(a, b), "the normalization changes meta-gradients, not the step"
    g_new = torch.autograd.grad(CE(norm_model(x), y), list(norm_model.parameters()))
    scale = 1.0 / (torch.cat([t.reshape(-1) for t in g]).norm()
                   * torch.cat([t.reshape(-1) for t in g_new]).norm())
    grads = {n: p.grad for n, p in normed.meta.named_parameters() if p.grad is not None}
    assert grads, "degenerate test: no meta-gradient"
    for name, p in plain.meta.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad * scale, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("meta_mode", ["lookahead", "hypergradient"])
def test_delayed_modes_normalize_by_the_visit_and_the_next_gradient(meta_mode):
    """One block: the first meta-update (second step) pairs g at W0 on batch 1 with g' at W1 on
    batch 2; the normalized meta-gradient is the plain one over their norms' product."""
    base = make_mlp((4, 5, 3))
    (x1, y1), (x2, y2) = batch(seed=1), batch(seed=2)
    g = torch.autograd.grad(CE(base(x1), y1), list(base.parameters()))
    runs = []
    for normalize in (False, True):
        model = copy.deepcopy(base)
        torch.manual_seed(0)
        opt = SAMT(model, CE, meta_normalize=normalize, meta_mode=meta_mode, group_size=0,
                   meta_optimizer="sgd", meta_lr=0.0, step_type="element", eta0=0.1,
                   eta_max=0.5, eta_hidden=6)
        opt.step(x1, y1)
        after_first = copy.deepcopy(model)
        opt.step(x2, y2)
        runs.append((opt, after_first))
    g_new = torch.autograd.grad(CE(runs[1][1](x2), y2), list(runs[1][1].parameters()))
    scale = 1.0 / (torch.cat([t.reshape(-1) for t in g]).norm()
                   * torch.cat([t.reshape(-1) for t in g_new]).norm())
    (plain, _), (normed, _) = runs
    got = dict(normed.meta.named_parameters())
    checked = 0
    for name, p in plain.meta.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got[name].grad, p.grad * scale, rtol=1e-9, atol=1e-15)
            checked += 1
    assert checked, "degenerate test: no meta-gradient"


def test_zero_gradient_gives_no_meta_gradient_not_nan():
    model = make_mlp((4, 5, 3))
    x, y = batch()
    opt = SAMT(model, lambda out, t: 0.0 * out.sum(), meta_normalize=True, meta_lr=1e-2,
               step_type="scalar")
    before = [p.detach().clone() for p in opt.meta.parameters()]
    opt.step(x, y)
    for b, p in zip(before, opt.meta.parameters(), strict=True):
        assert torch.isfinite(p).all() and torch.equal(b, p)


def test_config_key_is_checked_and_documented():
    from samt.optim.options import DEFAULTS
    from samt.validation import ConfigError, _validate_samt_options

    assert DEFAULTS.meta_normalize is False
    cfg = {"optimizer": {"name": "samt", "step_type": "element", "projection": "sigmoid",
                         "combine": "convex", "meta_mode": "exact", "order": "top_down",
                         "meta_optimizer": "adam", "eta_min": 1e-6, "eta_max": 0.3, "eta0": 0.1,
                         "meta_lr": 1e-3, "meta_interval": 1, "eta_hidden": 32,
                         "group_size": 1, "tanh_c": 4.6, "eta_shared": False,
                         "features_per_group": False, "features": ["mean"],
                         "meta_normalize": "yes"}}
    with pytest.raises(ConfigError, match=r"optimizer.meta_normalize='yes' is invalid"):
        _validate_samt_options(cfg)
