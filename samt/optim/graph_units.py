"""Trace any ``nn.Module`` with ``torch.fx`` and split its parameters into SAMT units.

A *leaf* is a module the trace does not enter: one that owns parameters directly (its
``parameters(recurse=False)``: a Linear, a Conv, a BatchNorm, a MultiheadAttention) or a
parameter-free ``torch.nn`` module without children (ReLU, pooling, Dropout). Containers
(``nn.Sequential``, a ResNet's blocks, the user's own modules) are traced through, so the graph
shows every skip connection, sum and concatenation.

A *unit* is the trained parameters of one leaf (a Linear's weight and bias); a normalization
layer's parameters join the unit of the leaf that feeds it directly, as in the sequential case.
A leaf called at several places is one unit (autograd sums its gradient over the uses).
Parameters the root module uses itself (``self.scale`` read in ``forward``) form one unit.
Units are ordered by their last use in the graph's topological order. A unit's ``weight`` (the
tensor its step size is shaped after) is its first trained parameter with two or more
dimensions, else its first; the others are its ``secondaries``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from samt.optim.blocks import BATCH_NORMS, DROPOUTS, NORM_LAYERS, UNSUPPORTED, SAMTModelError, Unit

# Functional dropouts: replayed like nn.Dropout (the first pass draws, later passes reuse).
FUNCTIONAL_DROPOUTS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.dropout)
# Random functions and methods SAMT cannot replay across the passes of one step.
RANDOM_FUNCTIONS = (torch.rand, torch.rand_like, torch.randn, torch.randn_like, torch.randint,
                    torch.randint_like, torch.randperm, torch.bernoulli, torch.multinomial,
                    torch.normal, torch.poisson, F.alpha_dropout, F.feature_alpha_dropout,
                    F.rrelu, torch.rrelu, torch.alpha_dropout, torch.feature_alpha_dropout)
RANDOM_METHODS = ("bernoulli", "bernoulli_", "uniform_", "normal_", "random_", "exponential_",
                  "geometric_", "cauchy_", "log_normal_", "multinomial")

TRACE_HELP = (
    "SAMT splits a general model into blocks by tracing its forward with torch.fx "
    "(torch.fx.symbolic_trace), which needs a forward without Python control flow on tensor "
    "values. Ways on: train the whole model as one block (group_size: 0 needs no trace), make "
    "the forward traceable (e.g. move the untraceable part into a module of its own and trace "
    "a wrapper that calls it), or make the model an nn.Sequential of Linear/Conv layers."
)


class SAMTTraceError(SAMTModelError):
    """``torch.fx`` cannot trace the model's forward."""


class _Tracer(fx.Tracer):
    """fx's tracer with SAMT's leaves: modules that own parameters, and childless torch.nn
    modules; containers are entered."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if next(m.parameters(recurse=False), None) is not None:
            return True
        if next(m.children(), None) is not None:
            return False
        return super().is_leaf_module(m, module_qualified_name)


@dataclass
class TracedModel:
    """A traced model: its graph's nodes in topological order and SAMT's units.

    ``node_units[i]`` lists the units whose parameters node ``i`` reads (a leaf's call, or a
    ``get_attr`` of a root parameter).
    """

    model: nn.Module
    nodes: list[fx.Node]
    units: list[Unit]
    node_units: list[list[int]]


def trace(model: nn.Module) -> fx.Graph:
    """The fx graph of ``model``'s forward, or ``SAMTModelError`` naming the model and the
    way on when fx cannot trace it."""
    try:
        return _Tracer().trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, AttributeError, ... here
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise SAMTTraceError(f"torch.fx cannot trace {type(model).__name__}.forward "
                             f"({type(exc).__name__}: {first}). {TRACE_HELP}") from None


def trace_units(model: nn.Module) -> TracedModel:
    """Trace ``model`` and return its nodes and units (see the module docstring)."""
    graph = trace(model)
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    _check_nodes(model, nodes)
    owner_units: dict[int, int] = {}   # id(module) -> unit index, in order of first use
    groups: list[tuple[str, list[nn.Module], list[nn.Parameter]]] = []
    node_units: list[list[int]] = []
    joined: dict[int, int] = {}        # id(norm module) -> unit it joined
    for node in nodes:
        found: list[int] = []
        module = _node_owner(model, node)
        if module is not None:
            key = id(module)
            params = [p for p in module.parameters(recurse=node.op == "call_module")
                      if p.requires_grad]
            if params and key not in owner_units and key not in joined:
                feeder = _feeder_unit(node, index, node_units)
                if isinstance(module, NORM_LAYERS) and feeder is not None:
                    joined[key] = feeder
                    groups[feeder][1].append(module)
                    groups[feeder][2].extend(params)
                else:
                    owner_units[key] = len(groups)
                    groups.append((_name(node), [module], params))
            if params or key in joined:
                found = [owner_units[key] if key in owner_units else joined[key]]
        node_units.append(found)
    if not groups:
        raise SAMTModelError(f"{type(model).__name__} has no trained parameter "
                             "(every parameter has requires_grad=False)")
    units = [_unit(name, modules, params) for name, modules, params in groups]
    _refuse_shared(units)
    last = [max(i for i, us in enumerate(node_units) if u in us) for u in range(len(units))]
    order = sorted(range(len(units)), key=last.__getitem__)
    rank = {u: r for r, u in enumerate(order)}
    return TracedModel(model, nodes, [units[u] for u in order],
                       [[rank[u] for u in us] for us in node_units])


def module_units(model: nn.Module) -> list[Unit]:
    """Units without a trace: one per module that owns trained parameters, in the order the
    modules are registered (for ``group_size: 0``, where their order does not matter)."""
    units = [_unit(name, [m], params) for name, m in model.named_modules()
             if (params := [p for p in m.parameters(recurse=False) if p.requires_grad])]
    if not units:
        raise SAMTModelError(f"{type(model).__name__} has no trained parameter "
                             "(every parameter has requires_grad=False)")
    _refuse_shared(units)
    return units


def _node_owner(model: nn.Module, node: fx.Node) -> nn.Module | None:
    """The module whose parameters ``node`` reads: a leaf it calls, or the owner of a
    parameter it fetches (``get_attr``); None for every other node."""
    if node.op == "call_module":
        return model.get_submodule(node.target)
    if node.op == "get_attr":
        owner, _, name = node.target.rpartition(".")
        module = model.get_submodule(owner)
        if isinstance(module._parameters.get(name), nn.Parameter):
            return module
    return None


def _feeder_unit(node: fx.Node, index: dict[fx.Node, int],
                 node_units: list[list[int]]) -> int | None:
    """The unit of the leaf whose output is ``node``'s first argument, if one."""
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node):
        return None
    units = node_units[index[source]]
    return units[0] if source.op == "call_module" and len(units) == 1 else None


def _name(node: fx.Node) -> str:
    """The qualified name of the module whose parameters ``node`` reads."""
    return node.target if node.op == "call_module" else node.target.rpartition(".")[0]


def _unit(name: str, modules: list[nn.Module], params: list[nn.Parameter]) -> Unit:
    weight = next((p for p in params if p.dim() >= 2), params[0])
    return Unit(weight=weight, secondaries=[p for p in params if p is not weight],
                modules=modules, name=name)


def _refuse_shared(units: list[Unit]) -> None:
    """One tensor cannot be two blocks: refuse parameters shared by two units (tied weights)."""
    owner: dict[int, str] = {}
    for unit in units:
        for p in (unit.weight, *unit.secondaries):
            if id(p) in owner and owner[id(p)] != unit.name:
                raise SAMTModelError(
                    f"a parameter of {unit.name!r} is shared with {owner[id(p)]!r} (tied "
                    "weights); SAMT cannot update one tensor as two units: untie them, or call "
                    "one module at both places")
            owner[id(p)] = unit.name


def _check_nodes(model: nn.Module, nodes: list[fx.Node]) -> None:
    """Refuse what SAMT cannot replay across the passes of one step (see ``graph_passes``)."""
    for node in nodes:
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            if isinstance(module, UNSUPPORTED):
                raise SAMTModelError(
                    f"module {node.target!r} ({type(module).__name__}) is random or stateful in "
                    "training mode in a way SAMT cannot replay across the passes of one step "
                    "(use nn.Dropout or nn.Dropout1d/2d/3d, BatchNorm1d/2d/3d, LayerNorm or "
                    "GroupNorm)")
            inner = [m for m in module.modules() if m is not module
                     and isinstance(m, (*DROPOUTS, *BATCH_NORMS, *UNSUPPORTED))]
            if inner:
                raise SAMTModelError(
                    f"module {node.target!r} ({type(module).__name__}) owns parameters and runs "
                    f"a {type(inner[0]).__name__} inside its own forward, which SAMT cannot "
                    "replay across the passes of one step: move its own parameters into a "
                    "submodule (then the trace enters it)")
        elif (node.op == "call_method" and node.target.endswith("_")
              and not node.target.endswith("__")
              and any(isinstance(a, fx.Node) for a in (*node.args[1:], *node.kwargs.values()))):
            raise SAMTModelError(
                f"{type(model).__name__}.forward changes a value in place with another one "
                f"({node.target}, node {node.name!r}); SAMT keeps values between the passes of "
                f"one step, so write it out of place (x = x.{node.target[:-1]}(...))")
        elif (node.op == "call_function" and node.target in RANDOM_FUNCTIONS) or (
                node.op == "call_method" and node.target in RANDOM_METHODS):
            name = getattr(node.target, "__name__", node.target)
            raise SAMTModelError(
                f"{type(model).__name__}.forward calls {name} (node {node.name!r}), random "
                "in a way SAMT cannot replay across the passes of one step; use nn.Dropout "
                "(or F.dropout) for random masks")
