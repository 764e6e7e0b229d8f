"""The step sizes of a block's units from their gradient features: the eta model, the gate and
the step rule (``samt.optim.step_rule``), on the analytic path or with autograd."""

from __future__ import annotations

import torch

from samt.optim.blocks import Block
from samt.optim.components import step_shape
from samt.optim.fused import Chains
from samt.optim.meta_params import MetaParams
from samt.optim.step_rule import Analytic, Step, gate, step_rule, step_statistics


class StepSizes:
    """Forms the steps of block ``k``'s units (``steps``), the autograd graph of them
    (``graph_steps``), or what their analytic meta-gradient needs (``analytic_terms``).

    ``analytic``: sigmoid projection, convex or learned combine; the full-size part then runs
    without autograd and the meta-gradient is formed by hand. Other cases back-propagate
    through the step with autograd. ``scale`` (schedules) multiplies ``eta0`` and ``eta_max``.
    """

    def __init__(self, blocks: list[Block], meta: MetaParams, chains: Chains, *, learns: bool,
                 step_type: str, projection: str, combine: str, tanh_c: float, eta0: float,
                 eta_max: float, group_dim: int | None):
        self.blocks, self.meta, self.chains = blocks, meta, chains
        self.learns, self.step_type, self.group_dim = learns, step_type, group_dim
        self.projection, self.combine, self.tanh_c = projection, combine, tanh_c
        self.eta0, self.eta_max = eta0, eta_max
        self.analytic = learns and projection == "sigmoid" and combine in ("convex", "learned")

    def eta_outputs(self, k: int, phis: list[torch.Tensor], kept: bool
                    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]]:
        """Per unit of block ``k``: ``theta``, ``z_m``, the gate ``beta`` and, with ``kept``, the
        eta model's activations (``EtaModel.forward_kept``: no autograd graph)."""
        model = self.meta.eta_model(k)
        out = []
        for unit, phi, theta in zip(self.blocks[k].units, phis, self.meta.thetas(k),
                                    strict=True):
            if kept:
                z_beta, z_m, acts = model.forward_kept(phi, k)
            else:
                (z_beta, z_m), acts = model(phi, k), None
            if self.group_dim is not None:
                shape = step_shape(self.step_type, unit.weight.shape)
                z_beta, z_m = z_beta.reshape(shape), z_m.reshape(shape)
            out.append((theta, z_m, gate(z_beta, self.combine), acts))
        return out

    def analytic_terms(self, k: int, phis: list[torch.Tensor], scale: float
                       ) -> list[tuple[torch.Tensor, torch.Tensor, Analytic]]:
        """Per unit of block ``k``: ``theta``, the gate and what the analytic meta-gradient
        needs (``s`` left to the caller)."""
        model = self.meta.eta_model(k)
        out = []
        for theta, z_m, beta, acts in self.eta_outputs(k, phis, kept=True):
            with torch.no_grad():
                c = (1.0 - beta) * (self.eta_max * scale)
            out.append((theta, beta, Analytic(None, c, beta if self.combine == "convex"
                                              else None, z_m, model, acts)))
        return out

    def graph_steps(self, k: int, phis: list[torch.Tensor], scale: float
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(step before clamping, gate)`` of block ``k``'s units (``step_rule``), with
        autograd following the meta-parameters where grad mode is on."""
        eta0, eta_max = self.eta0 * scale, self.eta_max * scale
        return [(step_rule(theta, z_m, beta, eta0, eta_max, self.projection, self.combine,
                           self.tanh_c), beta)
                for theta, z_m, beta, _ in self.eta_outputs(k, phis, kept=False)]

    def steps(self, k: int, phis: list[torch.Tensor], scale: float, keep: bool,
              keep_s: bool) -> list[Step]:
        """Step of each unit of block ``k`` from its features, with its statistics.

        On the analytic path the step is formed without autograd (``unit_step``, compiled
        where ``chains`` says) and, with ``keep``, ``Step.analytic`` keeps what the meta-update
        needs (``s`` only with ``keep_s``; else the step is formed in ``s``'s storage).
        Otherwise autograd follows the meta-parameters where grad mode is on.
        """
        if not self.learns:
            weight = self.blocks[k].units[0].weight
            step = torch.full((), self.eta0 * scale, device=weight.device, dtype=weight.dtype)
            beta = torch.ones_like(step)
            return [Step(step, step, beta, step_statistics(step, beta)) for _ in phis]
        if not self.analytic:
            return [Step(raw, raw, beta, step_statistics(raw.detach(), beta.detach()))
                    for raw, beta in self.graph_steps(k, phis, scale)]
        eta0, keep_s = self.eta0 * scale, keep and keep_s
        out = []
        for theta, beta, info in self.analytic_terms(k, phis, scale):
            raw, info.s, row = self.chains.run(
                "step", theta, theta.detach(), info.z_m.detach(), beta * eta0, info.c,
                beta.detach(), keep_s, inplace=True)
            out.append(Step(raw, raw, beta.detach(), row, info if keep else None))
        return out
