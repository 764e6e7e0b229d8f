"""SAMT's passes for a model trained as one block, without a trace.

With ``group_size: 0`` every pass is a full forward and backward anyway (the only block is the
whole model), so a model ``torch.fx`` cannot trace still trains: the first forward runs as
``model(x)``; a later pass (exact mode's ``g'`` after the step) runs the model again with torch's
random generators set back to where the first forward found them, so that every Dropout draws
the same mask, and puts the buffers (BatchNorm's running statistics) back after its backward,
so that they move once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from samt.optim.blocks import Block, block_grads


class WholePasses:
    """The pass engine of one block without a trace (``samt.optim.passes.Passes``)."""

    def __init__(self, model: nn.Module, blocks: list[Block]):
        self.model, self.blocks = model, blocks
        self._inputs: torch.Tensor | None = None
        self._output: Any = None
        self._rng: tuple = ()
        self._rng_after: tuple = ()

    def forward(self, inputs: torch.Tensor) -> None:
        """The step's first forward, as ``model(inputs)``; the generators' states around it."""
        self._inputs = inputs
        self._rng = _rng_state(inputs.device)
        self._output = self.model(inputs)
        self._rng_after = _rng_state(inputs.device)

    def moved(self, k: int) -> None:
        """The weights changed: the first forward's output is stale."""
        self._output = None

    def grads(self, wanted: set[int], targets: torch.Tensor,
              loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """Loss and gradients at the current weights (the first forward's, else a replay)."""
        output, saved = self._output, None
        if output is None:
            saved = [(b, b.detach().clone()) for b in self.model.buffers()]
            _set_rng_state(self._rng, self._inputs.device)
            try:
                output = self.model(self._inputs)
            finally:
                _set_rng_state(self._rng_after, self._inputs.device)
        self._output = None  # consumed by this backward
        loss = loss_fn(output, targets)
        out = block_grads(self.blocks, wanted, loss, allow_unused=True)
        if saved is not None:  # after the backward, which may read them (BatchNorm)
            with torch.no_grad():
                for buffer, value in saved:
                    buffer.copy_(value)
        return loss.detach(), out

    def finish(self) -> None:
        """End of the step: drop the input and any output kept."""
        self._inputs = self._output = None


def _rng_state(device: torch.device) -> tuple:
    cpu = torch.get_rng_state()
    return (cpu, torch.cuda.get_rng_state(device)) if device.type == "cuda" else (cpu,)


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if len(state) > 1:
        torch.cuda.set_rng_state(state[1], device)
