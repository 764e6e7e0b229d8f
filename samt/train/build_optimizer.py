"""The run's optimizer from its config group: ``_target_`` names the class, Hydra instantiates it.

An optimizer config (``conf/optimizer/*.yaml``) is ``_target_`` (the class, e.g.
``torch.optim.RAdam`` or ``samt.optim.SAMT``), ``_partial_: true`` (the class is called later,
with what only the runner has), the runner's own keys (``RUNNER_KEYS``: ``name``, ``label``,
``schedule``, ``constant_schedule_only``; never passed on) and the constructor's keyword options.
``hydra.utils.instantiate`` of the rest gives the constructor with its options bound; then
``samt.optim.factory.build_stepper`` calls it with ``(model, loss_fn)`` for a class with
``takes_model = True`` (SAMT), else with ``model.parameters()`` and wraps the optimizer in
``TorchOptimizerStep``. Adding an optimizer is therefore a yaml file (docs/extending.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from samt.optim.baselines import TorchOptimizerStep
from samt.optim.factory import build_stepper, constructor_options
from samt.optim.samt import SAMT
from samt.validation import RUNNER_KEYS, ConfigError

__all__ = ["build_from_config", "optimizer_constructor", "optimizer_options"]


def optimizer_options(opt_cfg: dict) -> dict:
    """What goes to ``instantiate``: the optimizer config without ``RUNNER_KEYS`` (so with
    ``_target_``, ``_partial_`` and the keyword options)."""
    return {k: v for k, v in opt_cfg.items() if k not in RUNNER_KEYS}


def optimizer_constructor(opt_cfg: dict) -> tuple[Callable[..., Any], Any]:
    """``(make, cls)``: the class that ``opt_cfg['_target_']`` names, with the config's keyword
    options bound by ``hydra.utils.instantiate`` (``RUNNER_KEYS`` left out; a list where the
    constructor's default is a tuple made a tuple), and the class. ``make`` is called with
    the parameters (or ``(model, loss_fn)``); a ``_target_`` that Hydra refuses is a
    ``ConfigError`` naming ``optimizer._target_``."""
    options = optimizer_options(opt_cfg)
    try:
        make = instantiate(options, _partial_=True, _convert_="all")
    except InstantiationException as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"optimizer._target_={options.get('_target_')!r} is invalid: "
                          f"{detail}") from None
    cls = make.func
    # Configs hold lists; a constructor whose default is a tuple (betas) gets a tuple.
    tuples = {k: v for k, v in constructor_options(cls, make.keywords).items()
              if v is not make.keywords[k]}
    if tuples:
        make = functools.partial(make, **tuples)
    return make, cls


def build_from_config(opt_cfg: dict, model: nn.Module,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                      ) -> SAMT | TorchOptimizerStep:
    """Build the optimizer that the (validated) optimizer config ``opt_cfg`` describes for
    ``model``. SAMT's ``meta_init`` is left out: the runner applies it to a fresh start only
    (``Run.init_meta``), after the optimizer exists."""
    make, cls = optimizer_constructor({k: v for k, v in opt_cfg.items() if k != "meta_init"})
    return build_stepper(make, cls, model, loss_fn)
