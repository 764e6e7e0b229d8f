"""Committing a block's step: one finiteness check (one host sync), the clamp, the update of
the weights and their bias-like parameters, and the statistics of the applied steps."""

from __future__ import annotations

import torch

from samt.optim.blocks import Block
from samt.optim.components import secondary_step
from samt.optim.step_rule import Step


def commit(block: Block, steps: list[Step], grads: list[torch.Tensor],
           checks: list[torch.Tensor], norms: list[torch.Tensor], low: float, high: float,
           keep_graph: bool) -> tuple[torch.Tensor, bool] | None:
    """Apply ``W -= eta * g`` to each unit of ``block`` (``grads`` in ``Block.params`` order),
    with every step clamped to ``[low, high]`` where any entry lies outside.

    Nothing moves (None) unless ``checks`` (loss, features, ...) and the steps' statistics are
    finite. Returns the per-unit statistics (sum, sum of squares, min, max of the applied step,
    the mean gate, the gradient norm: ``norms``) and whether the steps were clamped.
    ``keep_graph``: the clamp stays in the steps' autograd graph.
    """
    grad_of = dict(zip(map(id, block.params), grads, strict=True))
    with torch.no_grad():
        sums = torch.stack([torch.cat([step.row, norm])
                            for step, norm in zip(steps, norms, strict=True)])
        checks = [*checks, sums.reshape(-1)]
        # The one host sync per block: finiteness, and whether any entry needs clamping.
        finite, lo, hi = torch.stack([torch.isfinite(torch.cat(checks)).all().to(sums.dtype),
                                      sums[:, 2].min(), sums[:, 3].max()]).tolist()
        if not finite:
            return None
        clamped = lo < low or hi > high
        for unit, step in zip(block.units, steps, strict=True):
            if clamped:
                with torch.set_grad_enabled(keep_graph):
                    step.clamp(low, high)
            eta = step.eta.detach()
            unit.weight.addcmul_(eta, grad_of[id(unit.weight)], value=-1.0)
            for p in unit.secondaries:
                p.addcmul_(secondary_step(eta, p), grad_of[id(p)], value=-1.0)
        if clamped:  # exact statistics of the clamped steps
            flats = [s.eta.detach().reshape(-1) for s in steps]
            sums = torch.cat([torch.stack([torch.stack([f.sum(), torch.dot(f, f)])
                                           for f in flats]), sums[:, 2:]], dim=1)
    return sums, clamped
