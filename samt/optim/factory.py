"""Build an optimizer from its class: ``build_optimizer`` (library use) and ``build_stepper``
(shared with the runner, which gets the class from its config:
``samt/train/build_optimizer.py``).

Two kinds of optimizer class, told apart by the class attribute ``takes_model``:

- ``takes_model = True`` (``SAMT``): built as ``cls(model, loss_fn, **options)``; the object
  drives the model itself through ``step(inputs, targets)`` (and has ``set_scale``,
  ``epoch_stats``, ``state_dict``/``load_state_dict``, ``param_updates``, ``skipped_total``).
- any other class (``torch.optim.Adam``, ``prodigyopt.Prodigy``, ...): a ``torch.optim``-style
  optimizer built as ``cls(model.parameters(), **options)`` and wrapped in
  ``TorchOptimizerStep`` (forward, backward, non-finite guard, schedules, train/eval switches).

Depends on torch only (no Hydra): the runner does the config's instantiation.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from samt.optim.baselines import TorchOptimizerStep
from samt.optim.samt import SAMT

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ``torch.optim`` classes by lower-case name, for ``build_optimizer("adam", ...)``. LBFGS is left
# out: its step needs a closure, which ``TorchOptimizerStep`` does not pass.
_TORCH_CLASSES = {cls.__name__.lower(): cls for cls in vars(torch.optim).values()
                  if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                  and cls not in (torch.optim.Optimizer, torch.optim.LBFGS)}
# Names ``build_optimizer`` accepts besides a class or a dotted path (``torch.optim.RAdam``).
OPTIMIZERS = ("samt", *sorted(_TORCH_CLASSES))


def takes_model(cls: Any) -> bool:
    """Whether ``cls`` is built on ``(model, loss_fn)`` and steps itself (``SAMT``), rather than
    on ``model.parameters()`` and wrapped in ``TorchOptimizerStep``."""
    return bool(getattr(cls, "takes_model", False))


def optimizer_class(optimizer: str | type) -> Any:
    """The class ``optimizer`` names: a class is itself; ``samt`` is ``SAMT``; a dotted path
    (``torch.optim.RAdam``, ``prodigyopt.Prodigy``) is imported; another name is the
    ``torch.optim`` class of that name, case aside (``adam``: ``torch.optim.Adam``)."""
    if not isinstance(optimizer, str):
        return optimizer
    if optimizer == "samt":
        return SAMT
    if "." in optimizer:
        module, _, attr = optimizer.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    if optimizer.lower() not in _TORCH_CLASSES:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: a class, a dotted path "
                         f"such as torch.optim.RAdam, or one of {', '.join(OPTIMIZERS)}")
    return _TORCH_CLASSES[optimizer.lower()]


def constructor_options(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every list given where the constructor's default is a tuple made a tuple
    (configs hold lists: ``betas: [0.9, 0.999]`` becomes ``(0.9, 0.999)``)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return dict(options)
    return {k: tuple(v) if isinstance(v, list) and k in params
            and isinstance(params[k].default, tuple) else v for k, v in options.items()}


def build_stepper(make: Callable[..., Any], cls: Any, model: nn.Module,
                  loss_fn: LossFn) -> SAMT | TorchOptimizerStep:
    """The stepper from ``make``, the constructor of ``cls`` with its options bound (a
    ``functools.partial``): ``make(model, loss_fn)`` when ``takes_model(cls)``, else
    ``TorchOptimizerStep`` around ``make(model.parameters())``."""
    if takes_model(cls):
        return make(model, loss_fn)
    return TorchOptimizerStep(model, loss_fn, make(model.parameters()))


def build_optimizer(optimizer: str | type, model: nn.Module, loss_fn: LossFn,
                    **options: Any) -> SAMT | TorchOptimizerStep:
    """Build ``optimizer`` (a class, a dotted path, ``samt`` or a ``torch.optim`` name: see
    ``optimizer_class``) for ``model`` with keyword ``options``; driven by
    ``step(inputs, targets)`` either way."""
    cls = optimizer_class(optimizer)
    return build_stepper(functools.partial(cls, **constructor_options(cls, options)), cls,
                         model, loss_fn)
