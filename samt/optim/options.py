"""SAMT's keyword options and their defaults, once, importable without torch.

``SAMT.__init__`` takes every keyword default from ``DEFAULTS``; the runner's SAMT preset is
built on the same values (``samt.schema`` registers them as its base), so a default is changed
here and nowhere else. The allowed values of the choice options are in ``samt.optim.choices``;
``SAMT``'s docstring says what each option does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from samt.optim.choices import FEATURE_NAMES


@dataclass(frozen=True)
class SAMTOptions:
    """The keyword options of ``SAMT(model, loss_fn, **options)`` with their defaults."""

    step_type: str = "element"        # scalar | element | row | column
    eta0: float = 0.1                 # initial step; the convex combination's fixed term
    eta_min: float = 1e-6             # every applied step is clamped to [eta_min, eta_max]
    eta_max: float = 0.3              # 3 * eta0: the same-batch meta-loss drives steps up to it
    projection: str = "sigmoid"       # sigmoid: eta_max*sigmoid(u) | tanh: eta0*exp(tanh_c*tanh(u))
    tanh_c: float = math.log(100.0)   # ln(100): the tanh projection's range is eta0*e^(+-c)
    combine: str = "convex"           # convex (paper) | learned (right term alone) | fixed
    meta_mode: str = "exact"          # exact (paper) | lookahead | hypergradient
    meta_lr: float = 1e-3             # learning rate of the meta-optimizer
    meta_optimizer: str = "adam"      # adam | sgd
    meta_interval: int = 1            # meta-update every n-th iteration
    features: tuple[str, ...] = FEATURE_NAMES   # gradient features the eta models read
    features_per_group: bool = False  # per row/column features (row and column types)
    eta_hidden: int = 32              # width of each eta model
    eta_shared: bool = False          # one eta model for all blocks, with a block embedding
    group_size: int = 1               # layers per block; 0: the whole model is one block
    # module-name prefixes: the layers under each form one block (a ResNet stage); an entry
    # that is a list of prefixes makes one block of all of them; other layers one each
    group_by: tuple[str | tuple[str, ...], ...] | None = None
    order: str = "top_down"           # top_down | bottom_up | random
    seed: int = 0                     # seed of the generator used by order random
    meta_init: str | None = None      # start from another run's meta-parameters (a path)
    compile: bool = False             # torch.compile the analytic path's element-wise chains:
                                      # faster steps, seconds of compile time per run (measured
                                      # in docs/performance.md); equal to eager up to rounding


DEFAULTS = SAMTOptions()
