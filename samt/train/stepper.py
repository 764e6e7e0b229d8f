"""The runner's contract with an optimizer: what ``samt.train.runner.Run`` and
``samt.train.folder.RunFolder`` call, written as ``typing.Protocol`` classes.

``build_from_config`` (``samt/train/build_optimizer.py``) returns a ``Stepper``: SAMT itself, or
any ``torch.optim`` optimizer wrapped in ``samt.optim.TorchOptimizerStep``. A class of your own
with ``takes_model = True`` is called as ``cls(model, loss_fn, **options)`` and must be a
``Stepper`` too (``missing_members`` names what it lacks); ``MetaStepper`` and ``Compiles`` are
the optional parts that SAMT has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Stepper(Protocol):
    """Drives the model through one mini-batch update per ``step`` and reports its counters."""

    @property
    def has_meta(self) -> bool:
        """Whether it holds meta-parameters to save at the end (``MetaStepper``)."""
        ...

    @property
    def param_updates(self) -> int:
        """Parameter-block updates so far (``metrics.csv``'s ``param_updates``)."""
        ...

    @property
    def skipped_total(self) -> int:
        """Iterations skipped for a non-finite loss or gradient so far (divergence guard)."""
        ...

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One update on a mini-batch; the loss before it."""
        ...

    def train_mode(self) -> None:
        """Before an epoch's training steps (schedule-free: the training weights)."""
        ...

    def eval_mode(self) -> None:
        """Before evaluation (schedule-free: the averaged weights)."""
        ...

    def set_scale(self, scale: float) -> None:
        """Scale the step size by ``scale`` (``optimizer.schedule``)."""
        ...

    def epoch_stats(self) -> dict[str, float]:
        """Statistics since the last call: ``skipped`` and any per-block columns."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumption needs (saved in ``checkpoint.pt``)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s result."""
        ...


@runtime_checkable
class MetaStepper(Stepper, Protocol):
    """A ``Stepper`` with meta-parameters (SAMT's eta models): saved at the end of a run
    (``samt_meta.pt``) and loaded by another run's ``optimizer.meta_init``."""

    def save_meta(self, path: str | os.PathLike) -> None:
        """Write the meta-parameters to ``path``."""
        ...

    def load_meta(self, source: Any) -> Path:
        """Start from the meta-parameters of ``source``; the file they came from."""
        ...


@runtime_checkable
class Compiles(Protocol):
    """An optimizer that compiles its kernels: ``compile_error`` says why it runs eager."""

    compile_error: str | None


def missing_members(stepper: object) -> list[str]:
    """The members of ``Stepper`` that ``stepper`` lacks (none for a conforming object)."""
    names = [name for name in dir(Stepper) if not name.startswith("_")]
    return [name for name in sorted(names) if not hasattr(stepper, name)]
