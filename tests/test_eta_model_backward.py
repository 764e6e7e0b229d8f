"""``EtaModel.forward_kept`` / ``backward_into``, the eta model's forward without autograd and
its backward by hand (the analytic meta-gradient's path), against ``forward`` and autograd."""

from __future__ import annotations

import pytest
import torch

from samt.optim.components import EtaModel

F64 = torch.float64


def make(num_blocks: int) -> EtaModel:
    torch.manual_seed(0)
    model = EtaModel(5, hidden=7, num_blocks=num_blocks).to(F64)
    with torch.no_grad():  # the last layer starts at zero: give every path a gradient
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("num_blocks", [0, 3])          # per-block, shared with an embedding
@pytest.mark.parametrize("rows", [None, 4])             # one feature vector, or one per row
@pytest.mark.parametrize("with_beta", [True, False])    # convex, or learned (no gate gradient)
def test_backward_into_equals_autograd(num_blocks, rows, with_beta):
    model = make(num_blocks)
    gen = torch.Generator().manual_seed(1)
    shape = (5,) if rows is None else (rows, 5)
    phi = torch.randn(shape, generator=gen, dtype=F64)
    d_m = torch.randn(shape[:-1], generator=gen, dtype=F64)
    d_beta = torch.randn(shape[:-1], generator=gen, dtype=F64) if with_beta else None
    block = 2 if num_blocks else 0

    z_beta, z_m = model(phi, block)
    objective = (d_m * z_m).sum() + ((d_beta * z_beta).sum() if with_beta else 0.0)
    expected = torch.autograd.grad(objective, list(model.parameters()))

    kept_beta, kept_m, kept = model.forward_kept(phi, block)
    torch.testing.assert_close(kept_beta, z_beta.detach(), rtol=0, atol=0)
    torch.testing.assert_close(kept_m, z_m.detach(), rtol=0, atol=0)
    assert not kept_m.requires_grad and all(not t.requires_grad for t in kept[1:])
    model.backward_into(kept, d_beta, d_m)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14)
    if num_blocks:  # only the block's own embedding row gets a gradient
        others = [i for i in range(num_blocks) if i != block]
        assert torch.count_nonzero(model.embedding.weight.grad[others]) == 0

    model.backward_into(kept, d_beta, d_m)  # accumulates, as autograd does into .grad
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, 2 * g, rtol=1e-12, atol=1e-14)
