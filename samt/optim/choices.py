"""The allowed values of SAMT's choice options, importable without torch (config checks use
them before any heavy import; ``samt.optim.components`` implements them)."""

from __future__ import annotations

FEATURE_NAMES = ("mean", "var", "max", "min", "norm")
STEP_TYPES = ("scalar", "element", "row", "column")
PROJECTIONS = ("sigmoid", "tanh")
COMBINES = ("convex", "learned", "fixed")
META_MODES = ("exact", "lookahead", "hypergradient")
ORDERS = ("top_down", "bottom_up", "random")
META_OPTIMIZERS = ("adam", "sgd")
