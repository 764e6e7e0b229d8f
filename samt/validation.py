"""Check a resolved run config before any work starts: one place, one clear message per problem.

``validate_config`` checks types, ranges, choices and unknown keys (outside the optimizer
group: as ``samt.schema`` describes them; static, no I/O except
``data.root``; torch is imported only for the last checks, against the dataset registry and the
optimizer class that ``optimizer._target_`` names, so most bad values are reported at once);
``validate_environment``
checks what depends on the machine (CUDA);
``validate_against_data`` checks what needs the loaded dataset (batch size, an accuracy
target). Every failure is a
``ConfigError`` whose message names the key, the value given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

from samt import schema as schema_module
from samt.errors import ConfigError
from samt.optim import choices
from samt.optim.schedules import SCHEDULES
from samt.run_folder import long_path_part
from samt.schema import (
    BOUNDS,
    CONFIG_KEYS,
    SECTIONS,
    SEED_MAX,
    RunConfig,
    field_types,
)
from samt.targets import (
    DATASET_TARGET_ALLOWED,
    INSTANTIATE_KEYS,
    MODEL_TARGET_ALLOWED,
    RUNNER_KEYS,
    SAMT_TARGETS,
    TARGET,
    TARGET_ALLOWED,
    check_no_nested_targets,
    dataset_loader,
    model_builder,
    optimizer_class,
    optimizer_constructor,
)
from samt.tracking import logger_problem

__all__ = ["INSTANTIATE_KEYS", "RUNNER_KEYS", "SAMT_TARGETS", "ConfigError", "check_name_part",
           "optimizer_target", "validate_against_data", "validate_config",
           "validate_environment"]

# ``device.threads`` at most this (or 4 threads per CPU on a larger machine): threads beyond it
# cannot help and enough of them exhaust memory.
MAX_THREADS = 64
TOP_KEYS = tuple(SECTIONS)  # sections that must exist (samt.schema; CONFIG_KEYS: every key)
# A value that becomes part of a run folder's name (optimizer.label): no path separator, no "..".
NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
NAME_PART_ALLOWED = ("1 to 100 characters from letters, digits and _ . + - (the first a letter "
                     "or digit), without '..': it becomes part of the run folder's name")


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _get(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _number(cfg: dict, key: str, kind: type, low: float | None = None, *,
            strict: bool = False, high: float | None = None, high_strict: bool = False) -> Any:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        _fail(key, value, f"expected {'a number' if kind is float else 'an integer'}")
    if not math.isfinite(value):
        _fail(key, value, "expected a finite number")
    if low is not None and (value <= low if strict else value < low):
        _fail(key, value, f"must be {'>' if strict else '>='} {low}")
    if high is not None and (value >= high if high_strict else value > high):
        _fail(key, value, f"must be {'<' if high_strict else '<='} {high}")
    return value


def _bool(cfg: dict, key: str, *, optional: bool = False) -> None:
    value = _get(cfg, key)
    if not (isinstance(value, bool) or (optional and value is None)):
        _fail(key, value, "expected true or false" + (" (or null)" if optional else ""))


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if not any(type(value) is type(a) and value == a for a in allowed):
        names = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        _fail(key, value, f"allowed: {names}")


def _known_keys(section: str, node: dict, known: tuple[str, ...] | list[str] | None,
                what: str) -> None:
    if known is None:
        return
    for key, value in node.items():
        if key not in known:
            _unknown(f"{section}.{key}", value, known, f"key for {what}")


def _unknown(key: str, value: Any, known: tuple[str, ...] | list[str], what: str) -> None:
    """``key`` is not one of ``known``: say so, with the closest known key when one is close
    (``did you mean optimizer=sgd?`` for a top-level typo of a config group's name)."""
    section, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = ""
    if close and not section and close[0] in TOP_KEYS and isinstance(value, str):
        hint = f"did you mean {close[0]}={value}? "
    elif close:
        hint = f"did you mean {section + '.' if section else ''}{close[0]}? "
    _fail(key, value, f"unknown {what}; {hint}known keys: {', '.join(sorted(known))}")


def _positive_int_list(cfg: dict, key: str, example: str) -> None:
    value = _get(cfg, key)
    if not isinstance(value, list) or not value or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        _fail(key, value, f"a non-empty list of positive integers, e.g. {example}")


TAG = re.compile(r"[^,\s](?:[^,\n\r\t]{0,98}[^,\s])?")  # a tag: printable, no comma or edge space
TAG_ALLOWED = ("a list of tags, e.g. [baseline,lr_sweep]: each 1 to 100 characters, without "
               "commas or line breaks")


def _tag_list(cfg: dict, key: str) -> None:
    """A list of tags (``TAG``; empty allowed), each at most once."""
    value = _get(cfg, key)
    if not isinstance(value, list) or any(not isinstance(t, str) or not TAG.fullmatch(t)
                                          for t in value):
        _fail(key, value, TAG_ALLOWED)
    repeated = sorted({t for t in value if value.count(t) > 1})
    if repeated:
        _fail(key, value, f"lists {', '.join(repeated)} more than once; {TAG_ALLOWED}")


def _seed(cfg: dict, key: str) -> None:
    """A seed: an integer in ``0..SEED_MAX`` (what torch, numpy and the report all handle)."""
    seed = _number(cfg, key, int, 0)
    if seed > SEED_MAX:
        _fail(key, seed, f"a seed must lie in 0..{SEED_MAX} (2**63-1)")


def _signature_keys(fn: Any, skip: tuple[str, ...]) -> list[str] | None:
    """Keyword options ``fn`` accepts; ``None`` when it takes ``**options`` (a factory whose
    options only the optimizer it builds knows) or has no signature to read (checked when it is
    built)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [p for p in params if p not in skip]


def _with(fixed: tuple[str, ...], keys: list[str] | None) -> list[str] | None:
    return None if keys is None else [*fixed, *keys]


def check_name_part(key: str, value: Any) -> None:
    """``ConfigError`` unless ``value`` can be part of a run folder's name (``NAME_PART``)."""
    if not isinstance(value, str) or not NAME_PART.fullmatch(value) or ".." in value:
        _fail(key, value, f"allowed: {NAME_PART_ALLOWED}")


def _known_top_keys(cfg: dict[str, Any]) -> None:
    """Every top-level key must be one of ``CONFIG_KEYS``; a typo gets the close match."""
    for key, value in cfg.items():
        if key not in CONFIG_KEYS:
            _unknown(str(key), value, CONFIG_KEYS, "top-level key")


def _check_fields(cfg: dict[str, Any], section: str, schema: type) -> None:
    """Check the keys of ``section`` (``""``: the top level) that ``schema`` (samt.schema)
    describes: each one's type, range or choices; a missing one unless it is optional."""
    node = _get(cfg, section) if section else cfg
    for f in dataclasses.fields(schema):
        kind = field_types(schema)[f.name]
        if dataclasses.is_dataclass(kind) or (f.name not in node and f.metadata.get("optional")):
            continue  # a section (``data``: checked on its own); an optional key left out
        _check_field(cfg, f"{section}.{f.name}" if section else f.name, kind, f)


def _check_field(cfg: dict[str, Any], key: str, kind: Any, spec: dataclasses.Field) -> None:
    """One key against its schema field ``spec`` of type ``kind``."""
    rules, value = spec.metadata, _get(cfg, key)
    nullable = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if nullable:  # X | None -> X
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if "choices" in rules:
        _choice(key, value, rules["choices"])
    elif kind is Any or (nullable and value is None):
        return
    elif kind is bool:
        _bool(cfg, key)
    elif rules.get("seed"):
        _seed(cfg, key)
    elif kind in (int, float):
        _number(cfg, key, kind, **{k: rules[k] for k in BOUNDS if k in rules})
    elif kind is str:
        if not isinstance(value, str) or not value:
            _fail(key, value, rules.get("expect", "expected a non-empty string"))
    elif typing.get_origin(kind) is list and typing.get_args(kind) == (str,):
        _tag_list(cfg, key)
    elif typing.get_origin(kind) is dict and "schemas" in rules:
        _named_settings(cfg, key, getattr(schema_module, rules["schemas"]))
    elif typing.get_origin(kind) is list:
        _positive_int_list(cfg, key, str(spec.default_factory()))
    else:
        raise TypeError(f"samt.schema: no check for {key}'s type {kind}")


def _named_settings(cfg: dict[str, Any], key: str, schemas: dict[str, type]) -> None:
    """``key`` maps names of ``schemas`` to settings, each checked by its schema (``logger``:
    ``{tensorboard: {}, mlflow: {experiment_name: samt}}``)."""
    value = _get(cfg, key)
    if not isinstance(value, dict):
        _fail(key, value, f"expected a mapping of {key} names to their settings, as the "
              f"config group conf/{key}/ composes it: choose with {key}=NAME or "
              f"{key}=[NAME,NAME] ({', '.join(schemas)})")
    for name, settings in value.items():
        if name not in schemas:
            _unknown(f"{key}.{name}", settings, tuple(schemas), f"{key} (conf/{key}/)")
        if not isinstance(settings, dict):
            _fail(f"{key}.{name}", settings, f"expected the settings of {key} {name} (a "
                  "mapping; {} for the defaults)")
        _known_keys(f"{key}.{name}", settings, tuple(field_types(schemas[name])),
                    f"{key} {name}")
        _check_fields(cfg, f"{key}.{name}", schemas[name])


def _check_sections(cfg: dict[str, Any]) -> None:
    """Each section with a schema: unknown keys (with the closest known one), then its keys.
    A section whose schema depends on its ``name`` (``model``) checks that name first."""
    for section, schema in SECTIONS.items():
        node = cfg[section]
        if schema is None:
            continue  # the optimizer group: _check_optimizer, _validate_registered
        if section == "dataset" and "_target_" in node:
            _check_target_dataset(cfg)  # a user's dataset: its options are its function's
            continue
        if section == "model" and "_target_" in node:
            _check_target_model(cfg)  # a user's model: its options are its function's
            continue
        if isinstance(schema, dict):
            _choice(f"{section}.name", node.get("name"), tuple(schema))
            schema = schema[node["name"]]
        what = f"{section} {node.get('name')}" if "name" in field_types(schema) else section
        _known_keys(section, node, tuple(field_types(schema)), what)
        _check_fields(cfg, section, schema)


def _check_target_dataset(cfg: dict[str, Any]) -> None:
    """A dataset config with a ``_target_`` (a user's function; docs/datasets.md), statically:
    the target a dotted path, ``name`` a name that can be part of the run folder's name,
    ``split`` (optional) an integer >= 0. Its options are checked against the function's
    signature in ``_validate_registered``."""
    node = cfg["dataset"]
    target = node["_target_"]
    if not isinstance(target, str) or not TARGET.fullmatch(target):
        _fail("dataset._target_", target, f"expected {DATASET_TARGET_ALLOWED}")
    fields = {f.name: f for f in dataclasses.fields(SECTIONS["dataset"])}
    _check_field(cfg, "dataset.name", str, fields["name"])
    check_name_part("dataset.name", node["name"])
    if "split" in node:
        _check_field(cfg, "dataset.split", int, fields["split"])


def _check_target_model(cfg: dict[str, Any]) -> None:
    """A model config with a ``_target_`` (a user's function; docs/extending.md), statically:
    the target a dotted path, ``name`` a name that can be part of the run folder's name. Its
    options are checked against the function's signature in ``_validate_registered``."""
    node = cfg["model"]
    target = node["_target_"]
    if not isinstance(target, str) or not TARGET.fullmatch(target):
        _fail("model._target_", target, f"expected {MODEL_TARGET_ALLOWED}")
    check_name_part("model.name", node.get("name"))


def _check_data_root(cfg: dict[str, Any]) -> None:
    """``data.root`` (a non-empty string, checked by the schema) must not name a file."""
    path = Path(cfg["data"]["root"]).expanduser()
    too_long = long_path_part(path)
    if too_long:
        _fail("data.root", str(path), too_long)
    if path.exists() and not path.is_dir():
        _fail("data.root", str(path), "must be a folder, not a file "
              "(set SAMT_DATA_ROOT or data.root)")


def _check_stop_at_target(cfg: dict[str, Any]) -> None:
    """``stop_at_target`` (its type and range: the schema) is a validation metric's value: it
    needs a validation split (``data.val_fraction`` > 0)."""
    target = cfg.get("stop_at_target")
    if target is not None and not (cfg["data"].get("val_fraction") or 0) > 0:
        _fail("stop_at_target", target, "needs a validation split, whose metric it is compared "
              "with: set data.val_fraction > 0 (e.g. 0.1); allowed without one: null")


def validate_config(cfg: dict[str, Any]) -> None:
    """Raise ``ConfigError`` for the first invalid value in the resolved config ``cfg``."""
    _known_top_keys(cfg)
    for section in TOP_KEYS:
        if not isinstance(cfg.get(section), dict):
            _fail(section, cfg.get(section), "expected a config group (a mapping)")
    check_no_nested_targets(cfg)  # before anything is imported (samt/targets.py)
    _check_fields(cfg, "", RunConfig)
    _check_sections(cfg)
    _check_data_root(cfg)
    _check_stop_at_target(cfg)
    _check_optimizer(cfg)
    _validate_registered(cfg)


def _validate_registered(cfg: dict[str, Any]) -> None:
    """The checks against the optimizer class that ``optimizer._target_`` names, the function
    a model's ``_target_`` names (imported and checked, not called:
    ``samt.targets.model_builder``), and the dataset registry (or, for a dataset with a
    ``_target_``, the function it names, imported and checked, not called:
    ``samt.targets.dataset_loader``). They import torch, so they come last: every other bad
    value is reported without that import (``samt-run`` answers in well under a second;
    docs/performance.md)."""
    _check_optimizer_class(cfg)
    if "_target_" in cfg["model"]:
        model_builder(cfg["model"])
    if "_target_" in cfg["dataset"]:
        dataset_loader(cfg["dataset"])
        return
    from samt.data import DATASETS

    _choice("dataset.name", cfg["dataset"].get("name"), tuple(DATASETS))


def _check_optimizer(cfg: dict[str, Any]) -> None:
    """The optimizer group's static checks (no torch): ``name``, ``label``, ``schedule``,
    ``_target_`` and ``_partial_``, then SAMT's options (``_target_`` in ``SAMT_TARGETS``) or
    a ``torch.optim``-style optimizer's. The class itself is checked in ``_validate_registered``.
    """
    opt = cfg["optimizer"]
    name = opt.get("name")
    if not isinstance(name, str) or not name:
        _fail("optimizer.name", name, "expected the name of an optimizer (conf/optimizer/)")
    _choice("optimizer.schedule", opt.get("schedule", "constant"), SCHEDULES)
    if "label" in opt:
        check_name_part("optimizer.label", opt["label"])
    target = opt.get("_target_")
    if not isinstance(target, str) or not TARGET.fullmatch(target):
        _fail("optimizer._target_", target, f"expected {TARGET_ALLOWED}")
    if opt.get("_partial_", True) is not True:
        _fail("optimizer._partial_", opt["_partial_"], "allowed: true (the runner calls the "
              "class with the model's parameters, or with (model, loss_fn) for SAMT)")
    if "constant_schedule_only" in opt:
        _bool(cfg, "optimizer.constant_schedule_only")
    if opt.get("constant_schedule_only") and opt.get("schedule", "constant") != "constant":
        _fail("optimizer.schedule", opt["schedule"], f"optimizer {name} adapts its own step "
              "size (constant_schedule_only: true): only constant is allowed")
    if target in SAMT_TARGETS:
        _validate_samt_options(cfg)
    else:
        _validate_torch_options(cfg)


def _validate_samt_options(cfg: dict[str, Any]) -> None:
    """SAMT's options: choices, ranges and the combinations its constructor refuses."""
    opt = cfg["optimizer"]
    for key, allowed in (("step_type", choices.STEP_TYPES), ("projection", choices.PROJECTIONS),
                         ("combine", choices.COMBINES), ("meta_mode", choices.META_MODES),
                         ("order", choices.ORDERS), ("meta_optimizer", choices.META_OPTIMIZERS)):
        _choice(f"optimizer.{key}", opt.get(key), allowed)
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
    if "seed" in opt:
        _seed(cfg, "optimizer.seed")
    _bool(cfg, "optimizer.eta_shared")
    if "compile" in opt:  # a key added later: absent in old run configs
        _bool(cfg, "optimizer.compile")
    _bool(cfg, "optimizer.features_per_group")
    features = opt.get("features")
    if not isinstance(features, list) or not features or any(
            f not in choices.FEATURE_NAMES for f in features):
        _fail("optimizer.features", features,
              f"a non-empty list drawn from {', '.join(choices.FEATURE_NAMES)}")
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        _fail("optimizer.features", features, f"lists {', '.join(repeated)} more than once; "
              f"each of {', '.join(choices.FEATURE_NAMES)} at most once")
    meta_init = opt.get("meta_init")
    if meta_init is not None:
        if not isinstance(meta_init, str) or not meta_init:
            _fail("optimizer.meta_init", meta_init, "expected null or the path of a SAMT run "
                  "folder, its checkpoint.pt or a samt_meta.pt file")
        too_long = long_path_part(meta_init)
        if too_long:
            _fail("optimizer.meta_init", meta_init, too_long)
        if opt["combine"] == "fixed":
            _fail("optimizer.meta_init", meta_init, "combine=fixed learns no step sizes, so "
                  "there are no meta-parameters to initialize")
    if opt["features_per_group"] and opt["step_type"] not in ("row", "column"):
        _fail("optimizer.features_per_group", True,
              f"only with step_type row or column (got step_type={opt['step_type']})")


def _validate_torch_options(cfg: dict[str, Any]) -> None:
    """The usual ``torch.optim`` options, by key (for any such optimizer that has them)."""
    opt = cfg["optimizer"]
    if "lr" in opt:
        _number(cfg, "optimizer.lr", float, 0.0, strict=True)
    if "warmup_steps" in opt:
        _number(cfg, "optimizer.warmup_steps", int, 0)
    for key in ("weight_decay", "momentum", "dampening", "hyper_lr"):
        if key in opt:
            _number(cfg, f"optimizer.{key}", float, 0.0)
    if "eps" in opt:
        _number(cfg, "optimizer.eps", float, 0.0, strict=True)
    if "betas" in opt:
        betas = opt["betas"]
        if not isinstance(betas, list) or len(betas) != 2 or any(
                isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0
                for b in betas):
            _fail("optimizer.betas", betas, "a list of two numbers in [0, 1), e.g. [0.9, 0.999]")
    for key in ("nesterov", "amsgrad", "maximize", "decoupled_weight_decay"):
        if key in opt:
            _bool(cfg, f"optimizer.{key}")
    for key in ("foreach", "fused", "capturable", "differentiable"):
        if key in opt:
            _bool(cfg, f"optimizer.{key}", optional=True)
    if opt.get("nesterov") and (opt.get("momentum", 0) <= 0 or opt.get("dampening", 0) != 0):
        _fail("optimizer.nesterov", True, "needs optimizer.momentum > 0 and dampening 0 "
              f"(got momentum={opt.get('momentum', 0)}, dampening={opt.get('dampening', 0)})")


def optimizer_target(cfg: dict[str, Any]) -> Any:
    """The class that ``optimizer._target_`` names, imported (nothing is built); a
    ``ConfigError`` naming ``optimizer._target_`` when it is not an importable optimizer class
    (``samt.targets.optimizer_class``)."""
    return optimizer_class(cfg["optimizer"].get("_target_"))


def _check_optimizer_class(cfg: dict[str, Any]) -> None:
    """The checks against the class of ``optimizer._target_`` (imported, not built): every
    key must be a keyword of its constructor (or a runner or Hydra key); SAMT's options
    (a subclass of SAMT not named in ``SAMT_TARGETS``); a ``torch.optim``-style optimizer's
    options typed like its constructor's defaults."""
    from samt.optim import SAMT, takes_model

    opt = cfg["optimizer"]
    name = opt["name"]
    cls = optimizer_target(cfg)
    model_kind = takes_model(cls)
    known = _signature_keys(cls, ("model", "loss_fn") if model_kind else ("params",))
    if known is not None:
        for key, value in opt.items():
            if key not in (*RUNNER_KEYS, *INSTANTIATE_KEYS, *known):
                allowed = sorted((*RUNNER_KEYS, *INSTANTIATE_KEYS, *known))
                raise ConfigError(
                    f"optimizer={opt.get('label', name)!r} is invalid: its options were "
                    f"rejected: unknown key optimizer.{key}={value!r} ({opt['_target_']} takes "
                    f"no argument {key!r}); known keys: {', '.join(allowed)}")
    if issubclass(cls, SAMT) and opt["_target_"] not in SAMT_TARGETS:
        _validate_samt_options(cfg)
    if model_kind:
        return
    _typed_like_defaults(cfg, name, cls)
    if opt.get("differentiable"):
        _fail("optimizer.differentiable", opt["differentiable"], "allowed: false (it only "
              "serves to differentiate through an update, which samt-run never does)")
    if "slice_p" in opt:
        _number(cfg, "optimizer.slice_p", int, 1)
    if "d_coef" in opt:
        _number(cfg, "optimizer.d_coef", float, 0.0, strict=True)


def _show(value: Any) -> str:
    """A default as it is written in a config (``false``, ``null``, ``[0.9, 0.999]``)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, tuple):
        return f"[{', '.join(_show(v) for v in value)}]"
    return repr(value)


def _like(value: Any, default: Any) -> bool:
    """Whether a config value has the type of a constructor default (numbers: int or float)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and not math.isnan(value) and (math.isfinite(value) or not math.isfinite(default)))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple | list):
        return isinstance(value, list | tuple) and len(value) == len(default) and all(
            _like(v, d) for v, d in zip(value, default, strict=True))
    return True  # None or an object: no type to compare with (the trial step checks it)


def _typed_like_defaults(cfg: dict[str, Any], name: str, cls: Any) -> None:
    """Each extra option must have the type of the optimizer constructor's default for it."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to inspect: checked when built
        return
    opt = cfg["optimizer"]
    for key, value in opt.items():
        param = params.get(key)
        if key in RUNNER_KEYS or param is None or param.default is inspect.Parameter.empty:
            continue
        default = param.default
        if value is None and (default is None or "None" in str(param.annotation)
                              or "Optional" in str(param.annotation)):
            continue  # null where the constructor takes None
        if not _like(value, default):
            kind = ("true or false" if isinstance(default, bool) else
                    "a number" if isinstance(default, int | float) and not isinstance(
                        value, int | float) else
                    "a finite number" if isinstance(default, int | float) else
                    "a string" if isinstance(default, str) else
                    f"a list of {len(default)} numbers")
            _fail(f"optimizer.{key}", value,
                  f"expected {kind} (optimizer {name}'s default: {_show(default)})")


def validate_environment(cfg: dict[str, Any]) -> None:
    """Checks that depend on this machine: ``device=cuda`` needs a CUDA device torch can see;
    each logger (``logger``) needs its package."""
    for name in cfg.get("logger") or {}:
        problem = logger_problem(name)
        if problem:
            _fail("logger", name, problem)
    threads = cfg["device"].get("threads")
    cpus = os.cpu_count() or 1
    if isinstance(threads, int) and threads > max(MAX_THREADS, 4 * cpus):
        _fail("device.threads", threads, f"this machine has {cpus} CPUs; allowed: 1 to "
              f"{max(MAX_THREADS, 4 * cpus)} (more threads than CPUs only slow torch down)")
    import torch

    if cfg["device"]["type"] == "cuda" and not torch.cuda.is_available():
        _fail("device.type", "cuda", "torch sees no CUDA device on this machine; "
              "use device=cpu or device=auto")
    device = cfg["device"]["type"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from samt.optim import takes_model

    opt = cfg["optimizer"]
    if opt.get("capturable") and device != "cuda":
        _fail("optimizer.capturable", opt["capturable"], "needs the parameters on a CUDA "
              f"device and this run uses {device}; allowed here: false (or null)")
    cls = optimizer_target(cfg)
    if not takes_model(cls):
        _trial_step(cfg, cls, torch.device(device))


def _try_step(target: str, options: dict[str, Any],
              device: Any) -> tuple[str, Exception] | None:
    """Build the ``torch.optim``-style optimizer ``target`` with ``options`` on a tiny parameter
    as the runner builds it (``samt.targets.optimizer_constructor``), and take two steps (with the
    schedule-free train/eval switches); ``(stage, error)`` when that fails, else None."""
    import warnings

    import torch

    param = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6, device=device).view(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make, _ = optimizer_constructor({"_target_": target, **options})  # ConfigError: raised
        try:
            optimizer = make([param])
        except Exception as exc:
            return "build", exc
        try:
            for _ in range(2):
                if hasattr(optimizer, "train"):
                    optimizer.train()
                param.grad = torch.full_like(param, 0.5)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if hasattr(optimizer, "eval"):
                    optimizer.eval()
        except Exception as exc:
            return "step", exc
    return None


def _trial_step(cfg: dict[str, Any], cls: Any, device: Any) -> None:
    """Options that only fail when used (a type the signature does not tell, a value the
    constructor lets through): refused before any work, naming the option responsible."""
    opt = cfg["optimizer"]
    name = opt["name"]
    options = {k: v for k, v in opt.items() if k not in (*RUNNER_KEYS, *INSTANTIATE_KEYS)}
    failure = _try_step(opt["_target_"], options, device)
    if failure is None:
        return
    stage, exc = failure
    detail = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    if stage == "build":  # the constructor's own message names the option
        raise ConfigError(f"optimizer={opt.get('label', name)!r} is invalid: its options were "
                          f"rejected: {detail}")
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    for key, value in options.items():  # the option without which the steps work
        if _try_step(opt["_target_"], {k: v for k, v in options.items() if k != key},
                     device) is None:
            default = params[key].default if key in params else inspect.Parameter.empty
            hint = "" if default is inspect.Parameter.empty else f" (default: {_show(default)})"
            _fail(f"optimizer.{key}", value, f"optimizer {name} fails on a test step with it "
                  f"({detail}); allowed: a value of the type and range {name} expects{hint}")
    raise ConfigError(f"optimizer={opt.get('label', name)!r} is invalid: its options "
                      f"{options} fail on a test step ({detail})")


def validate_against_data(cfg: dict[str, Any], train_size: int, task: str | None = None) -> None:
    """Checks that need the loaded dataset (``train_size`` examples before the validation
    hold-out; its ``task``): the hold-out must keep at least one validation example and one
    full batch of training examples, the batch size must fit the training set, and a
    classification set's ``stop_at_target`` (an accuracy in percent) must be at most 100."""
    from samt.holdout import validation_size

    target = cfg.get("stop_at_target")
    if task == "classification" and target is not None and target > 100:
        _fail("stop_at_target", target, f"dataset {cfg['dataset']['name']}'s validation metric "
              "is an accuracy in percent, which never exceeds 100; allowed: a value in (0, 100]")

    fraction = (cfg.get("data") or {}).get("val_fraction") or 0.0
    name = cfg["dataset"]["name"]
    n_val = validation_size(train_size, fraction)
    if fraction > 0 and n_val < 1:
        _fail("data.val_fraction", fraction, f"holds out round({train_size} x {fraction:g}) = 0 "
              f"of the {train_size} training examples of dataset {name}; allowed: 0 (no "
              f"validation split) or at least {0.5 / train_size:.3g}")
    if cfg["batch_size"] > train_size:
        _fail("batch_size", cfg["batch_size"],
              f"must be <= {train_size}, the size of the training set of dataset "
              f"{name}")
    if fraction > 0 and cfg["batch_size"] > train_size - n_val:
        _fail("data.val_fraction", fraction, f"leaves {train_size - n_val} of the {train_size} "
              f"training examples of dataset {name} for training, fewer than one batch "
              f"(batch_size={cfg['batch_size']}); allowed: a fraction that leaves at least "
              f"batch_size examples, or a smaller batch_size")
