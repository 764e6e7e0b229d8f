"""``build_optimizer``: SAMT or a baseline by name, with keyword options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from samt.optim.baselines import BASELINES, TorchOptimizerStep
from samt.optim.samt import SAMT

OPTIMIZERS = ("samt", *BASELINES)


def build_optimizer(name: str, model: nn.Module,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    **options: Any) -> SAMT | TorchOptimizerStep:
    """Build optimizer ``name`` (``samt`` or a key of ``BASELINES``) with keyword ``options``."""
    if name == "samt":
        return SAMT(model, loss_fn, **options)
    if name not in BASELINES:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {list(OPTIMIZERS)}")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return TorchOptimizerStep(model, loss_fn, BASELINES[name](model.parameters(), **options))
