"""Packing SAMT's training state for a checkpoint (``SAMT.state_dict``) and back."""

from __future__ import annotations

import torch
from torch import nn

from samt.optim.meta_grad import Visit

# The counters saved with the state, in their order there (attributes of ``SAMT``).
COUNTERS = ("iteration", "scale", "param_updates", "skipped_total")


def pack_state(meta: nn.Module, optimizers: list[torch.optim.Optimizer],
               prev: dict[int, Visit], counters: dict, generator: torch.Generator) -> dict:
    """Meta-parameters, meta-optimizer state, pending visits, counters and RNG state."""
    return {
        "meta": meta.state_dict(),
        "meta_optimizers": [opt.state_dict() for opt in optimizers],
        "prev": {k: (v.phis, v.grads, v.clamped) for k, v in prev.items()},
        **counters,
        "generator": generator.get_state(),
    }


def unpack_state(state: dict, meta: nn.Module, optimizers: list[torch.optim.Optimizer],
                 generator: torch.Generator, device: torch.device) -> dict[int, Visit]:
    """Load ``pack_state``'s meta-parameters, optimizer and RNG state in place; returns the
    pending visits (on ``device``). The counters are ``state[name]`` for ``COUNTERS``."""
    meta.load_state_dict(state["meta"])
    for opt, opt_state in zip(optimizers, state["meta_optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    generator.set_state(state["generator"])
    return {int(k): Visit([t.to(device) for t in v[0]], [t.to(device) for t in v[1]],
                          clamped=bool(v[2]) if len(v) > 2 else True)
            for k, v in state["prev"].items()}
