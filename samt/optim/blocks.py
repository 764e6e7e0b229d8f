"""Split an ``nn.Sequential`` model into SAMT blocks.

A *unit* is one parametrized layer (Linear or Conv) together with the parameter-free modules and
normalization layers that follow it; modules before the first parametrized layer join the first
unit. A *block* is ``group_size`` consecutive units (``0``: the whole model is one block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


class SAMTModelError(TypeError):
    """The model does not have the structure SAMT can split into blocks."""


STRUCTURE_HELP = (
    "SAMT needs an nn.Sequential (nested nn.Sequential is flattened) whose parametrized children "
    "are Linear/Conv1d/Conv2d/Conv3d layers, each optionally followed by a normalization layer "
    "(BatchNorm, LayerNorm, GroupNorm); every other child must be parameter-free "
    "(activations, pooling, Flatten, Dropout)."
)


@dataclass
class Unit:
    """One parametrized layer: its weight, the parameters that follow it, and its modules."""

    weight: nn.Parameter
    secondaries: list[nn.Parameter] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)


@dataclass
class Block:
    """Consecutive units updated together; ``forward`` runs its modules in order."""

    units: list[Unit]

    @property
    def modules(self) -> list[nn.Module]:
        return [m for u in self.units for m in u.modules]

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for u in self.units for p in (u.weight, *u.secondaries)]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            h = module(h)
        return h


def _flatten(model: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in model.children():
        out.extend(_flatten(child) if isinstance(child, nn.Sequential) else [child])
    return out


def split_units(model: nn.Module) -> list[Unit]:
    """Return the model's units in forward order, or raise ``SAMTModelError``."""
    if not isinstance(model, nn.Sequential):
        raise SAMTModelError(f"got {type(model).__name__}. {STRUCTURE_HELP}")
    units: list[Unit] = []
    leading: list[nn.Module] = []
    for module in _flatten(model):
        has_params = any(p.requires_grad for p in module.parameters())
        if isinstance(module, WEIGHT_LAYERS):
            unit = Unit(weight=module.weight, modules=[*leading, module])
            if module.bias is not None:
                unit.secondaries.append(module.bias)
            units.append(unit)
            leading = []
        elif isinstance(module, NORM_LAYERS) and has_params:
            if not units:
                raise SAMTModelError(
                    f"normalization layer {module} comes before any Linear/Conv layer. "
                    + STRUCTURE_HELP)
            units[-1].modules.append(module)
            units[-1].secondaries.extend(p for p in module.parameters() if p.requires_grad)
        elif has_params:
            raise SAMTModelError(
                f"child {type(module).__name__} has parameters but is not a supported layer. "
                + STRUCTURE_HELP)
        elif units:
            units[-1].modules.append(module)
        else:
            leading.append(module)
    if not units:
        raise SAMTModelError("the model has no Linear/Conv layer to train. " + STRUCTURE_HELP)
    return units


def split_blocks(model: nn.Module, group_size: int = 1) -> list[Block]:
    """Group the model's units into blocks of ``group_size`` (0: one block for the whole model)."""
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0 = whole model), got {group_size}")
    units = split_units(model)
    size = len(units) if group_size == 0 else group_size
    return [Block(units[i:i + size]) for i in range(0, len(units), size)]
