"""SAMT's pass engines: the gradients of chosen blocks at the current weights, cheaply.

One interface (``Passes``), two engines:

* ``SequentialPasses``: an ``nn.Sequential`` of Linear/Conv layers (``samt.optim.blocks``). It
  caches each block's input with the autograd graph below it; in top-down order a pass runs
  only the blocks above the lowest wanted one.
* ``GraphPasses`` (``samt.optim.graph_passes``): any model ``torch.fx`` can trace. It caches
  every node of the graph and recomputes only the nodes downstream of the blocks that moved.
* ``WholePasses`` (``samt.optim.whole_passes``): the whole model as one block
  (``group_size=0``) when fx cannot trace it: a full forward and backward per pass.

Both give exactly the gradients of a full forward and backward at the current weights
(Gauss-Seidel), with one draw of each Dropout mask and one update of the BatchNorm running
statistics per step. ``build_passes`` picks the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from samt.optim.blocks import (
    Block,
    GroupBy,
    PassContext,
    SAMTModelError,
    block_grads,
    group_units,
    needs_context,
    split_units,
)

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


class Passes(Protocol):
    """What SAMT's step needs from a pass engine.

    ``forward(inputs)`` starts a step (the first forward, with autograd); ``grads(wanted,
    targets, loss_fn)`` returns the loss and the gradients of the ``wanted`` blocks (their
    ``Block.params`` order) at the current weights; ``moved(k)`` says block ``k``'s weights
    changed; ``finish()`` ends the step.
    """

    blocks: list[Block]

    def forward(self, inputs: torch.Tensor) -> None: ...

    def grads(self, wanted: set[int], targets: torch.Tensor, loss_fn: LossFn
              ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]: ...

    def moved(self, k: int) -> None: ...

    def finish(self) -> None: ...


def build_passes(model: nn.Module, group_size: int = 1,
                 group_by: GroupBy | None = None) -> Passes:
    """The pass engine for ``model``: ``SequentialPasses`` for an ``nn.Sequential`` that
    ``samt.optim.blocks.split_units`` accepts, else ``GraphPasses``; for a model fx cannot
    trace, with ``group_size=0``, ``WholePasses`` (one block needs no trace). Raises
    ``SAMTModelError`` when fx cannot trace the model (and it has more than one block) or SAMT
    cannot replay it."""
    if isinstance(model, nn.Sequential):
        try:
            units = split_units(model)
        except SAMTModelError:
            units = None  # e.g. a layer used twice, an Embedding: the graph engine takes it
        if units is not None:
            return SequentialPasses(group_units(units, group_size, group_by))
    from samt.optim.graph_passes import GraphPasses
    from samt.optim.graph_units import SAMTTraceError, module_units, trace_units

    try:
        traced = trace_units(model)
    except SAMTTraceError:
        if group_size != 0 or group_by:
            raise
        from samt.optim.whole_passes import WholePasses

        return WholePasses(model, group_units(module_units(model), 0))
    return GraphPasses(traced, group_units(traced.units, group_size, group_by))


def count_units(model: nn.Module) -> int:
    """How many units (parametrized layers) SAMT would split ``model`` into; 1 where it cannot
    split it (the parameter-update count of the other optimizers)."""
    try:
        return len(build_passes(model).blocks)
    except (SAMTModelError, ValueError):
        return 1


class SequentialPasses:
    """The pass engine of a chain of blocks (see the module docstring)."""

    def __init__(self, blocks: list[Block]):
        self.blocks = blocks
        self._stateful = needs_context(blocks)
        self._context: PassContext | None = None
        self._inp: list[torch.Tensor | None] = []
        self._attached: list[bool] = []

    def forward(self, inputs: torch.Tensor) -> None:
        """First forward with autograd: caches every block input, attached to the graph below."""
        self._inp = [inputs]
        self._attached = [False]
        # Dropout masks and BatchNorm updates of this forward, shared by the step's passes
        self._context = PassContext() if self._stateful else None
        h = inputs
        for block in self.blocks:
            h = block.forward(h, self._context)
            self._inp.append(h)
            self._attached.append(True)
        if self._context is not None:
            self._context.first = False  # later passes replay this one

    def moved(self, k: int) -> None:
        """Block ``k`` moved: the inputs of the blocks above it are stale."""
        for j in range(k + 1, len(self._inp)):
            self._inp[j], self._attached[j] = None, False

    def grads(self, wanted: set[int], targets: torch.Tensor, loss_fn: LossFn
              ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """Loss and gradients of the ``wanted`` blocks at the current weights.

        Starts from the highest cached input whose graph still reaches the lowest wanted block,
        else from that block's (re)computed input; blocks above are run with current weights.
        """
        low, top = min(wanted), len(self.blocks)
        start = low
        while start < top and self._inp[start + 1] is not None and self._attached[start + 1]:
            start += 1
        h = self._input_of(low) if start == low else self._inp[start]
        for j in range(start, top):
            if j > start:
                self._inp[j] = h.detach()
            h = self.blocks[j].forward(h, self._context)
        if start < top:
            self._inp[top] = h.detach()
        loss = loss_fn(h, targets)
        out = block_grads(self.blocks, wanted, loss)
        for j in range(low + 1, top + 1):
            self._attached[j] = False  # this pass's graph down to block `low` is consumed
        return loss.detach(), out

    def finish(self) -> None:
        """End of the step: drop the cached inputs, graphs and masks."""
        self._inp, self._attached, self._context = [], [], None

    def _input_of(self, k: int) -> torch.Tensor:
        """Detached input of block ``k`` at the current weights (no-grad forward from below)."""
        v = k
        while self._inp[v] is None:
            v -= 1
        h = self._inp[v].detach()
        with torch.no_grad():
            for j in range(v, k):
                h = self.blocks[j].forward(h, self._context)
                self._inp[j + 1], self._attached[j + 1] = h, False
        return h
