"""The config schema (samt/schema.py): the one source of the defaults (the yaml presets build on
its ConfigStore nodes and set only what differs), the model builders take its options, and every
key it describes is checked from it with one clear message."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from conftest import CONF_DIR, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from samt.models import MODELS
from samt.schema import (
    GROUPS,
    LOGGER_SCHEMAS,
    MODEL_SCHEMAS,
    SECTIONS,
    SEED_MAX,
    RunConfig,
    config_nodes,
    defaults,
    field_types,
    samt_option_defaults,
)
from samt.validation import ConfigError, validate_config

# --- the schema holds the defaults; the yaml presets build on it and set only what differs ------


def _yaml(path: Path) -> tuple[dict[str, Any], list[str]]:
    """A config file as written (interpolations unresolved) without its defaults list, and the
    schema nodes that list builds on (``/schema_model_mlp@_here_`` -> ``schema_model_mlp``)."""
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    bases = [entry.lstrip("/").split("@")[0] for entry in node.pop("defaults", [])
             if isinstance(entry, str) and entry.lstrip("/").startswith("schema_")]
    return node, bases


def _composed(*overrides: str) -> dict[str, Any]:
    """The config Hydra composes from conf/ (interpolations unresolved)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)),
                                      resolve=False)


def _merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in own.items():
        out[key] = (_merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def _group_files() -> list[tuple[str, Path]]:
    return [(group, path) for group, schema in GROUPS.items() if schema is not None
            for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def _schema_of(group: str, name: str) -> type:
    schema = GROUPS[group]
    return schema[name] if isinstance(schema, dict) else schema


def test_the_schema_nodes_are_its_defaults():
    nodes = config_nodes()
    assert nodes["schema_run"] == defaults(RunConfig)
    assert list(nodes["schema_run"]) == [f.name for f in dataclasses.fields(RunConfig)]
    for name, schema in MODEL_SCHEMAS.items():
        assert nodes[f"schema_model_{name}"] == defaults(schema)
    assert nodes["schema_dataset"] == {"name": "???", "split": 0, "path": None}  # a preset names it
    assert nodes["schema_device"] == {"type": "???", "threads": None}
    assert nodes["schema_optimizer_samt"] == samt_option_defaults()
    for name, schema in LOGGER_SCHEMAS.items():
        assert nodes[f"schema_logger_{name}"] == defaults(schema)


def test_the_composed_top_level_is_the_schema_defaults():
    """``conf/config.yaml`` builds on ``schema_run`` and sets no top-level value of its own."""
    own, bases = _yaml(CONF_DIR / "config.yaml")
    assert bases == ["schema_run"] and set(own) == {"hydra"}
    cfg = _composed()
    top = {key: value for key, value in cfg.items() if key not in GROUPS}
    assert top == defaults(RunConfig)
    assert list(top) == list(defaults(RunConfig))


@pytest.mark.parametrize("group, path", _group_files(), ids=lambda x: getattr(x, "stem", x))
def test_a_composed_preset_is_its_schema_defaults_plus_its_own_values(group, path):
    """Every dataset, model or device preset composes to the schema node it builds on plus its
    own keys; every key is in its schema, the required ones are set."""
    own, bases = _yaml(path)
    section = _composed(f"{group}={path.stem}")[group]
    base: dict[str, Any] = {}
    for name in bases:
        base = _merged(base, config_nodes()[name])
    assert section == _merged(base, own)
    schema = _schema_of(group, section.get("name", path.stem))
    fields = {f.name: f for f in dataclasses.fields(schema)}
    assert set(section) <= set(fields), f"{path}: keys the schema does not know"
    required = {name for name, f in fields.items() if not f.metadata.get("optional")}
    assert required <= set(section), f"{path}: required keys missing"
    assert "???" not in section.values(), f"{path}: a key without a default is not set"


@pytest.mark.parametrize("name", list(LOGGER_SCHEMAS))
def test_a_logger_preset_is_its_schema_defaults_under_its_name(name):
    """``logger=NAME`` composes to ``{NAME: its schema's defaults}`` and sets nothing else."""
    own, bases = _yaml(CONF_DIR / "logger" / f"{name}.yaml")
    assert own == {} and bases == [f"schema_logger_{name}"]
    assert _composed(f"logger={name}")["logger"] == {name: defaults(LOGGER_SCHEMAS[name])}


def test_loggers_compose_by_name_in_a_list_or_all_at_once():
    assert _composed()["logger"] == {} == _composed("logger=none")["logger"]
    both = _composed("logger=[tensorboard,mlflow]", "logger.mlflow.experiment_name=x")["logger"]
    assert both == {"tensorboard": {}, "mlflow": {**defaults(LOGGER_SCHEMAS["mlflow"]),
                                                  "experiment_name": "x"}}
    assert _composed("logger=many")["logger"] == {
        name: defaults(schema) for name, schema in LOGGER_SCHEMAS.items()}


def test_model_presets_compose_to_every_option_with_its_default():
    for name, schema in MODEL_SCHEMAS.items():
        assert _composed(f"model={name}")["model"] == defaults(schema)


def test_the_samt_preset_composes_to_samts_defaults():
    own, bases = _yaml(CONF_DIR / "optimizer" / "samt.yaml")
    assert bases == ["schema_optimizer_samt"]
    assert set(own) == {"_target_", "_partial_", "name", "label", "schedule"}
    opt = _composed("optimizer=samt")["optimizer"]
    assert {k: v for k, v in opt.items() if k not in own} == samt_option_defaults()


def _restated(own: dict[str, Any], defaults_: dict[str, Any], where: str = "") -> list[str]:
    """The keys of ``own`` whose value is the schema's default (nested sections too)."""
    found = []
    for key, value in own.items():
        if key not in defaults_:
            continue
        if isinstance(value, dict) and isinstance(defaults_[key], dict):
            found += _restated(value, defaults_[key], f"{where}{key}.")
        elif value == defaults_[key] and type(value) is type(defaults_[key]):
            found.append(f"{where}{key}: {value!r}")
    return found


def _preset_files() -> list[Path]:
    """The files built on a schema node: config.yaml, the dataset, model and device presets and
    optimizer/samt.yaml. (Its variants, samt_e.yaml and so on, name what makes the variant,
    e.g. ``step_type: element``, whatever the default; experiment presets spell out a paper
    table's protocol.)"""
    return [CONF_DIR / "config.yaml", *(path for _, path in _group_files()),
            CONF_DIR / "optimizer" / "samt.yaml"]


@pytest.mark.parametrize("path", _preset_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_preset_restates_a_schema_default(path):
    own, _ = _yaml(path)
    if path.name == "config.yaml":
        schema_defaults = defaults(RunConfig)
    elif path.parent.name == "optimizer":
        schema_defaults = samt_option_defaults()
    else:
        section = _composed(f"{path.parent.name}={path.stem}")[path.parent.name]
        schema_defaults = defaults(_schema_of(path.parent.name, section.get("name", path.stem)))
    assert _restated(own, schema_defaults) == [], f"{path}: set by the schema already"


@pytest.mark.parametrize("override", [
    "seed=3", "data.val_seed=7", "data.val_fraction=0.1", "model.dropout=0.5",
    "model=cnn model.channels=[8]", "device.threads=2", "dataset=uci_wine dataset.split=3",
    "optimizer.eta_max=1.0", "optimizer=samt_s optimizer.meta_init=/x", "optimizer.features=[var]",
])
def test_every_schema_key_is_overridable_without_a_plus(override):
    """The schema's keys exist after composition: ``key=value`` sets them (no ``+``)."""
    cfg = _composed(*override.split())
    key, _, value = override.split()[-1].partition("=")
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert str(node).replace("'", "").replace(" ", "") == value


def test_model_builders_take_exactly_the_schema_options_with_its_defaults():
    assert list(MODELS) == list(MODEL_SCHEMAS)
    for name, builder in MODELS.items():
        params = inspect.signature(builder).parameters
        options = [p for p in params if p not in ("input_shape", "num_outputs")]
        assert ["name", *options] == [f.name for f in dataclasses.fields(MODEL_SCHEMAS[name])]
        for key, value in defaults(MODEL_SCHEMAS[name]).items():
            default = params[key].default if key in params else inspect.Parameter.empty
            assert default is inspect.Parameter.empty or default == type(default)(value), key


# --- every key is checked from the schema: one message naming key, value and what is allowed ---


def _base(tmp_path: Path, model: str) -> dict[str, Any]:
    """The default config with ``model``, a UCI dataset (it has ``split``) and ``device=cpu``
    (``threads``), composed by Hydra from conf/ and resolved."""
    overrides = [f"model={model}", "dataset=uci_concrete", "device=cpu", "optimizer=adam",
                 "logger=many",
                 f"data.root={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides),
                                      resolve=True)


def _schemas() -> list[tuple[str, str, type]]:
    """(section, model the config uses, schema) for the top level and every section."""
    rows = [("", "mlp", RunConfig)]
    for section, schema in SECTIONS.items():
        if isinstance(schema, dict):
            rows += [(section, name, s) for name, s in schema.items()]
        elif schema is not None:
            rows.append((section, "mlp", schema))
    rows += [(f"logger.{name}", "mlp", schema) for name, schema in LOGGER_SCHEMAS.items()
             if dataclasses.fields(schema)]  # csv and tensorboard have no settings
    return rows


def _bad_values(kind: Any, rules: dict) -> list[tuple[Any, str]]:
    """Values a field of type ``kind`` with ``rules`` refuses, each with what the message says."""
    if "choices" in rules:
        return [("nonsense", "allowed: ")]
    if kind is Any or dataclasses.is_dataclass(kind):
        return []
    if isinstance(kind, types.UnionType):  # X | None: null is allowed, X is checked
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        return [("maybe", "expected true or false"), (1, "expected true or false")]
    if kind is str:
        return [(5, "expected"), ("", "expected")]
    if typing.get_origin(kind) is list and typing.get_args(kind) == (str,):
        return [("x", "a list of tags"), ([5], "a list of tags"), (["a", "a"], "more than once")]
    if typing.get_origin(kind) is dict:
        return [("abc", "expected a mapping of"), (["mlflow"], "expected a mapping of")]
    if typing.get_origin(kind) is list:
        return [([], "a non-empty list of positive integers"), ([0], "positive integers")]
    bad = [("abc", "expected an integer" if kind is int else "expected a number")]
    if kind is int:
        bad.append((2.5, "expected an integer"))
    if kind is float:
        bad.append((float("nan"), "expected a finite number"))
    if rules.get("seed"):
        bad += [(-1, ">= 0"), (SEED_MAX + 1, f"0..{SEED_MAX}")]
    if "low" in rules:
        sign = ">" if rules.get("strict") else ">="
        bad.append((rules["low"] - (1 if kind is int else 0.5), f"{sign} {rules['low']}"))
    if "high" in rules:
        bad.append((rules["high"], f"< {rules['high']}"))
    return bad


def _cases() -> list[tuple[str, str, Any, str]]:
    """(key, model, bad value, needle) for every field the schema describes."""
    cases = []
    for section, model, schema in _schemas():
        for f in dataclasses.fields(schema):
            key = f"{section}.{f.name}" if section else f.name
            rules = dict(f.metadata)
            if f.name == "name" and isinstance(SECTIONS.get(section), dict):
                rules["choices"] = tuple(SECTIONS[section])  # it chooses the schema
            for value, needle in _bad_values(field_types(schema)[f.name], rules):
                cases.append((key, model, value, needle))
    return cases


def _refused(cfg: dict[str, Any], key: str, value: Any) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    message = str(info.value)
    assert message.startswith(f"{key}={value!r} is invalid: "), message
    assert "\n" not in message
    return message


def _section(cfg: dict[str, Any], section: str) -> dict[str, Any]:
    """The mapping ``section`` names (``""``: the top level; ``logger.mlflow``: nested)."""
    node = cfg
    for part in filter(None, section.split(".")):
        node = node[part]
    return node


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("data")
    return {name: _base(root, name) for name in MODEL_SCHEMAS}


def test_every_group_config_validates(bases):
    for cfg in bases.values():
        validate_config(copy.deepcopy(cfg))


@pytest.mark.parametrize("key, model, value, needle", _cases(),
                         ids=[f"{k}-{m}-{v!r}" for k, m, v, _ in _cases()])
def test_a_bad_value_names_key_value_and_what_is_allowed(bases, key, model, value, needle):
    cfg = copy.deepcopy(bases[model])
    _set(cfg, key, value)
    assert needle in _refused(cfg, key, value)


@pytest.mark.parametrize("section, model, schema", _schemas(), ids=lambda x: str(x))
def test_an_unknown_key_names_the_closest_known_one(bases, section, model, schema):
    cfg = copy.deepcopy(bases[model])
    known = [f.name for f in dataclasses.fields(schema)]
    typo = known[-1] + "x"
    key = f"{section}.{typo}" if section else typo
    _set(cfg, key, 1)
    message = _refused(cfg, key, 1)
    assert "unknown" in message and f"did you mean {key[:-1]}?" in message
    assert f"known keys: {', '.join(sorted([*known, *([] if section else GROUPS)]))}" in message


@pytest.mark.parametrize("section, model, schema", _schemas(), ids=lambda x: str(x))
def test_a_missing_required_key_is_named(bases, section, model, schema):
    for f in dataclasses.fields(schema):
        if f.metadata.get("optional") or dataclasses.is_dataclass(field_types(schema)[f.name]):
            continue
        cfg = copy.deepcopy(bases[model])
        node = _section(cfg, section)
        del node[f.name]
        key = f"{section}.{f.name}" if section else f.name
        _refused(cfg, key, None)


def test_optional_keys_may_be_left_out(bases):
    for section, model, schema in _schemas():
        cfg = copy.deepcopy(bases[model])
        node = _section(cfg, section)
        for f in dataclasses.fields(schema):
            if f.metadata.get("optional"):
                node.pop(f.name, None)
        validate_config(cfg)


# --- through samt-run: exit 2, one line, nothing written ----------------------------------------

CLI_CASES = {  # the arguments, and the start of the one error line
    "top-unknown": (["+epoch=3"], "epoch=3 is invalid: unknown top-level key; did you mean "
                    "epochs?"),
    "top-type": (["eval_batch_size=big"], "eval_batch_size='big' is invalid: expected an integer"),
    "top-range": (["max_consecutive_skips=0"], "max_consecutive_skips=0 is invalid: must be >= 1"),
    "top-choice": (["resume=maybe"], "resume='maybe' is invalid: allowed: auto, true, false"),
    "logger-unknown": (["logger=mlflow", "+logger.mlflow.tracking_ur=x"], "logger.mlflow."
                       "tracking_ur='x' is invalid: unknown key for logger mlflow; did you mean "
                       "logger.mlflow.tracking_uri?"),
    "logger-name": (["+logger.wandbb={}"], "logger.wandbb={} is invalid: unknown logger "
                    "(conf/logger/); did you mean logger.wandb?"),
    "logger-choice": (["logger=wandb", "logger.wandb.mode=online2"], "logger.wandb.mode="
                      "'online2' is invalid: allowed: offline, online"),
    "logger-type": (["logger=mlflow", "logger.mlflow.experiment_name=''"], "logger.mlflow."
                    "experiment_name='' is invalid: expected a non-empty string"),
    "data-unknown": (["+data.val_fractio=0.1"], "data.val_fractio=0.1 is invalid: unknown key "
                     "for data; did you mean data.val_fraction?"),
    "data-type": (["data.val_fraction=half"], "data.val_fraction='half' is invalid: expected a "
                  "number"),
    "data-range": (["data.val_fraction=1.0"], "data.val_fraction=1.0 is invalid: must be < 1.0"),
    "dataset-unknown": (["dataset=uci_concrete", "+dataset.splits=1"], "dataset.splits=1 is "
                        "invalid: unknown key for dataset uci_concrete; did you mean "
                        "dataset.split?"),
    "dataset-type": (["dataset=uci_concrete", "dataset.split=first"], "dataset.split='first' is "
                     "invalid: expected an integer"),
    "model-unknown": (["model=cnn", "+model.channel=[4]"], "model.channel=[4] is invalid: unknown "
                      "key for model cnn; did you mean model.channels?"),
    "model-type": (["model=cnn", "model.hidden=[8]"], "model.hidden=[8] is invalid: expected an "
                   "integer"),
    "model-range": (["model.input_dropout=-0.1"], "model.input_dropout=-0.1 is invalid: must be "
                    ">= 0.0"),
    "model-choice": (["model.norm=layer"], "model.norm='layer' is invalid: allowed: none, batch"),
    "device-unknown": (["+device.thread=2"], "device.thread=2 is invalid: unknown key for device; "
                       "did you mean device.threads?"),
    "device-type": (["device.threads=many"], "device.threads='many' is invalid: expected an "
                    "integer"),
    "device-choice": (["device.type=tpu"], "device.type='tpu' is invalid: allowed: cpu, cuda, "
                      "auto"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_samt_run_refuses_with_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    args, expected = CLI_CASES[case]
    out = tmp_path / "run"
    base = ["dataset=digits", "optimizer=adam", "device=cpu", "progress=false", "epochs=1",
            f"data.root={tmp_path}"]
    code = run_cli([*base, *args, f"hydra.run.dir={out}"])
    captured = capsys.readouterr()
    message = captured.err + captured.out
    errors = [line for line in message.splitlines() if line.startswith("samt-run: error:")]
    assert code == 2, message
    assert len(errors) == 1 and errors[0].startswith(f"samt-run: error: {expected}"), message
    assert "Traceback" not in message
    assert not out.exists()
