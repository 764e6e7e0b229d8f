"""The run config's schema: every key, once, with its type, its default and the values it allows;
the one source of the defaults that ``conf/`` composes.

One dataclass per config section: ``RunConfig`` (the top-level keys, ``data`` among them),
``DatasetConfig`` (``conf/dataset/``), one per model (``MODEL_SCHEMAS``, chosen by
``model.name``; ``conf/model/``) and ``DeviceConfig`` (``conf/device/``); SAMT's options are
``samt.optim.options.SAMTOptions`` (torch-free; ``SAMT.__init__`` takes its defaults from it).
A field's annotation is its type, its default the default, and ``option(...)`` adds what is
allowed (``low``/``high`` bounds, ``choices``, a seed's range). ``samt.validation`` reads the
schema for its generic checks (unknown keys, type, range, choice), and ``samt.models``'
builders take their defaults from it.

Defaults: importing this module registers each schema's defaults in Hydra's ConfigStore
(``config_nodes()``: ``schema_run``, ``schema_model_mlp``, ..., ``schema_optimizer_samt``), and
the yaml files under ``conf/`` build on them (``defaults: [/schema_model_mlp@_here_, _self_]``)
and set only what differs; so a program that composes ``conf/`` imports this module first
(``samt.cli`` and ``samt.validation`` do, and ``samt.tune.reproduce``).
``tests/test_schema.py`` proves that the composed config is the schema's defaults plus the
presets' own values, and that no preset restates a default.

Types: ``int``, ``float`` and ``bool`` as in YAML (a bool is not a number; a float must be
finite); ``str`` non-empty; ``list[int]`` a non-empty list of positive integers; ``list[str]`` a
list (maybe empty) of tags (``TAG``: 1 to 100 printable characters, no comma);
``dict[str, Any]`` with ``schemas`` a mapping whose keys are named by that mapping and whose
values are settings described by their schemas (``logger``); ``X | None`` also null; ``Any``
unchecked. A field without ``optional=True`` must be present in a run config.

Rules that involve more than one key or the outside world live in ``samt.validation``:
``model.name`` chooses the model's schema, ``data.root`` must not be a file, ``batch_size`` and
``data.val_fraction`` must fit the loaded training set, ``stop_at_target`` needs a validation
split (and, for accuracy, at most 100), ``device=cuda`` and the loggers (``logger=tensorboard``,
``mlflow``, ``wandb``) need what they name on this machine; ``dataset.name`` must be in the
dataset registry, unless the dataset names its loading function by ``_target_`` (its other keys
are then that function's options, checked against its signature; ``samt.targets``). The
optimizer group has its own checks there too.

The nodes are plain (untyped) configs, not structured configs: OmegaConf would otherwise refuse
a wrong type itself while composing (its own message, exit status 1, before samt's one-line
message). They are root configs, not a config group, so ``samt-run --help`` lists only the
groups a user chooses from. No torch here: the CLI reads this before any heavy import.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any

from samt.optim.options import SAMTOptions

SEED_MAX = 2**63 - 1  # torch.manual_seed takes up to 2**64-1; int64 everywhere else
RESUME_CHOICES = ("auto", True, False)
PROGRESS_CHOICES = ("auto", True, False)
DEVICE_TYPES = ("cpu", "cuda", "auto")
NORMS = ("none", "batch")
AUGMENTATIONS = ("none", "crop_flip")  # data.augment (samt.train.augment)
# model.activation -> the torch.nn module class it names (samt.models)
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU"}
# optimized_metric: the number a run returns to Hydra's sweeper (samt.cli.optimized_value)
OPTIMIZED_METRICS = ("val_metric", "best_val_metric", "test_metric")
BOUNDS = ("low", "strict", "high", "high_strict")  # option()'s range, as samt.validation reads it
PROBABILITY = {"low": 0.0, "high": 1.0, "high_strict": True}  # in [0, 1)


def option(default: Any = MISSING, *, low: float | None = None, strict: bool = False,
           high: float | None = None, high_strict: bool = False, choices: tuple | None = None,
           seed: bool = False, expect: str | None = None, optional: bool = False,
           schemas: str | None = None) -> Any:
    """A schema field: ``default`` (none: every preset sets it) and what is allowed.

    ``low``/``high``: bounds of a number (``strict``/``high_strict``: the bound itself is
    excluded); ``choices``: the only values allowed; ``seed``: an integer in 0..``SEED_MAX``;
    ``expect``: what a ``str`` must be, said when it is not; ``optional``: the key may be left
    out of a run config (today's presets always set it, except where said); ``schemas``: for a
    ``dict[str, Any]``, the name of this module's mapping of the names it may hold to the
    schema of each one's settings (``logger``: ``LOGGER_SCHEMAS``).
    """
    rules = {"low": low, "strict": strict, "high": high, "high_strict": high_strict,
             "choices": choices, "seed": seed, "expect": expect, "optional": optional,
             "schemas": schemas}
    metadata = {k: v for k, v in rules.items() if v is not None and v is not False}
    if isinstance(default, list | dict):
        return field(default_factory=functools.partial(type(default), default),
                     metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """``data``: where the datasets are, and the validation hold-out (docs/tuning.md)."""

    # relative paths are taken from where samt-run is started
    root: str = option("${oc.env:SAMT_DATA_ROOT,data}",
                       expect="expected a folder path (set SAMT_DATA_ROOT or data.root)")
    download: bool = option(True)  # try torchvision's download when files are missing
    # part of the training set held out for validation (0: none; experiment presets set it)
    val_fraction: float = option(0.0, **PROBABILITY, optional=True)
    # fixes which examples are held out, independently of `seed` (docs/tuning.md)
    val_seed: int = option(12345, seed=True, optional=True)
    # training-batch augmentation, drawn from the run's seeded generator: none | crop_flip
    # (a random crop of the image padded by 4 pixels, and a horizontal flip with p = 1/2)
    augment: str = option("none", choices=AUGMENTATIONS, optional=True)
    # where image-folder sets cache their decoded images; null: <data.root>/.samt-cache when
    # the data root is writable, else $XDG_CACHE_HOME/samt (~/.cache/samt); docs/datasets.md
    cache_dir: str | None = option(None, optional=True,
                                   expect="expected a folder path for the decoded-image cache")


@dataclass
class RunConfig:
    """The top-level keys of ``conf/config.yaml`` (the config groups come in beside them)."""

    seed: int = option(0, seed=True)
    epochs: int = option(20, low=1)
    batch_size: int = option(128, low=1)
    eval_batch_size: int = option(4096, low=1)  # evaluation only; does not change results
    # tqdm progress bars: auto (only when stderr is a terminal, not into a log) | true | false
    progress: str | bool = option("auto", choices=PROGRESS_CHOICES)
    # stop with status "diverged" after this many non-finite iterations in a row
    max_consecutive_skips: int = option(50, low=1)
    # the experiment trackers that also receive the metrics.csv scalars (and SAMT's per-block
    # statistics), the tags and the config: logger name -> its settings (LOGGER_SCHEMAS), chosen
    # from the config group conf/logger/ (logger=tensorboard, logger=[tensorboard,mlflow],
    # logger=many); {} (logger=none): metrics.csv only, which every run writes; the run's log
    # is always <run>/cli.log (docs/outputs.md)
    logger: dict[str, Any] = option({}, optional=True, schemas="LOGGER_SCHEMAS")
    # auto: continue from the run folder's checkpoint.pt when its config matches, skip a
    # finished run; true: as auto, but a folder with nothing to resume is an error; false:
    # start over, deleting the folder's previous results (docs/reliability.md)
    resume: str | bool = option("auto", choices=RESUME_CHOICES, optional=True)
    # what a run returns to Hydra's sweeper, i.e. what a tuner (search=optuna_lr) optimizes:
    # val_metric (the final validation metric) | best_val_metric | test_metric; without a
    # validation split (data.val_fraction=0) the test metric is returned, with a warning
    optimized_metric: str = option("val_metric", choices=OPTIMIZED_METRICS, optional=True)
    # stop at target (AlgoPerf): end the run after the first epoch whose validation metric
    # reaches this value (accuracy in %: >=; RMSE: <=), with status reached_target, recording
    # the epoch, training seconds and parameter updates it took; needs data.val_fraction > 0;
    # null: train every epoch (docs/tuning.md)
    stop_at_target: float | None = option(None, low=0.0, strict=True, optional=True)
    # labels of the run (tags=[baseline,lr_sweep]): recorded in summary.json, the loggers
    # (logger=...) and samt-report's tables; they change no number, so a run resumes
    # and groups with runs of other tags
    tags: list[str] = option([], optional=True)
    data: DataConfig = field(default_factory=DataConfig)
    # set by experiment presets; read by samt-reproduce (its keys: TuningConfig), ignored by
    # the runner
    tuning: Any = option(None, optional=True)


@dataclass
class TuningConfig:
    """``tuning``: an experiment preset's protocol (docs/tuning.md), read and checked by
    ``samt-reproduce`` (``samt.tune.reproduce.check_tuning_keys``); the runner ignores it."""

    datasets: list[str] = option()    # the dataset configs of the table
    seeds: list[int] = option()       # the final runs' seeds (fresh: never grid_seed)
    grid_seed: int = option(seed=True)  # the seed of every grid run
    # name -> {key: the step-size key, grid: [increasing values], tied: {other key: ratio to
    # key}, optimizer: the config (default: name), overrides: [Hydra overrides]}; a grid of
    # one value fixes the value (no grid runs); a name other than its config's is a variant
    optimizers: Any = option()
    # a choice at a grid edge adds the next value on that side, at most this many times
    max_extensions: int = option(3, low=0, optional=True)
    # standard dataset splits (UCI): the grid runs on the first, the finals on every one
    splits: list[int] | None = option(None, optional=True)
    # a run before the grid whose folder the overrides name as {source}: {dataset, optimizer,
    # seed, overrides} (conf/experiment/transfer.yaml)
    source: Any = option(None, optional=True)
    # how a grid value is scored: one_seed (one run with grid_seed, on the first split;
    # separate final runs on `seeds`) or seed_mean (every value on every seed of `seeds` and
    # every split: the mean validation metric chooses, the chosen value's runs are the finals)
    choice: str = option("one_seed", choices=("one_seed", "seed_mean"), optional=True)
    # dataset -> equivalence margin of the report (samt-report --margin), in the metric's units:
    # a difference within it may read "equivalent" (TOST); stated before the final runs
    margins: Any = option(None, optional=True)


@dataclass
class DatasetConfig:
    """``dataset``: one of the registry's datasets (``samt.data.DATASETS``), or a user's:
    ``_target_`` names a function ``load(root, split, **options)`` and every key but
    ``name`` and ``split`` is one of its options (``samt.targets.DATASET_KEYS``,
    docs/datasets.md)."""

    name: str = option(expect="expected the name of a dataset (conf/dataset/)")
    # the standard train/test split's index (UCI: 20 splits, protein 5); only the presets of
    # the sets with splits take it (they build on schema_dataset)
    split: int = option(0, low=0, optional=True)
    # dataset=image_folder: the folder or zip with train/<class>/ and test/<class>/ (a relative
    # path is taken from data.root); docs/datasets.md
    path: str | None = option(None, optional=True,
                              expect="expected the path of an image folder or a zip of one")


@dataclass
class MlpModel:
    """``model=mlp``: ``samt.models.mlp``."""

    name: str = option("mlp")
    # hidden layer widths; the paper's headline setting is one layer of 400
    hidden: list[int] = option([400])
    activation: str = option("relu", choices=tuple(ACTIVATIONS), optional=True)
    # dropout on every hidden layer's activations
    dropout: float = option(0.0, **PROBABILITY, optional=True)
    input_dropout: float = option(0.0, **PROBABILITY, optional=True)  # dropout on the inputs
    # none | batch (BatchNorm1d between each hidden Linear and its activation)
    norm: str = option("none", choices=NORMS, optional=True)


@dataclass
class RegressionMlpModel(MlpModel):
    """``model=regression_mlp``: ``samt.models.mlp`` as in the standard UCI protocol."""

    name: str = option("regression_mlp")
    hidden: list[int] = option([50])  # the standard UCI protocol: one hidden layer of 50 units


@dataclass
class CnnModel:
    """``model=cnn``: ``samt.models.cnn``."""

    name: str = option("cnn")
    # one 3x3 conv + 2x2 max-pool per entry
    channels: list[int] = option([32, 64], optional=True)
    hidden: int = option(128, low=1, optional=True)  # width of the fully connected layer
    activation: str = option("relu", choices=tuple(ACTIVATIONS), optional=True)
    # dropout on the hidden fully connected layer's activations
    dropout: float = option(0.0, **PROBABILITY, optional=True)
    # none | batch (BatchNorm after every conv and the hidden Linear)
    norm: str = option("none", choices=NORMS, optional=True)


@dataclass
class VggModel:
    """``model=vgg``: ``samt.models.vgg``, a VGG-style CIFAR CNN."""

    name: str = option("vgg")
    # output channels of each stage: two 3x3 convs (+ norm + activation) per stage, a 2x2
    # max-pool between stages, then a global average pool and one Linear
    widths: list[int] = option([32, 64, 128], optional=True)
    activation: str = option("relu", choices=tuple(ACTIVATIONS), optional=True)
    # batch (BatchNorm2d after every conv, before its activation) | none
    norm: str = option("batch", choices=NORMS, optional=True)


@dataclass
class ResnetModel:
    """``model=resnet``: ``samt.models.resnet``, the CIFAR ResNet of He et al. (2016)."""

    name: str = option("resnet")
    # 6n + 2 layers: 20, 32, 44, 56, 110 (n BasicBlocks per stage, three stages)
    depth: int = option(20, low=8, optional=True)
    # channels of the first stage (16 in the paper); the next stages double it
    width: int = option(16, low=1, optional=True)
    # batch (BatchNorm after every conv; the convs then have no bias) | none
    norm: str = option("batch", choices=NORMS, optional=True)


@dataclass
class Resnet18Model:
    """``model=resnet18``: ``samt.models.resnet18``, ResNet-18 for CIFAR-sized images."""

    name: str = option("resnet18")
    # channels of the first of the four stages (64 in the usual CIFAR variant); then doubled
    width: int = option(64, low=1, optional=True)
    norm: str = option("batch", choices=NORMS, optional=True)


@dataclass
class CsvLogger:
    """``logger=csv``: metrics.csv, which every run writes (``logger=none`` too); the name only
    says so in a list of loggers. No settings."""


@dataclass
class TensorBoardLogger:
    """``logger=tensorboard``: TensorBoard event files in ``<run folder>/tensorboard/``
    (``pip install 'samt[tensorboard]'``; ``samt.tracking.TensorBoardTracker``). No settings."""


@dataclass
class MlflowLogger:
    """``logger=mlflow``: an MLflow run (``pip install 'samt[mlflow]'``;
    ``samt.tracking.MlflowTracker``), by default in a local file store: offline."""

    # null: the file store <run folder>/mlruns; a folder path (relative: to where samt-run
    # starts) or a file: URI is a local file store; any other URI (sqlite:///mlflow.db,
    # http://host:5000) is handed to MLflow as it is
    tracking_uri: str | None = option(None, optional=True, expect="expected a folder path or an "
                                      "MLflow tracking URI (null: <run folder>/mlruns)")
    experiment_name: str = option("samt", optional=True)  # created when it does not exist
    run_name: str | None = option(None, optional=True)  # null: the run folder's name


WANDB_MODES = ("offline", "online")  # logger.wandb.mode


@dataclass
class WandbLogger:
    """``logger=wandb``: a Weights & Biases run (``pip install 'samt[wandb]'``;
    ``samt.tracking.WandbTracker``), by default offline: it never touches the network."""

    # offline: written only to <dir>/wandb/offline-run-*/ (`wandb sync` uploads it later);
    # online: sent to the W&B server as the run goes (needs `wandb login`)
    mode: str = option("offline", choices=WANDB_MODES, optional=True)
    project: str = option("samt", optional=True)
    entity: str | None = option(None, optional=True)  # the W&B user or team; null: yours
    group: str | None = option(None, optional=True)  # groups runs in the W&B interface
    name: str | None = option(None, optional=True)  # null: the run folder's name
    # where W&B makes its wandb/ folder (relative: to where samt-run starts); null: the run
    # folder
    dir: str | None = option(None, optional=True, expect="expected a folder path (null: the "
                             "run folder)")


# logger name -> the schema of its settings (conf/logger/<name>.yaml; samt.tracking makes each)
LOGGER_SCHEMAS: dict[str, type] = {"csv": CsvLogger, "tensorboard": TensorBoardLogger,
                                   "mlflow": MlflowLogger, "wandb": WandbLogger}
LOGGERS = tuple(LOGGER_SCHEMAS)


@dataclass
class DeviceConfig:
    """``device``: where the run computes."""

    type: str = option(choices=DEVICE_TYPES)
    # torch CPU threads; null keeps torch's default (device=cuda leaves the key out)
    threads: int | None = option(None, low=1, optional=True)


# model.name -> its schema (the builder: samt.models.MODELS)
MODEL_SCHEMAS: dict[str, type] = {"mlp": MlpModel, "cnn": CnnModel,
                                  "regression_mlp": RegressionMlpModel, "vgg": VggModel,
                                  "resnet": ResnetModel, "resnet18": Resnet18Model}
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


# --- the defaults that conf/ composes: Hydra ConfigStore nodes ---------------------------------

# SAMT options that are not config keys (set them with +optimizer.KEY=...): ``seed`` seeds
# SAMT's own generator (order random) and has never been part of a run's recorded config.
SAMT_UNLISTED = ("seed",)


def _plain(value: Any) -> Any:
    """A default as a config holds it (tuples as lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def samt_option_defaults() -> dict[str, Any]:
    """SAMT's options (``samt.optim.options.SAMTOptions``) as ``conf/optimizer/samt.yaml``'s
    base: every keyword default except ``SAMT_UNLISTED``, as a config holds it (lists)."""
    return _plain({k: v for k, v in defaults(SAMTOptions).items() if k not in SAMT_UNLISTED})


def _node(schema: type) -> dict[str, Any]:
    """``schema``'s keys in its order with their defaults; ``???`` (OmegaConf's missing value)
    where there is none: every preset built on it sets that key (``dataset.name``)."""
    values = defaults(schema)
    return {f.name: values.get(f.name, "???") for f in dataclasses.fields(schema)}


def config_nodes() -> dict[str, dict[str, Any]]:
    """The ConfigStore nodes (root configs) the yaml files of ``conf/`` build on, by name:
    ``schema_run`` (``config.yaml``), ``schema_dataset`` (the presets of sets with splits),
    ``schema_device`` (``auto``, ``cpu``), ``schema_model_<name>``, ``schema_logger_<name>``
    (``logger/<name>.yaml``) and ``schema_optimizer_samt`` (``optimizer/samt.yaml``)."""
    nodes = {"schema_run": _node(RunConfig), "schema_dataset": _node(DatasetConfig),
             "schema_device": _node(DeviceConfig),
             **{f"schema_model_{name}": _node(schema) for name, schema in MODEL_SCHEMAS.items()},
             **{f"schema_logger_{name}": _node(schema)
                for name, schema in LOGGER_SCHEMAS.items()},
             "schema_optimizer_samt": samt_option_defaults()}
    return {name: _plain(node) for name, node in nodes.items()}


def register_config_nodes() -> None:
    """Store ``config_nodes()`` in Hydra's ConfigStore (again: harmless): done when this module
    is imported, so any program that imports samt's CLI or checks can compose ``conf/``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in config_nodes().items():
        store.store(name=name, node=node, provider="samt")


register_config_nodes()
