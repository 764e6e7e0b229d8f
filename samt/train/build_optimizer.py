"""The run's optimizer from its config group: ``_target_`` names the class, bound with the options.

An optimizer config (``conf/optimizer/*.yaml``) is ``_target_`` (the class, e.g.
``torch.optim.RAdam`` or ``samt.optim.SAMT``), ``_partial_: true`` (the class is called later,
with what only the runner has), the runner's own keys (``RUNNER_KEYS``: ``name``, ``label``,
``schedule``, ``constant_schedule_only``; never passed on) and the constructor's keyword options.
``samt.targets.optimizer_constructor`` imports the class (after checking that it is one of the
allowed kind) and binds the options; then ``samt.optim.factory.build_stepper`` calls it with
``(model, loss_fn)`` for a class with ``takes_model = True`` (SAMT), else with
``model.parameters()`` and wraps the optimizer in ``TorchOptimizerStep``. Adding an optimizer is
therefore a yaml file (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from samt.errors import ConfigError
from samt.optim.factory import build_stepper
from samt.targets import optimizer_constructor, optimizer_options
from samt.train.stepper import Stepper, missing_members

__all__ = ["build_from_config", "optimizer_constructor", "optimizer_options"]


def build_from_config(opt_cfg: dict, model: nn.Module,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Stepper:
    """Build the optimizer that the (validated) optimizer config ``opt_cfg`` describes for
    ``model``. SAMT's ``meta_init`` is left out: the runner applies it to a fresh start only
    (``Run.init_meta``), after the optimizer exists. A class with ``takes_model = True`` whose
    objects lack a member of the runner's contract (``Stepper``) is a ``ConfigError``."""
    make, cls = optimizer_constructor({k: v for k, v in opt_cfg.items() if k != "meta_init"})
    stepper = build_stepper(make, cls, model, loss_fn)
    missing = missing_members(stepper)
    if missing:
        raise ConfigError(f"optimizer._target_={opt_cfg.get('_target_')!r} is invalid: its "
                          f"objects lack {', '.join(missing)}, which the runner calls (the "
                          "contract samt.train.stepper.Stepper; docs/extending.md)")
    return stepper
