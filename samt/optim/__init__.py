"""Optimizers: SAMT and any ``torch.optim``-style optimizer, driven by ``step(inputs, targets)``.

Usable without Hydra or the runner::

    from samt.optim import SAMT
    opt = SAMT(model, nn.functional.cross_entropy, step_type="element", eta0=0.1)
    for x, y in batches:
        loss = opt.step(x, y)

The names below are imported on first use (PEP 562), so that ``samt.optim.choices`` and
``samt.optim.schedules`` stay importable without torch (the CLI's config checks use them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samt.optim.baselines import TorchOptimizerStep
    from samt.optim.blocks import SAMTModelError, split_blocks, split_units
    from samt.optim.factory import OPTIMIZERS, build_optimizer, takes_model
    from samt.optim.meta_file import MetaInitError, SavedMeta, read_meta
    from samt.optim.samt import SAMT
    from samt.optim.step_stats import STAT_NAMES

_LAZY = {
    "SAMT": "samt.optim.samt", "STAT_NAMES": "samt.optim.step_stats",
    "MetaInitError": "samt.optim.meta_file", "read_meta": "samt.optim.meta_file",
    "SavedMeta": "samt.optim.meta_file",
    "SAMTModelError": "samt.optim.blocks", "split_blocks": "samt.optim.blocks",
    "split_units": "samt.optim.blocks",
    "TorchOptimizerStep": "samt.optim.baselines",
    "OPTIMIZERS": "samt.optim.factory", "build_optimizer": "samt.optim.factory",
    "takes_model": "samt.optim.factory",
}

__all__ = ["SAMT", "STAT_NAMES", "OPTIMIZERS", "MetaInitError", "SAMTModelError", "SavedMeta",
           "TorchOptimizerStep", "build_optimizer", "read_meta", "split_blocks", "split_units",
           "takes_model"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'samt.optim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
