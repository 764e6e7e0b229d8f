"""``TorchOptimizerStep``: any ``torch.optim``-style optimizer behind the same
``step(inputs, targets)`` interface as SAMT.

There is no registry of optimizers: the runner builds the class its config names
(``samt/train/build_optimizer.py``), library code passes a class to
``samt.optim.build_optimizer``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from samt.optim.passes import count_units

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TorchOptimizerStep:
    """Forward, backward and a ``torch.optim`` step; non-finite loss or gradient skips the step."""

    has_meta = False  # no meta-parameters to save or load (``SAMT.has_meta``)

    def __init__(self, model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.layers = count_units(model)  # units: block updates counted as SAMT's
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.iteration = 0
        self.param_updates = 0
        self.skipped_total = 0
        self._skipped_epoch = 0

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One mini-batch update; returns the detached loss before the update."""
        self.iteration += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(inputs), targets)
        loss.backward()
        grads = [p.grad.sum() for p in self.params if p.grad is not None]
        sums = torch.stack([loss.detach(), *grads])
        if bool(torch.isfinite(sums).all()):
            self.optimizer.step()
            self.param_updates += self.layers
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_total += 1
            self._skipped_epoch += 1
        return loss.detach()

    def train_mode(self) -> None:
        """Before training steps: schedule-free optimizers switch to their training weights."""
        if hasattr(self.optimizer, "train"):
            self.optimizer.train()

    def eval_mode(self) -> None:
        """Before evaluation: schedule-free optimizers switch to their averaged weights."""
        if hasattr(self.optimizer, "eval"):
            self.optimizer.eval()

    def set_scale(self, scale: float) -> None:
        """Scale every parameter group's learning rate by ``scale`` (schedules)."""
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def epoch_stats(self) -> dict[str, float]:
        """Skipped updates since the last call (baselines have no per-block statistics)."""
        out = {"skipped": float(self._skipped_epoch)}
        self._skipped_epoch = 0
        return out

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
                "param_updates": self.param_updates, "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
        self.param_updates = state["param_updates"]
        self.skipped_total = state["skipped_total"]
