"""``opt.keep_steps``: keeping ``sigmoid(theta + z_m)`` from a visit to its meta-update (True)
or forming it again there (False, the default: in exact mode after ``g'`` is freed, one
weight-sized tensor less at the peak) computes the same, float64, over several steps."""

from __future__ import annotations

import pytest
import torch
from helpers import tanh_mlp
from torch import nn

from samt.optim import SAMT

F64 = torch.float64


def make_model() -> nn.Sequential:
    return tanh_mlp(5, 7, 6, 3)


def run(keep: bool, steps: int = 4, **options) -> tuple[SAMT, nn.Module]:
    model = make_model()
    opt = SAMT(model, nn.functional.cross_entropy, eta_hidden=6, eta0=0.05, eta_max=0.5,
               **options)
    with torch.no_grad():  # break the symmetric init so the gate and z_m both matter
        g = torch.Generator().manual_seed(3)
        for p in opt.meta.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    opt.keep_steps = keep
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.step(torch.randn(9, 5, generator=gen, dtype=F64),
                 torch.randint(0, 3, (9,), generator=gen))
    return opt, model


@pytest.mark.parametrize("mode", ["exact", "hypergradient", "lookahead"])
@pytest.mark.parametrize("step_type", ["element", "row", "scalar"])
def test_keep_steps_changes_nothing(mode, step_type):
    (kept, m_kept), (formed, m_formed) = (run(keep, step_type=step_type, meta_mode=mode)
                                          for keep in (True, False))
    assert kept.param_updates == formed.param_updates > 0
    for a, b in zip(m_kept.parameters(), m_formed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(kept.meta.parameters(), formed.meta.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(kept.meta.theta, formed.meta.theta, strict=True):  # the last meta-gradient
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)
    # the meta-parameters moved: the comparison is not between two untouched copies
    fresh, _ = run(True, steps=0, step_type=step_type, meta_mode=mode)
    assert any(not torch.equal(a, b) for a, b in zip(kept.meta.theta, fresh.meta.theta,
                                                      strict=True))


def test_exact_mode_meta_update_frees_the_fresh_gradient():
    """Exact mode, default: the meta-update forms ``g' * g`` in ``g``'s storage and drops its
    own reference to ``g'`` before ``s`` is formed (the list the caller handed over)."""
    opt, _ = run(False, steps=1, step_type="element", meta_mode="exact")
    seen = []
    original = opt._meta_update_fast

    def spy(k, visit, new_grads, meta_loss):
        seen.append(new_grads)
        original(k, visit, new_grads, meta_loss)

    opt._meta_update_fast = spy
    gen = torch.Generator().manual_seed(5)
    opt.step(torch.randn(9, 5, generator=gen, dtype=F64), torch.randint(0, 3, (9,), generator=gen))
    assert len(seen) == 3  # one meta-update per block
    for new_grads, block in zip(seen, [opt.blocks[k] for k in (2, 1, 0)], strict=True):
        weights = {id(u.weight) for u in block.units}
        for p, g_new in zip(block.params, new_grads, strict=True):
            assert (g_new is None) == (id(p) in weights), "g' of each weight freed, biases kept"
