"""SAMT's passes on a traced graph: exact Gauss-Seidel gradients, recomputing only what moved.

One step keeps the value of every graph node from its first forward, with the autograd graph.
``grads(wanted, ...)`` walks the nodes in topological order and recomputes only

* the nodes downstream of a block that moved since they were computed (their value is stale),
  with autograd when a wanted block lies upstream of them, else without;
* the nodes downstream of a wanted block whose autograd graph an earlier pass consumed (the
  value is kept, detached, for the passes that need no gradient through it);

every other node's value is reused, with the autograd graph that reaches the wanted blocks.
An in-place operation on one value (``nn.ReLU(inplace=True)``, ``x.relu_()``) is stale, needed
and consumed together with that value, so it is recomputed with it, as ``model(x)`` runs it
(fx records ``out += identity`` as an addition); one that also reads another value
(``x.add_(y)``) is refused by ``samt.optim.graph_units``.
So each wanted block's gradient is taken at the current weights of every block, exactly as a
full forward and backward would give it, without one per block. An autograd pass without
``retain_graph`` frees only the graph of nodes downstream of the wanted blocks: those are
marked consumed.

Dropout (modules and ``F.dropout``) and BatchNorm (modules and ``F.batch_norm``) keep the
guarantees of ``samt.optim.blocks.PassContext``: the first forward draws every mask and moves
the running statistics once; later passes reuse the masks and normalize with the batch
statistics at the current weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import fx
from torch.fx.node import map_aggregate, map_arg
from torch.nn import functional as F

from samt.optim.blocks import Block, PassContext, SAMTModelError, block_grads
from samt.optim.graph_units import FUNCTIONAL_DROPOUTS, TracedModel, trace_units

_STALE = object()   # a node value that must be recomputed
_BATCH_NORM = inspect.signature(F.batch_norm)


class GraphPasses:
    """The pass engine of a traced model (``samt.optim.passes.Passes``)."""

    def __init__(self, traced: TracedModel, blocks: list[Block]):
        self.model, self.blocks = traced.model, blocks
        self._load(traced)
        self._vals: list[Any] = []
        self._attached: list[bool] = []
        self._context: PassContext | None = None
        self._inputs: torch.Tensor | None = None

    def _load(self, traced: TracedModel) -> None:
        """Take ``traced``'s nodes and, per block, the nodes downstream of its parameters."""
        self.nodes = traced.nodes
        self._modes = _modes(self.model)  # the train/eval modes the trace was taken in
        block_of = {id(u.weight): k for k, b in enumerate(self.blocks) for u in b.units}
        index = {node: i for i, node in enumerate(self.nodes)}
        self._modules = [self.model.get_submodule(n.target) if n.op == "call_module" else None
                         for n in self.nodes]
        self._index = index
        # down[k]: the nodes downstream of block k's parameters (itself included)
        self.down: list[frozenset[int]] = []
        for k in range(len(self.blocks)):
            todo = [i for i, us in enumerate(traced.node_units)
                    if any(block_of[id(traced.units[u].weight)] == k for u in us)]
            seen = set(todo)
            while todo:
                for user in self.nodes[todo.pop()].users:
                    j = index[user]
                    if j not in seen:
                        seen.add(j)
                        todo.append(j)
            self.down.append(frozenset(seen))

    def _retrace_if_mode_changed(self) -> None:
        """A forward may branch on ``self.training`` in Python, which the trace fixes: trace
        again when a module's mode differs from the trace's (the units stay the same)."""
        if _modes(self.model) == self._modes:
            return
        traced = trace_units(self.model)
        if {id(u.weight) for u in traced.units} != {id(u.weight) for b in self.blocks
                                                     for u in b.units}:
            raise SAMTModelError(f"{type(self.model).__name__} has other trained layers in "
                                 "this train/eval mode than when SAMT was built; build SAMT "
                                 "again for this mode")
        self._load(traced)

    def forward(self, inputs: torch.Tensor) -> None:
        """The step's first forward, with autograd: every node value kept, masks drawn."""
        self._retrace_if_mode_changed()
        self._inputs = inputs
        self._context = PassContext()
        self._vals = [_STALE] * len(self.nodes)
        self._attached = [True] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            if node.op != "output":
                self._vals[i] = self._run(i, node)
        self._context.first = False  # later passes replay this one

    def moved(self, k: int) -> None:
        """Block ``k``'s weights changed: the nodes downstream of it are stale."""
        for i in self.down[k]:
            self._vals[i] = _STALE

    def grads(self, wanted: set[int], targets: torch.Tensor,
              loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]]]:
        """Loss and the gradients of the ``wanted`` blocks at the current weights."""
        need: set[int] = set().union(*(self.down[k] for k in wanted))
        vals, attached = self._vals, self._attached
        output = None
        for i, node in enumerate(self.nodes):
            if node.op == "output":
                output = map_arg(node.args[0], self._value)
                continue
            grad = i in need
            if vals[i] is not _STALE and (attached[i] or not grad):
                continue
            with torch.set_grad_enabled(grad):
                vals[i] = self._run(i, node)
            attached[i] = grad
        loss = loss_fn(output, targets)
        out = block_grads(self.blocks, wanted, loss, allow_unused=True)
        for i in need:  # this pass consumed their autograd graph: keep the values only
            vals[i], attached[i] = _detach(vals[i]), False
        return loss.detach(), out

    def finish(self) -> None:
        """End of the step: drop the values, graphs and masks."""
        self._vals, self._attached, self._context, self._inputs = [], [], None, None

    # --- running one node ----------------------------------------------------------------------

    def _value(self, node: fx.Node) -> Any:
        return self._vals[self._index[node]]

    def _run(self, i: int, node: fx.Node) -> Any:
        args = map_arg(node.args, self._value)
        kwargs = map_arg(node.kwargs, self._value)
        if node.op == "placeholder":
            if self._index[node] == 0:
                return self._inputs
            if not args:
                raise TypeError(f"SAMT passes one input to the model; its forward's argument "
                                f"{node.target!r} needs a default")
            return args[0]
        if node.op == "get_attr":
            return _fetch(self.model, node.target)
        if node.op == "call_module":
            module = self._modules[i]
            if len(args) == 1 and not kwargs:
                return self._context(module, args[0], node.name)
            return module(*args, **kwargs)
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, node.target)(*rest, **kwargs)
        if node.target in FUNCTIONAL_DROPOUTS:
            return self._dropout(node, args, kwargs)
        if node.target is F.batch_norm and not self._context.first:
            return F.batch_norm(**_batch_stats_only(args, kwargs))
        return node.target(*args, **kwargs)

    def _dropout(self, node: fx.Node, args: tuple, kwargs: dict) -> torch.Tensor:
        """``F.dropout`` and kin: the first pass draws the mask (the function on ones), every
        pass multiplies by it."""
        masks = self._context.masks
        x, *rest = args
        if self._context.first:
            masks[node.name] = node.target(torch.ones_like(x), *rest, **kwargs)
        return x * masks[node.name]


def _batch_stats_only(args: tuple, kwargs: dict) -> dict[str, Any]:
    """``F.batch_norm``'s arguments for a later pass: in training, without running statistics
    (they moved in the first pass)."""
    bound = _BATCH_NORM.bind(*args, **kwargs)
    bound.apply_defaults()
    call = dict(bound.arguments)
    if call["training"]:
        call["running_mean"] = call["running_var"] = None
    return call


def _modes(model: torch.nn.Module) -> tuple[bool, ...]:
    return tuple(m.training for m in model.modules())


def _fetch(root: torch.nn.Module, target: str) -> Any:
    value: Any = root
    for name in target.split("."):
        value = getattr(value, name)
    return value


def _detach(value: Any) -> Any:
    return map_aggregate(value, lambda v: v.detach() if isinstance(v, torch.Tensor) else v)
