"""What a config's ``_target_`` may name, and the one place where it is imported and bound:
``optimizer._target_`` (an optimizer class), ``dataset._target_`` (a dataset function) and
``model._target_`` (a model function or ``nn.Module`` class).

A config's ``_target_`` imports code: the module it names is imported, which runs that module's
import-time code. So, before anything is imported or called (docs/extending.md):

- only a config group's own ``_target_`` (``optimizer._target_``, ``dataset._target_``,
  ``model._target_``) names code; a ``_target_`` nested in any value
  (``+optimizer.beta3={_target_: builtins.open, ...}``) is refused (``nested_targets``);
  nothing is instantiated recursively (the runner binds plain values with
  ``functools.partial``, not ``hydra.utils.instantiate``);
- a module of Python's standard library is refused unimported (it holds no optimizer, dataset
  or model: ``builtins.open``, ``this.X``); a package other than ``KNOWN_PACKAGES`` is named on
  stderr before it is imported (``import_target``);
- what is imported must be of the allowed kind before it is called: for an optimizer, a
  ``torch.optim.Optimizer`` subclass or a class with ``takes_model = True``
  (``samt.optim.SAMT``); for a dataset, a Python function ``load(root, split, **options)``
  that accepts the config's options, and what it returns must be a ``samt.data.DatasetSplits``;
  for a model, a Python function or an ``nn.Module`` subclass callable as
  ``(input_shape, num_outputs, **options)`` with the config's options, and what it returns
  must be a ``torch.nn.Module``.

Imports no torch at module level (the CLI's static checks use ``TARGET`` and the keys).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from samt.errors import ConfigError

# Optimizer-group keys the runner itself handles: never passed to the optimizer's constructor.
# ``constant_schedule_only: true`` marks an optimizer whose step size is its own trained or
# averaged state (hypergradient_sgd, schedulefree_adamw): no outside schedule.
RUNNER_KEYS = ("name", "label", "schedule", "constant_schedule_only")
# Keys that say how the class is called: ``_target_`` (the class) and ``_partial_: true`` (called
# later with the parameters, or with ``(model, loss_fn)`` for SAMT).
INSTANTIATE_KEYS = ("_target_", "_partial_")
# ``_target_`` values of SAMT, whose options are checked without importing it (torch).
SAMT_TARGETS = ("samt.optim.SAMT", "samt.optim.samt.SAMT")
TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
TARGET_ALLOWED = ("the dotted path of an importable optimizer class, e.g. torch.optim.Adam, "
                  "prodigyopt.Prodigy or samt.optim.SAMT (docs/extending.md)")
# dataset._target_: the dataset group's keys the runner itself handles (``name`` names the run
# folder and the report's rows; ``split`` is passed as the function's second argument); every
# other key is a keyword option of the function.
DATASET_KEYS = ("_target_", "name", "split")
DATASET_TARGET_ALLOWED = ("the dotted path of an importable function load(root, split, "
                          "**options) that returns a samt.data.DatasetSplits, e.g. "
                          "mypkg.load_my_set (docs/datasets.md)")
# model._target_: the model group's keys the runner itself handles (``name`` names the run folder
# and the report's rows); every other key is a keyword option of the function.
MODEL_KEYS = ("_target_", "name")
MODEL_TARGET_ALLOWED = ("the dotted path of an importable function build(input_shape, "
                        "num_outputs, **options) that returns a torch.nn.Module (or of an "
                        "nn.Module subclass taking those arguments), e.g. mypkg.my_net "
                        "(docs/extending.md)")
# Packages of the shipped configs: imported without a note.
KNOWN_PACKAGES = ("torch", "samt", "prodigyopt", "schedulefree")
_ANNOUNCED: set[str] = set()  # packages named on stderr already (once per process)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def nested_targets(value: Any, key: str) -> list[str]:
    """The keys below ``key`` (a config value) that hold a ``_target_``: nested mappings at any
    depth, lists included (``optimizer.beta3._target_``)."""
    found: list[str] = []
    if isinstance(value, dict):
        if "_target_" in value:
            found.append(key)
        for k, v in value.items():
            found += nested_targets(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found += nested_targets(v, f"{key}[{i}]")
    return found


def check_no_nested_targets(cfg: dict[str, Any]) -> None:
    """``ConfigError`` for a ``_target_`` anywhere below a config group's own keys: only a
    group's top-level ``_target_`` (``optimizer._target_``) may name code."""
    for section, node in cfg.items():
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            for where in nested_targets(value, f"{section}.{key}"):
                _fail(where, _get(cfg, where), "a nested _target_ is not allowed: only a config "
                      "group's own _target_ (optimizer._target_) names code, and it is never "
                      "applied to the values of its options; give a plain value")


def _get(cfg: dict[str, Any], key: str) -> Any:
    """The value at a key written by ``nested_targets`` (dots and ``[i]``)."""
    node: Any = cfg
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def locate(path: str) -> Any:
    """Import the object at dotted ``path`` (``torch.optim.Adam``) without calling it."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name
                                         or module.startswith(f"{exc.name}.")):
                continue  # no such module: the path names an attribute of a shorter one
            raise
        for j, attr in enumerate(parts[i:], start=i):
            if not hasattr(obj, attr):
                raise AttributeError(f"{'.'.join(parts[:j])} has no attribute {attr!r}")
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module named {parts[0]!r}")


def import_target(target: Any, key: str, allowed: str, holds: str) -> Any:
    """The object at the dotted path ``target`` (the value of ``key``), imported, not called.

    ``ConfigError`` (naming the key, the value and ``allowed``) for a malformed path, a module of
    Python's standard library (which holds no ``holds``: refused before it is imported) or a
    failed import. A package outside ``KNOWN_PACKAGES`` is named on stderr (once per process)
    before it is imported: its import-time code runs."""
    if not isinstance(target, str) or not TARGET.fullmatch(target):
        _fail(key, target, f"expected {allowed}")
    top = target.split(".")[0]
    if top in sys.stdlib_module_names or top == "__main__":
        _fail(key, target, f"names a module of Python's standard library ({top}), which holds "
              f"no {holds}, so it is not imported; expected {allowed}")
    if top not in KNOWN_PACKAGES and top not in _ANNOUNCED:
        _ANNOUNCED.add(top)
        print(f"samt-run: note: {key}={target!r} imports the module {target.rpartition('.')[0]} "
              f"(package {top}, outside {', '.join(KNOWN_PACKAGES)}): its import-time code "
              "runs", file=sys.stderr)
    try:
        return locate(target)
    except Exception as exc:  # no such module or attribute, or the module fails to import
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        _fail(key, target, f"cannot be imported ({type(exc).__name__}: {detail}); expected "
              f"{allowed}")


def optimizer_class(target: Any, key: str = "optimizer._target_") -> type:
    """The class that ``target`` (the value of ``key``) names, imported, not called:
    ``ConfigError`` (naming the key, the value and what is allowed) for a malformed path, a
    module of the standard library, a failed import (``import_target``), or anything but an
    optimizer class."""
    cls = import_target(target, key, TARGET_ALLOWED, "optimizer")
    if not isinstance(cls, type):
        _fail(key, target, f"names a {type(cls).__name__}, not a class; expected "
              f"{TARGET_ALLOWED}")
    import torch

    from samt.optim import takes_model

    if not (takes_model(cls) or issubclass(cls, torch.optim.Optimizer)):
        _fail(key, target, "names a class that is no optimizer: expected a subclass of "
              "torch.optim.Optimizer, or a class with takes_model = True such as "
              "samt.optim.SAMT (docs/extending.md)")
    return cls


def optimizer_options(opt_cfg: dict) -> dict:
    """The keyword options of the optimizer config: without ``RUNNER_KEYS`` and
    ``INSTANTIATE_KEYS``."""
    return {k: v for k, v in opt_cfg.items() if k not in (*RUNNER_KEYS, *INSTANTIATE_KEYS)}


def optimizer_constructor(opt_cfg: dict) -> tuple[Callable[..., Any], type]:
    """``(make, cls)``: the class that ``opt_cfg['_target_']`` names (``optimizer_class``) with
    the config's keyword options bound (a list where the constructor's default is a tuple made a
    tuple), and the class. ``make`` is called with the parameters (or ``(model, loss_fn)``).
    A nested ``_target_`` in an option is a ``ConfigError``: nothing else is ever imported."""
    options = optimizer_options(opt_cfg)
    check_no_nested_targets({"optimizer": options})
    cls = optimizer_class(opt_cfg.get("_target_"))
    from samt.optim.factory import constructor_options

    return functools.partial(cls, **constructor_options(cls, options)), cls


# --- dataset._target_: a user's dataset, one yaml file and one function -------------------------


def dataset_options(ds_cfg: dict) -> dict:
    """The keyword options of a dataset config with a ``_target_``: without ``DATASET_KEYS``."""
    return {k: v for k, v in ds_cfg.items() if k not in DATASET_KEYS}


def dataset_loader(ds_cfg: dict) -> Callable[[Path, int], Any]:
    """``load(root, split)``: the function that ``ds_cfg['_target_']`` names, checked before it
    is ever called, with the config's options bound (plain values: a nested ``_target_`` is
    refused before anything is imported).

    ``ConfigError`` naming the key, the value and what is allowed: a malformed path, a module of
    the standard library, a failed import (``import_target``), anything but a Python function,
    an option the function does not take, or a signature that cannot take
    ``(root, split, **options)`` (e.g. a required option the config lacks)."""
    target, name = ds_cfg.get("_target_"), ds_cfg.get("name")
    options = dataset_options(ds_cfg)
    check_no_nested_targets({"dataset": options})
    key = "dataset._target_"
    fn = import_target(target, key, DATASET_TARGET_ALLOWED, "dataset")
    if not inspect.isfunction(fn):
        _fail(key, target, f"names a {type(fn).__name__}, not a function; expected "
              f"{DATASET_TARGET_ALLOWED}")
    signature = inspect.signature(fn)
    _check_call(signature, "dataset", name, target, options, DATASET_KEYS)
    try:
        signature.bind(Path("."), 0, **options)
    except TypeError as exc:
        _fail(key, target, f"cannot be called as {target}(root, split, **options) with the "
              f"options of dataset {name} (TypeError: {exc}); expected "
              f"{DATASET_TARGET_ALLOWED}")
    return functools.partial(fn, **options)


def _check_call(signature: inspect.Signature, section: str, name: Any, target: Any,
                options: dict, runner_keys: tuple[str, ...]) -> None:
    """``ConfigError`` for an option that the function of ``section._target_`` (its first two
    parameters are the runner's) does not take, naming the close known keys; a function with
    ``**kwargs`` takes every option."""
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    known = [p for p, spec in list(params.items())[2:] if spec.kind in keyword]
    for option, value in options.items():
        if option not in known:
            allowed = ", ".join(sorted((*runner_keys, *known)))
            _fail(f"{section}.{option}", value, f"unknown key for {section} {name} ({target} "
                  f"takes no argument {option!r}); known keys: {allowed}")


def load_target_dataset(ds_cfg: dict, root: str | Path, split: int) -> Any:
    """The ``samt.data.DatasetSplits`` that the dataset config's ``_target_`` returns when
    called with the data root, ``split`` and the config's options (``dataset_loader``); a
    ``ConfigError`` naming ``dataset._target_`` when it returns anything else."""
    from samt.data.splits import DatasetSplits

    target = ds_cfg.get("_target_")
    result = dataset_loader(ds_cfg)(Path(root).expanduser(), int(split))
    if not isinstance(result, DatasetSplits):
        _fail("dataset._target_", target, f"returned a {type(result).__name__}, not a "
              f"samt.data.DatasetSplits; expected {DATASET_TARGET_ALLOWED}")
    if result.task not in ("classification", "regression"):
        _fail("dataset._target_", target, f"returned a DatasetSplits of task {result.task!r}; "
              "allowed: classification, regression")
    return result


# --- model._target_: a user's model, one yaml file and one function -----------------------------


def model_options(model_cfg: dict) -> dict:
    """The keyword options of a model config: without ``MODEL_KEYS``."""
    return {k: v for k, v in model_cfg.items() if k not in MODEL_KEYS}


def model_builder(model_cfg: dict) -> Callable[[tuple[int, ...], int], Any]:
    """``build(input_shape, num_outputs)``: the function (or ``nn.Module`` subclass) that
    ``model_cfg['_target_']`` names, checked before it is ever called, with the config's
    options bound (plain values: a nested ``_target_`` is refused before anything is imported).

    ``ConfigError`` naming the key, the value and what is allowed: a malformed path, a module of
    the standard library, a failed import (``import_target``), anything but a Python function
    or an ``nn.Module`` subclass, an option it does not take, or a signature that cannot take
    ``(input_shape, num_outputs, **options)`` (e.g. a required option the config lacks)."""
    target, name = model_cfg.get("_target_"), model_cfg.get("name")
    options = model_options(model_cfg)
    check_no_nested_targets({"model": options})
    key = "model._target_"
    fn = import_target(target, key, MODEL_TARGET_ALLOWED, "model")
    if isinstance(fn, type):
        from torch import nn

        if not issubclass(fn, nn.Module):
            _fail(key, target, f"names a class that is no torch.nn.Module subclass; expected "
                  f"{MODEL_TARGET_ALLOWED}")
    elif not inspect.isfunction(fn):
        _fail(key, target, f"names a {type(fn).__name__}, not a function; expected "
              f"{MODEL_TARGET_ALLOWED}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:  # a class whose constructor has no signature to read
        _fail(key, target, f"has no signature to check ({type(exc).__name__}: {exc}); "
              f"expected {MODEL_TARGET_ALLOWED}")
    _check_call(signature, "model", name, target, options, MODEL_KEYS)
    try:
        signature.bind((1,), 1, **options)
    except TypeError as exc:
        _fail(key, target, f"cannot be called as {target}(input_shape, num_outputs, **options) "
              f"with the options of model {name} (TypeError: {exc}); expected "
              f"{MODEL_TARGET_ALLOWED}")
    return functools.partial(fn, **options)


def build_configured_model(model_cfg: dict, input_shape: Sequence[int],
                           num_outputs: int) -> Any:
    """The ``torch.nn.Module`` that the (validated) model config describes, for inputs of
    ``input_shape`` (without the batch dimension) and ``num_outputs`` outputs: a user's, whose
    ``_target_`` is called with ``(input_shape, num_outputs, **options)`` (``model_builder``;
    anything but an ``nn.Module`` returned is a ``ConfigError`` naming ``model._target_``), or a
    shipped one by ``name`` (``samt.models.build_model``)."""
    shape, outputs = tuple(int(s) for s in input_shape), int(num_outputs)
    if "_target_" not in model_cfg:
        from samt.models import build_model

        options = {k: v for k, v in model_cfg.items() if k != "name"}
        return build_model(model_cfg["name"], shape, outputs, **options)
    from torch import nn

    target = model_cfg.get("_target_")
    model = model_builder(model_cfg)(shape, outputs)
    if not isinstance(model, nn.Module):
        _fail("model._target_", target, f"returned a {type(model).__name__}, not a "
              f"torch.nn.Module; expected {MODEL_TARGET_ALLOWED}")
    return model
