"""SAMT's meta step: one ``torch.optim`` step over the meta-parameters of any set of blocks.

Each block (or the one shared eta model) owns an optimizer over its meta-parameters, so that
checkpoints keep one state per block and a block's step touches only its own tensors. A step
over several blocks at once (the batched meta-update of an iteration) runs one combined
optimizer of the same kind whose state entries *are* the owners' (``state[p]`` the same dict):
one multi-tensor (fused Adam) step with the same arithmetic per tensor as the owners' own
steps. Once Adam's state exists, the step calls torch.optim's public functional Adam
(``torch.optim.adam.adam``, what ``Adam.step`` calls) on it directly, without
``Optimizer.step``'s per-call bookkeeping (about 0.1 ms per call on a CPU, paid per block and
iteration); ``tests/test_samt_batched_meta.py`` pins it to ``Optimizer.step``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.optim.adam import adam as functional_adam

MakeOptimizer = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


def make_meta_optimizer(kind: str, lr: float) -> MakeOptimizer:
    """A maker of the meta-optimizer ``kind``: fused Adam (``adam``) or plain SGD (``sgd``)."""
    if kind == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr, fused=True)
    return lambda params: torch.optim.SGD(params, lr=lr)


class MetaStep:
    """The meta-optimizers of ``groups`` (the meta-parameters of each owner) and their step."""

    def __init__(self, groups: list[list[nn.Parameter]], make: MakeOptimizer):
        self.groups = groups
        self.optimizers = [make(group) for group in groups]
        self._combined = make([p for group in groups for p in group])

    def step(self, owners: Sequence[int]) -> None:
        """Step the meta-parameters of ``owners`` (their ``.grad`` set; those without one are
        left alone): one combined step, or one step per owner where their hyper-parameters
        were made to differ by hand."""
        hyper = _hyper(self.optimizers[owners[0]].param_groups[0])
        if any(_hyper(self.optimizers[k].param_groups[0]) != hyper for k in owners[1:]):
            for k in owners:
                self.optimizers[k].step()
            return
        if FUNCTIONAL_ADAM and self._functional_adam(owners, hyper):
            return
        combined = self._combined
        group = combined.param_groups[0]
        group.update(hyper)
        group["params"] = [p for k in owners for p in self.groups[k]]
        combined.state.clear()
        for k in owners:
            state = self.optimizers[k].state
            combined.state.update((p, state[p]) for p in self.groups[k] if p in state)
        combined.step()
        for k in owners:  # state made by this first step (Adam's moments) goes to its owner
            state = self.optimizers[k].state
            for p in self.groups[k]:
                if p not in state and combined.state.get(p):
                    state[p] = combined.state[p]

    def _functional_adam(self, owners: Sequence[int], hyper: dict) -> bool:
        """The fused Adam step of ``owners``'s parameters that have a gradient, through the
        functional API on the owners' state; False, doing nothing, where ``Optimizer.step`` is
        needed: not plain fused Adam, or a state not yet made (the first step makes it)."""
        if (type(self._combined) is not torch.optim.Adam or not hyper.get("fused")
                or hyper["amsgrad"] or hyper["maximize"] or hyper["capturable"]
                or hyper["differentiable"] or hyper.get("decoupled_weight_decay")
                or isinstance(hyper["lr"], torch.Tensor)):
            return False
        pairs = [(p, self.optimizers[k].state.get(p)) for k in owners for p in self.groups[k]
                 if p.grad is not None]
        if not pairs or any(not state for _, state in pairs):
            return False
        beta1, beta2 = hyper["betas"]
        with torch.no_grad():
            functional_adam([p for p, _ in pairs], [p.grad for p, _ in pairs],
                            [state["exp_avg"] for _, state in pairs],
                            [state["exp_avg_sq"] for _, state in pairs], [],
                            [state["step"] for _, state in pairs], fused=True, amsgrad=False,
                            beta1=beta1, beta2=beta2, lr=hyper["lr"],
                            weight_decay=hyper["weight_decay"], eps=hyper["eps"],
                            maximize=False)
        return True


# The functional Adam call in use (False: always ``Optimizer.step``; the tests compare the two).
FUNCTIONAL_ADAM = True


def _hyper(group: dict) -> dict:
    """An optimizer param group's hyper-parameters (everything but its parameters)."""
    return {key: value for key, value in group.items() if key != "params"}
