"""The run config's schema: every key outside the optimizer group, once, with its type, its
default and the values it allows.

One dataclass per config section: ``RunConfig`` (the top-level keys of ``conf/config.yaml``,
``data`` among them), ``DatasetConfig`` (``conf/dataset/``), one per model (``MODEL_SCHEMAS``,
chosen by ``model.name``; ``conf/model/``) and ``DeviceConfig`` (``conf/device/``). A field's
annotation is its type, its default the default, and ``option(...)`` adds what is allowed
(``low``/``high`` bounds, ``choices``, a seed's range). The yaml presets under ``conf/`` set the
same values with comments for users; ``tests/test_schema.py`` proves they equal these defaults.
``samt.validation`` reads the schema for its generic checks (unknown keys, type, range,
choice), and ``samt.models``' builders take their defaults from it.

Types: ``int``, ``float`` and ``bool`` as in YAML (a bool is not a number; a float must be
finite); ``str`` non-empty; ``list[int]`` a non-empty list of positive integers; ``X | None``
also null; ``Any`` unchecked. A field without ``optional=True`` must be present in a run config.

Rules that involve more than one key or the outside world live in ``samt.validation``:
``model.name`` chooses the model's schema, ``data.root`` must not be a file, ``batch_size`` and
``data.val_fraction`` must fit the loaded training set, ``device=cuda`` and
``logger=tensorboard`` need what they name on this machine; ``dataset.name`` must be in the
dataset registry. The optimizer group has its own checks there too.

Not registered in Hydra's ConfigStore as a structured config: OmegaConf would then refuse a
wrong type itself while composing (its own message, exit status 1, before samt's one-line
message), and every program that composes ``conf/`` would first have to import this module.
No torch here: the CLI reads this before any heavy import.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

from samt.tracking import LOGGERS

SEED_MAX = 2**63 - 1  # torch.manual_seed takes up to 2**64-1; int64 everywhere else
RESUME_CHOICES = ("auto", True, False)
DEVICE_TYPES = ("cpu", "cuda", "auto")
NORMS = ("none", "batch")
# model.activation -> the torch.nn module class it names (samt.models)
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU"}
BOUNDS = ("low", "strict", "high", "high_strict")  # option()'s range, as samt.validation reads it
PROBABILITY = {"low": 0.0, "high": 1.0, "high_strict": True}  # in [0, 1)


def option(default: Any = MISSING, *, low: float | None = None, strict: bool = False,
           high: float | None = None, high_strict: bool = False, choices: tuple | None = None,
           seed: bool = False, expect: str | None = None, optional: bool = False) -> Any:
    """A schema field: ``default`` (none: every preset sets it) and what is allowed.

    ``low``/``high``: bounds of a number (``strict``/``high_strict``: the bound itself is
    excluded); ``choices``: the only values allowed; ``seed``: an integer in 0..``SEED_MAX``;
    ``expect``: what a ``str`` must be, said when it is not; ``optional``: the key may be left
    out of a run config (today's presets always set it, except where said).
    """
    rules = {"low": low, "strict": strict, "high": high, "high_strict": high_strict,
             "choices": choices, "seed": seed, "expect": expect, "optional": optional}
    metadata = {k: v for k, v in rules.items() if v is not None and v is not False}
    if isinstance(default, list):
        return field(default_factory=functools.partial(list, default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """``data``: where the datasets are, and the validation hold-out (docs/tuning.md)."""

    root: str = option("${oc.env:SAMT_DATA_ROOT,data}",
                       expect="expected a folder path (set SAMT_DATA_ROOT or data.root)")
    download: bool = option(True)
    val_fraction: float = option(0.0, **PROBABILITY, optional=True)
    val_seed: int = option(12345, seed=True, optional=True)


@dataclass
class RunConfig:
    """The top-level keys of ``conf/config.yaml`` (the config groups come in beside them)."""

    seed: int = option(0, seed=True)
    epochs: int = option(20, low=1)
    batch_size: int = option(128, low=1)
    eval_batch_size: int = option(4096, low=1)
    progress: bool = option(True)
    max_consecutive_skips: int = option(50, low=1)
    logger: str = option("none", choices=LOGGERS, optional=True)
    resume: str | bool = option("auto", choices=RESUME_CHOICES, optional=True)
    data: DataConfig = field(default_factory=DataConfig)
    tuning: Any = option(None, optional=True)  # experiment presets' plan; scripts/reproduce.py


@dataclass
class DatasetConfig:
    """``dataset``: one of the registry's datasets (``samt.data.DATASETS``)."""

    name: str = option(expect="expected the name of a dataset (conf/dataset/)")
    split: int = option(0, low=0, optional=True)  # set by the presets of sets with splits (UCI)


@dataclass
class MlpModel:
    """``model=mlp``: ``samt.models.mlp``."""

    name: str = option("mlp")
    hidden: list[int] = option([400])
    activation: str = option("relu", choices=tuple(ACTIVATIONS), optional=True)
    dropout: float = option(0.0, **PROBABILITY, optional=True)
    input_dropout: float = option(0.0, **PROBABILITY, optional=True)
    norm: str = option("none", choices=NORMS, optional=True)


@dataclass
class RegressionMlpModel(MlpModel):
    """``model=regression_mlp``: ``samt.models.mlp`` as in the standard UCI protocol."""

    name: str = option("regression_mlp")
    hidden: list[int] = option([50])


@dataclass
class CnnModel:
    """``model=cnn``: ``samt.models.cnn``."""

    name: str = option("cnn")
    channels: list[int] = option([32, 64], optional=True)
    hidden: int = option(128, low=1, optional=True)
    activation: str = option("relu", choices=tuple(ACTIVATIONS), optional=True)
    dropout: float = option(0.0, **PROBABILITY, optional=True)
    norm: str = option("none", choices=NORMS, optional=True)


@dataclass
class DeviceConfig:
    """``device``: where the run computes."""

    type: str = option(choices=DEVICE_TYPES)
    threads: int | None = option(None, low=1, optional=True)  # null: torch's default


# model.name -> its schema (the builder: samt.models.MODELS)
MODEL_SCHEMAS: dict[str, type] = {"mlp": MlpModel, "cnn": CnnModel,
                                  "regression_mlp": RegressionMlpModel}
# The config groups (conf/<group>/) and their schemas: a dict is chosen by the group's `name`;
# None: the optimizer group, checked by samt.validation's optimizer part.
GROUPS: dict[str, type | dict[str, type] | None] = {
    "dataset": DatasetConfig, "model": MODEL_SCHEMAS, "optimizer": None, "device": DeviceConfig}


@functools.cache
def field_types(schema: type) -> dict[str, Any]:
    """``schema``'s fields and their types (the annotations, resolved)."""
    return typing.get_type_hints(schema)


def defaults(schema: type) -> dict[str, Any]:
    """``schema``'s defaults as a config holds them (fields without one left out)."""
    values = {}
    for f in dataclasses.fields(schema):
        if f.default is not MISSING:
            values[f.name] = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
            values[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return values


# Every section of a run config (a mapping) and its schema: the groups, then `data`.
SECTIONS: dict[str, type | dict[str, type] | None] = {
    **GROUPS, **{name: kind for name, kind in field_types(RunConfig).items()
                 if dataclasses.is_dataclass(kind)}}
# Every top-level key of a run config: any other one is a typo.
CONFIG_KEYS = (*GROUPS, *(f.name for f in dataclasses.fields(RunConfig)))
