"""The meta-gradient of a block's step: ``d loss / d eta = -P`` (``components.meta_signal``)
carried back to the meta-parameters, with autograd through the steps' graph
(``graph_surrogate``) or by hand on the analytic path (``analytic_meta_grad``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from samt.optim.blocks import Block
from samt.optim.components import meta_signal
from samt.optim.fused import Chains
from samt.optim.step_rule import Analytic


@dataclass
class Visit:
    """What a block's meta-update needs from the visit that applied a step."""

    phis: list[torch.Tensor]             # squashed features per unit (detached)
    grads: list[torch.Tensor]            # gradients of the block's params, ``Block.params`` order
    etas: list[torch.Tensor] | None = None  # applied steps with their autograd graph, if kept
    clamped: bool = True                 # whether any step entry needed clamping
    fast: list[Analytic] | None = None   # for the analytic meta-gradient, if kept


GradPairs = dict[int, tuple[torch.Tensor, torch.Tensor]]


def _pairs(block: Block, grads: list[torch.Tensor], new_grads: list[torch.Tensor]) -> GradPairs:
    """``(g, g')`` of each of the block's parameters, by ``id``."""
    return dict(zip(map(id, block.params), zip(grads, new_grads, strict=True), strict=True))


def _secondaries(unit: Any, grad_of: GradPairs
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(g, g', param)`` of each bias-like parameter of ``unit`` (``meta_signal``)."""
    return [(*grad_of[id(p)], p) for p in unit.secondaries]


def graph_surrogate(block: Block, etas: list[torch.Tensor], grads: list[torch.Tensor],
                    new_grads: list[torch.Tensor], meta_loss: torch.Tensor) -> torch.Tensor:
    """``-sum(eta * P)`` over the block's units: its gradient through the steps' autograd graph
    is the meta-gradient. ``P`` is formed in ``g``'s storage (``g`` is not needed after)."""
    grad_of = _pairs(block, grads, new_grads)
    surrogate = meta_loss.new_zeros(())
    for unit, eta in zip(block.units, etas, strict=True):
        g, g_new = grad_of[id(unit.weight)]
        product = meta_signal(g, g_new, _secondaries(unit, grad_of), eta.shape)
        surrogate = surrogate - torch.dot(eta.reshape(-1), product.reshape(-1))
        del product
    return surrogate


def analytic_meta_grad(block: Block, infos: list[Analytic], thetas: list[torch.Tensor],
                       grads: list[torch.Tensor], new_grads: list[torch.Tensor | None],
                       meta_loss: torch.Tensor, chains: Chains, release: bool, eta0: float,
                       eta_max: float) -> tuple[torch.Tensor, Callable[[], None]]:
    """The analytic gradient of ``-sum(eta * P)``: ``(finiteness check, backward)``.

    With ``P`` (summed to the step's shape, bias terms folded in), ``s``, ``c`` and ``beta`` of
    ``Analytic``: ``d/d theta = -P c s (1 - s)``, ``d/d z_m`` its sum to ``z_m``'s shape and
    ``d/d beta = -(eta0 P - eta_max P s)`` summed to ``beta``'s shape (``sigmoid_meta_grad``),
    carried back through the sigmoid and the eta model by hand (``EtaModel.backward_into``) by
    ``backward()``, which adds to ``.grad``. ``P`` is formed in the stored ``g`` and the
    ``theta`` gradient in ``s``'s storage: no full-size allocation. ``release`` (exact mode:
    the caller hands ``new_grads`` over, its only holder): each weight's ``g'`` is dropped from
    it once ``P`` is formed.
    """
    grad_of = _pairs(block, grads, new_grads)
    index = {id(p): i for i, p in enumerate(block.params)} if release else {}
    theta_grads, backs, checks = [], [], [meta_loss]
    for unit, info, theta in zip(block.units, infos, thetas, strict=True):
        g, g_new = grad_of[id(unit.weight)]
        product = meta_signal(g, g_new, _secondaries(unit, grad_of), theta.shape)
        if release:  # exact mode: nothing reads g' after this; free it before s is formed
            new_grads[index[id(unit.weight)]] = None
            grad_of[id(unit.weight)] = (product, None)
        g = g_new = None
        args = (product, info.s, theta.detach(), info.z_m.detach(), info.c,
                None if info.beta is None else tuple(info.beta.shape), tuple(info.z_m.shape))
        result = chains.run("meta", product, *args, inplace=True)
        del product, args
        grad, sum_ps, sum_p, adjoint = result
        theta_grads.append(grad)
        backs.append((info, adjoint, None if info.beta is None
                      else eta_max * sum_ps - eta0 * sum_p))
        checks.append(sum_ps.sum())
        if info.beta is not None:
            checks.append(sum_p.sum())
    del grad_of

    def backward() -> None:
        for info, d_m, d_beta in backs:  # through beta = sigmoid(z_beta), then the model
            d_z_beta = (None if d_beta is None
                        else torch.ops.aten.sigmoid_backward(d_beta, info.beta))
            info.model.backward_into(info.kept, d_z_beta, d_m)
        for theta, grad in zip(thetas, theta_grads, strict=True):
            theta.grad = grad if theta.grad is None else theta.grad + grad

    return torch.stack(checks).sum(), backward
