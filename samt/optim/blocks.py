"""Split an ``nn.Sequential`` model into SAMT blocks, and run blocks so that repeated passes in
one SAMT step see one network. (Any other model: ``samt.optim.graph_units``; both make
``Unit``s, which ``group_units`` joins into blocks.)

A *unit* is one parametrized layer (Linear or Conv) together with the parameter-free modules and
normalization layers that follow it; modules before the first parametrized layer join the first
unit. A *block* is ``group_size`` consecutive units (``0``: the whole model is one block).

One ``SAMT.step`` runs parts of the model several times (the gradient of each block, the loss
after each step). ``PassContext`` makes those passes consistent with one forward of the model:
Dropout draws its masks in the first pass and every later pass reuses them; BatchNorm updates
its running statistics in the first pass only (later passes normalize with the batch statistics
at the current weights, as training-mode BatchNorm does, without touching the running ones).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# ``group_by``: module-name prefixes, or lists of prefixes that form one block together
GroupBy = Sequence[str | Sequence[str]]
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
# Modules whose training-mode output is random or stateful in a way SAMT cannot replay exactly.
UNSUPPORTED = (nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU, nn.SyncBatchNorm,
               nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


class SAMTModelError(TypeError):
    """The model does not have the structure SAMT can split into blocks."""


STRUCTURE_HELP = (
    "SAMT's sequential path needs an nn.Sequential (nested nn.Sequential is flattened) whose "
    "parametrized children "
    "are Linear/Conv1d/Conv2d/Conv3d layers, each optionally followed by a normalization layer "
    "(BatchNorm1d/2d/3d, LayerNorm, GroupNorm); every other child must be parameter-free "
    "(activations, pooling, Flatten, Dropout/Dropout1d/2d/3d), and no trained parameter may "
    "be shared between two places. SAMT(model, ...) takes any other model through its graph "
    "engine (samt.optim.passes)."
)


class PassContext:
    """The randomness and running statistics of one SAMT step, shared by all its passes.

    The first pass (``first=True``) runs every module as ``model(x)`` would, drawing Dropout
    masks (kept here) and updating BatchNorm running statistics. Later passes reuse the masks
    and leave the running statistics alone.
    """

    def __init__(self) -> None:
        self.first = True
        self.masks: dict[Hashable, torch.Tensor] = {}

    def __call__(self, module: nn.Module, h: torch.Tensor, where: Hashable) -> torch.Tensor:
        """Run ``module`` on ``h``; ``where`` names its position (a module may be used twice)."""
        if not module.training:
            return module(h)
        if isinstance(module, DROPOUTS):
            return self._dropout(module, h, where)
        if isinstance(module, BATCH_NORMS) and not self.first and module.track_running_stats:
            return F.batch_norm(h, None, None, module.weight, module.bias, True, 0.0, module.eps)
        return module(h)

    def _dropout(self, module: nn.Module, h: torch.Tensor, key: Hashable) -> torch.Tensor:
        if module.p == 0.0:
            return h
        if self.first:
            # The module itself on ones: its mask (0 or 1/(1-p)) in exactly the shape torch
            # draws it (nn.Dropout: single entries; Dropout1d/2d/3d: whole channels, and for an
            # unbatched input such as a 2-D input to Dropout1d, whole rows).
            self.masks[key] = module(torch.ones_like(h))
        return h * self.masks[key]


def block_order(order: str, n: int, generator: torch.Generator) -> list[int]:
    """The order in which an iteration visits ``n`` blocks: ``top_down`` (the last block
    first), ``bottom_up``, or ``random`` (a permutation drawn from ``generator``)."""
    if order == "top_down":
        return list(range(n - 1, -1, -1))
    if order == "bottom_up":
        return list(range(n))
    return torch.randperm(n, generator=generator).tolist()


def needs_context(blocks: list[Block]) -> bool:
    """Whether any module of ``blocks`` has per-forward state (Dropout, BatchNorm) that the
    passes of one step must share; without one, passes run the modules directly."""
    return any(isinstance(m, (*DROPOUTS, *BATCH_NORMS)) for b in blocks for m in b.modules)


@dataclass
class Unit:
    """One parametrized layer: its weight, the parameters that follow it, and its modules.

    ``name`` is the layer's qualified module name in the model (``group_by`` matches it).
    """

    weight: nn.Parameter
    secondaries: list[nn.Parameter] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)
    name: str = ""


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

    def forward(self, h: torch.Tensor, context: PassContext | None = None) -> torch.Tensor:
        """Run the block's modules; with ``context``, as one pass of a SAMT step."""
        for i, module in enumerate(self.modules):
            h = module(h) if context is None else context(module, h, (id(self), i))
        return h


def _flatten(model: nn.Sequential) -> list[nn.Module]:
    """Children in forward order, nested Sequentials inlined; a module used twice is listed at
    both places (``children()`` would list it once)."""
    out: list[nn.Module] = []
    for child in model:
        out.extend(_flatten(child) if isinstance(child, nn.Sequential) else [child])
    return out


def split_units(model: nn.Module) -> list[Unit]:
    """Return the model's units in forward order, or raise ``SAMTModelError``.

    A Linear/Conv layer whose parameters are all frozen (``requires_grad=False``) is treated as a
    parameter-free module; a frozen bias of a trained weight is left alone.
    """
    if not isinstance(model, nn.Sequential):
        raise SAMTModelError(f"got {type(model).__name__}. {STRUCTURE_HELP}")
    modules = _flatten(model)
    _refuse_reuse(modules)
    names = {id(m): name for name, m in model.named_modules()}
    units: list[Unit] = []
    leading: list[nn.Module] = []
    for module in modules:
        if isinstance(module, UNSUPPORTED):
            raise SAMTModelError(
                f"child {type(module).__name__} is random or stateful in training mode in a way "
                "SAMT cannot replay across the passes of one step (use nn.Dropout or "
                "nn.Dropout1d/2d/3d, BatchNorm1d/2d/3d, LayerNorm or GroupNorm). "
                + STRUCTURE_HELP)
        trained = [p for p in module.parameters() if p.requires_grad]
        if isinstance(module, WEIGHT_LAYERS) and trained:
            if not module.weight.requires_grad:
                raise SAMTModelError(
                    f"{type(module).__name__} layer {module} has a frozen weight but a trained "
                    "bias; SAMT's step sizes live on the weight: freeze both or neither")
            unit = Unit(weight=module.weight, modules=[*leading, module],
                        name=names.get(id(module), ""))
            if module.bias is not None and module.bias.requires_grad:
                unit.secondaries.append(module.bias)
            units.append(unit)
            leading = []
        elif isinstance(module, NORM_LAYERS) and trained:
            if not units:
                raise SAMTModelError(
                    f"normalization layer {module} comes before any Linear/Conv layer. "
                    + STRUCTURE_HELP)
            units[-1].modules.append(module)
            units[-1].secondaries.extend(trained)
        elif trained:
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


def _refuse_reuse(modules: list[nn.Module]) -> None:
    """A trained parameter used at two places (a reused layer, tied weights) would be updated
    as two blocks; parameter-free modules may be reused (each use runs in its place)."""
    owner: dict[int, int] = {}
    for i, module in enumerate(modules):
        for p in module.parameters():
            if not p.requires_grad:
                continue
            if id(p) in owner:
                raise SAMTModelError(
                    f"a parameter of child {i} ({type(module).__name__}) is shared with child "
                    f"{owner[id(p)]} (tied weights); SAMT cannot update one tensor as two blocks. "
                    + STRUCTURE_HELP)
            owner[id(p)] = i


def split_blocks(model: nn.Module, group_size: int = 1,
                 group_by: GroupBy | None = None) -> list[Block]:
    """The blocks of an ``nn.Sequential`` model (``group_units`` of ``split_units``)."""
    return group_units(split_units(model), group_size, group_by)


def group_units(units: list[Unit], group_size: int = 1,
                group_by: GroupBy | None = None) -> list[Block]:
    """Group ``units`` (in order) into blocks.

    ``group_size``: ``n`` consecutive units per block (0: one block for all). ``group_by``:
    module-name prefixes; the units whose name is a prefix or lies under it (``layer1`` takes
    ``layer1.0.conv1``) form one block, placed at the first of them; an entry that is itself a
    list of prefixes (``[conv1, layer1]``) makes one block of the units under any of them;
    every other unit is a block of its own. The two options do not combine.
    """
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0 = whole model), got {group_size}")
    if group_by:
        prefixes = [group_by] if isinstance(group_by, str) else list(group_by)
        return _group_by_prefix(units, group_size, prefixes)
    size = len(units) if group_size == 0 else group_size
    return [Block(units[i:i + size]) for i in range(0, len(units), size)]


def _group_by_prefix(units: list[Unit], group_size: int, prefixes: list) -> list[Block]:
    if group_size != 1:
        raise ValueError(f"group_by={prefixes} and group_size={group_size} do not combine: "
                         "set group_size to 1 (its default) when grouping by module name")
    if any(not isinstance(p, str) and not (isinstance(p, Sequence) and p
                                           and all(isinstance(q, str) for q in p))
           for p in prefixes):
        raise ValueError("group_by must list module-name prefixes (strings), or lists of "
                         f"prefixes that form one block together, got {prefixes}")
    blocks: dict[str | int, list[Unit]] = {}
    matched: set[str] = set()
    for i, unit in enumerate(units):
        blocks.setdefault(group_key(unit.name, i, prefixes, matched), []).append(unit)
    unused = [q for p in prefixes for q in ([p] if isinstance(p, str) else p)
              if q not in matched]
    if unused:
        known = ", ".join(u.name for u in units[:12]) + (", ..." if len(units) > 12 else "")
        raise ValueError(f"group_by: no trained layer is named {unused[0]!r} or lies under it; "
                         f"the layers are: {known}")
    return [Block(members) for members in blocks.values()]


def group_key(name: str, index: int, prefixes: Sequence[str | Sequence[str]],
              matched: set[str] | None = None) -> str | int:
    """The block that the ``index``-th unit, named ``name``, joins under ``group_by``
    ``prefixes``: the first entry with a prefix it equals or lies under (an entry is a prefix
    or a list of prefixes that form one block), else a block of its own. ``matched`` collects
    the prefix that took it."""
    for entry in prefixes:
        for prefix in [entry] if isinstance(entry, str) else entry:
            if prefix in ("", name) or name.startswith(prefix + "."):
                if matched is not None:
                    matched.add(prefix)
                return entry if isinstance(entry, str) else "+".join(entry)
    return index


def count_blocks(names: Sequence[str], group_size: int = 1,
                 group_by: GroupBy | str | None = None) -> int:
    """How many blocks ``group_units`` makes of units named ``names`` (in order), without
    checking the options (``group_units`` does)."""
    if group_by:
        prefixes = [group_by] if isinstance(group_by, str) else list(group_by)
        return len({group_key(name, i, prefixes) for i, name in enumerate(names)})
    if not names:
        return 0
    return 1 if group_size <= 0 else -(-len(names) // group_size)


def block_grads(blocks: Sequence[Block], wanted: set[int], loss: torch.Tensor,
                allow_unused: bool = False) -> dict[int, list[torch.Tensor]]:
    """``d loss / d params`` of each block in ``wanted``, one backward for all: block index ->
    gradients in ``Block.params`` order. ``allow_unused``: a parameter the loss does not reach
    gets zeros (graph engines, where a block may not feed the loss)."""
    order = sorted(wanted)
    params = [p for k in order for p in blocks[k].params]
    options = {"allow_unused": True, "materialize_grads": True} if allow_unused else {}
    grads = torch.autograd.grad(loss, params, **options)
    out, start = {}, 0
    for k in order:
        n = len(blocks[k].params)
        out[k] = list(grads[start:start + n])
        start += n
    return out
