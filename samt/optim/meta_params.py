"""SAMT's meta-parameters: the eta models and the step parameters ``theta`` of every unit,
grouped per block (one group for all when the eta model is shared), with their meta step."""

from __future__ import annotations

import torch
from torch import nn

from samt.optim.blocks import Block
from samt.optim.components import EtaModel, step_shape, theta_init
from samt.optim.meta_step import MetaStep, make_meta_optimizer


class MetaParams:
    """``module`` (``.eta``: the eta model(s); ``.theta``: one tensor per unit, in block order)
    and one meta-optimizer per group (``step``, ``optimizers``); empty without ``learns``."""

    def __init__(self, blocks: list[Block], *, learns: bool, num_features: int, hidden: int,
                 shared: bool, step_type: str, projection: str, eta0: float, eta_max: float,
                 kind: str, lr: float):
        self.module = nn.Module()
        self.shared = shared
        self.groups: list[list[nn.Parameter]] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.etas: list[EtaModel] = []
        self.block_thetas: list[list[nn.Parameter]] = []
        if not learns:
            return
        weight = blocks[0].units[0].weight
        if shared:
            self.module.eta = EtaModel(num_features, hidden, num_blocks=len(blocks))
        else:
            self.module.eta = nn.ModuleList(EtaModel(num_features, hidden) for _ in blocks)
        init = theta_init(projection, eta0, eta_max)
        self.module.theta = nn.ParameterList(
            nn.Parameter(torch.full(step_shape(step_type, u.weight.shape), init,
                                    dtype=u.weight.dtype, device=u.weight.device))
            for block in blocks for u in block.units)
        self.module.to(device=weight.device, dtype=weight.dtype)
        self.offset = [0]
        for block in blocks:
            self.offset.append(self.offset[-1] + len(block.units))
        # One meta-optimizer per block (one for all when the eta model is shared): a block's
        # meta-step then touches only its own tensors, and fused Adam is one kernel per tensor.
        self.groups = [list(self.module.parameters())] if shared else [
            [*self.module.eta[k].parameters(),
             *self.module.theta[self.offset[k]:self.offset[k + 1]]]
            for k in range(len(blocks))]
        self.step = MetaStep(self.groups, make_meta_optimizer(kind, lr))
        self.optimizers = self.step.optimizers
        self.flat = list(self.module.parameters())
        # Per block, looked up on every step: plain lists (slicing a ParameterList, or reading
        # an nn.Module attribute, builds or searches module objects each time).
        eta = self.module.eta
        self.etas = [eta if shared else eta[k] for k in range(len(blocks))]
        self.block_thetas = [list(self.module.theta[self.offset[k]:self.offset[k + 1]])
                             for k in range(len(blocks))]

    def group(self, k: int) -> int:
        """The group (meta-optimizer) of block ``k``."""
        return 0 if self.shared else k

    def eta_model(self, k: int) -> EtaModel:
        """Block ``k``'s eta model."""
        return self.etas[k]

    def thetas(self, k: int) -> list[nn.Parameter]:
        """``theta`` of each unit of block ``k``."""
        return self.block_thetas[k]
