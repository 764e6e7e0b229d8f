"""Seeding, RNG state capture/restore (for checkpoints) and device selection."""

from __future__ import annotations

import random

import numpy as np
import torch

from samt.validation import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device, batch_generator: torch.Generator) -> dict:
    """Every RNG a run draws from, as plain types and tensors (loadable with weights_only)."""
    key, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "batch_generator": batch_generator.get_state(),
    }


def set_rng_state(state: dict, device: torch.device, batch_generator: torch.Generator) -> None:
    """Restore what ``rng_state`` captured."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state((np_state["key"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    batch_generator.set_state(state["batch_generator"])


def resolve_device(kind: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device.type='cuda' is invalid: torch sees no CUDA device on this "
                          "machine; use device=cpu or device=auto")
    return torch.device(kind)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
