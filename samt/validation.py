"""Check a resolved run config before any work starts: one place, one clear message per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samt.data import DATASETS
from samt.models import MODELS
from samt.optim import OPTIMIZERS
from samt.optim.components import (
    COMBINES,
    FEATURE_NAMES,
    META_MODES,
    ORDERS,
    PROJECTIONS,
    STEP_TYPES,
)
from samt.optim.schedules import SCHEDULES


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _number(cfg: dict, key: str, kind: type, low: float | None = None, *,
            strict: bool = False) -> Any:
    section, _, name = key.rpartition(".")
    node = cfg
    for part in filter(None, section.split(".")):
        node = node[part]
    value = node.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        _fail(key, value, f"expected {'a number' if kind is float else 'an integer'}")
    if low is not None and (value <= low if strict else value < low):
        _fail(key, value, f"must be {'>' if strict else '>='} {low}")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(key, value, f"allowed: {', '.join(allowed)}")


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise ``ConfigError`` for the first invalid value in the resolved config ``cfg``."""
    _number(cfg, "epochs", int, 1)
    _number(cfg, "batch_size", int, 1)
    _number(cfg, "eval_batch_size", int, 1)
    _number(cfg, "seed", int, 0)
    _number(cfg, "max_consecutive_skips", int, 1)
    _choice("dataset.name", cfg["dataset"]["name"], tuple(DATASETS))
    if "split" in cfg["dataset"]:
        _number(cfg, "dataset.split", int, 0)
    _choice("model.name", cfg["model"]["name"], tuple(MODELS))
    hidden = cfg["model"].get("hidden")
    if isinstance(hidden, list) and (not hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden)):
        _fail("model.hidden", hidden, "a non-empty list of positive integers, e.g. [400]")
    _choice("device.type", cfg["device"]["type"], ("cpu", "cuda", "auto"))
    root = Path(cfg["data"]["root"])
    if root.exists() and not root.is_dir():
        _fail("data.root", str(root), "must be a folder (set SAMT_DATA_ROOT or data.root)")
    _validate_optimizer(cfg)


def _validate_optimizer(cfg: dict[str, Any]) -> None:
    opt = cfg["optimizer"]
    _choice("optimizer.name", opt["name"], OPTIMIZERS)
    _choice("optimizer.schedule", opt.get("schedule", "constant"), SCHEDULES)
    if opt["name"] != "samt":
        _number(cfg, "optimizer.lr", float, 0.0, strict=True)
        if "weight_decay" in opt:
            _number(cfg, "optimizer.weight_decay", float, 0.0)
        if "momentum" in opt:
            _number(cfg, "optimizer.momentum", float, 0.0)
        return
    _choice("optimizer.step_type", opt["step_type"], STEP_TYPES)
    _choice("optimizer.projection", opt["projection"], PROJECTIONS)
    _choice("optimizer.combine", opt["combine"], COMBINES)
    _choice("optimizer.meta_mode", opt["meta_mode"], META_MODES)
    _choice("optimizer.order", opt["order"], ORDERS)
    _choice("optimizer.meta_optimizer", opt["meta_optimizer"], ("adam", "sgd"))
    eta_min = _number(cfg, "optimizer.eta_min", float, 0.0)
    eta_max = _number(cfg, "optimizer.eta_max", float, 0.0, strict=True)
    eta0 = _number(cfg, "optimizer.eta0", float, 0.0, strict=True)
    if eta_min >= eta_max:
        _fail("optimizer.eta_min", eta_min, f"must be below optimizer.eta_max={eta_max}")
    if not eta_min <= eta0 <= eta_max or (opt["projection"] == "sigmoid" and eta0 >= eta_max):
        _fail("optimizer.eta0", eta0, f"must lie in [eta_min, eta_max] = [{eta_min}, {eta_max}]"
              + (" and below eta_max with projection=sigmoid"
                 if opt["projection"] == "sigmoid" else ""))
    _number(cfg, "optimizer.meta_lr", float, 0.0)
    _number(cfg, "optimizer.meta_interval", int, 1)
    _number(cfg, "optimizer.eta_hidden", int, 1)
    _number(cfg, "optimizer.group_size", int, 0)
    _number(cfg, "optimizer.tanh_c", float, 0.0, strict=True)
    features = opt["features"]
    if not isinstance(features, list) or not features or any(
            f not in FEATURE_NAMES for f in features):
        _fail("optimizer.features", features,
              f"a non-empty list drawn from {', '.join(FEATURE_NAMES)}")
    if opt["features_per_group"] and opt["step_type"] not in ("row", "column"):
        _fail("optimizer.features_per_group", True,
              f"only with step_type row or column (got step_type={opt['step_type']})")
