"""Refuse a model or SAMT eta model that cannot fit in memory, before anything is allocated.

The model is built on PyTorch's ``meta`` device (shapes only, no memory) to count its
parameters; SAMT's eta models likewise (``optimizer.eta_hidden``). If their float32 weights and
gradients alone exceed the memory available (CPU: ``MemAvailable`` of ``/proc/meminfo``; CUDA:
the device's free memory), the run stops with one ``ConfigError`` naming the key, instead of an
allocation failure or the kernel's out-of-memory killer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from samt.errors import ConfigError
from samt.targets import build_configured_model

BYTES_PER_PARAM = 2 * 4  # float32 weights and their gradients: the least a step needs


def available_memory(device: torch.device) -> int | None:
    """Bytes of memory available on ``device`` now, or None when unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _size_key(section: str, node: dict[str, Any]) -> str:
    """``section.key=value`` of the largest size-like option (an integer or a list of them)."""
    def size(value: Any) -> int:
        if isinstance(value, bool):
            return 0
        if isinstance(value, int):
            return value
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                           for v in value) and value:
            return max(value)
        return 0

    key = max((k for k in node if k != "name"), key=lambda k: size(node[k]), default=None)
    if key is None or not size(node[key]):
        return f"{section}={node.get('name')!r}"
    return f"{section}.{key}={node[key]!r}"


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def _eta_parameters(opt: dict[str, Any], units: Sequence[str]) -> int:
    """Parameters of SAMT's eta models for a model whose layers are named ``units`` (0 without
    them); blocks as SAMT groups them (``group_size``, ``group_by``)."""
    if "eta_hidden" not in opt or opt.get("combine") == "fixed":
        return 0
    from samt.optim.blocks import count_blocks
    from samt.optim.components import EtaModel

    hidden, shared = int(opt["eta_hidden"]), bool(opt.get("eta_shared"))
    blocks = max(count_blocks(units, int(opt.get("group_size") or 0), opt.get("group_by")), 1)
    with torch.device("meta"):
        eta = EtaModel(len(opt.get("features") or ()), hidden,
                       num_blocks=blocks if shared else 0)
    return sum(p.numel() for p in eta.parameters()) * (1 if shared else blocks)


def check_fits(cfg: dict[str, Any], input_shape: Sequence[int], num_outputs: int,
               device: torch.device) -> None:
    """``ConfigError`` when the model's (or SAMT's eta models') weights and gradients cannot fit
    in the memory available on ``device``; nothing is allocated. Models that cannot be built on
    the ``meta`` device are not checked."""
    available = available_memory(device)
    if available is None:
        return
    try:
        with torch.device("meta"):
            model = build_configured_model(cfg["model"], input_shape, num_outputs)
    except Exception:  # a user error here is reported when the model is built for real
        return
    params = sum(p.numel() for p in model.parameters())
    units = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)] or [""]
    where = f"the memory available on this machine ({device.type}: {_gb(available)})"
    if params * BYTES_PER_PARAM > available:
        raise ConfigError(
            f"{_size_key('model', cfg['model'])} is invalid: model {cfg['model']['name']} "
            f"would have {params:.3g} parameters, {_gb(params * BYTES_PER_PARAM)} for their "
            f"float32 weights and gradients alone, more than {where}; choose smaller sizes")
    eta = _eta_parameters(cfg["optimizer"], units)
    if (params + eta) * BYTES_PER_PARAM > available:
        raise ConfigError(
            f"optimizer.eta_hidden={cfg['optimizer']['eta_hidden']!r} is invalid: SAMT's eta "
            f"models would have {eta:.3g} parameters, with the model's "
            f"{_gb((params + eta) * BYTES_PER_PARAM)} for float32 weights and gradients alone, "
            f"more than {where}; choose a smaller eta_hidden (default 32)")
