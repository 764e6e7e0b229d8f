"""Optimizers: SAMT and the ``torch.optim`` baselines, all driven by ``step(inputs, targets)``.

Usable without Hydra or the runner::

    from samt.optim import SAMT
    opt = SAMT(model, nn.functional.cross_entropy, step_type="element", eta0=0.1)
    for x, y in batches:
        loss = opt.step(x, y)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from samt.optim.baselines import BASELINES, TorchOptimizerStep
from samt.optim.blocks import SAMTModelError, split_blocks, split_units
from samt.optim.samt import SAMT, STAT_NAMES, MetaInitError, read_meta

OPTIMIZERS = ("samt", *BASELINES)

__all__ = ["SAMT", "STAT_NAMES", "OPTIMIZERS", "MetaInitError", "SAMTModelError",
           "TorchOptimizerStep", "build_optimizer", "read_meta", "split_blocks", "split_units"]


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
