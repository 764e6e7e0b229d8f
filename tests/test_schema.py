"""The config schema (samt/schema.py): the yaml presets hold its defaults, the model builders take
its options, and every key it describes is checked from it with one clear message."""

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
    MODEL_SCHEMAS,
    SECTIONS,
    SEED_MAX,
    RunConfig,
    defaults,
    field_types,
)
from samt.validation import ConfigError, validate_config

# --- the yaml presets and the builders agree with the schema ------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    """A config file as written (interpolations unresolved), without its defaults list."""
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    node.pop("defaults", None)
    return node


def test_config_yaml_holds_the_schema_defaults_in_its_order():
    own = _yaml(CONF_DIR / "config.yaml")
    own.pop("hydra")
    assert own == defaults(RunConfig)
    assert list(own) == list(defaults(RunConfig))
    assert list(own["data"]) == list(defaults(field_types(RunConfig)["data"]))


def _group_files() -> list[tuple[str, Path]]:
    return [(group, path) for group, schema in GROUPS.items() if schema is not None
            for path in sorted((CONF_DIR / group).glob("*.yaml"))]


@pytest.mark.parametrize("group, path", _group_files(), ids=lambda x: getattr(x, "stem", x))
def test_group_presets_hold_the_schema_defaults(group, path):
    """Every key of a dataset, model or device preset is in its schema with the schema's
    default; a key without a default (``dataset.name``, ``device.type``) names the preset."""
    preset = _yaml(path)
    schema = GROUPS[group]
    if isinstance(schema, dict):
        schema = schema[preset["name"]]
    fields = {f.name: f for f in dataclasses.fields(schema)}
    assert set(preset) <= set(fields), f"{path}: keys the schema does not know"
    required = {name for name, f in fields.items() if not f.metadata.get("optional")}
    assert required <= set(preset), f"{path}: required keys missing"
    expected = {**dict.fromkeys(set(fields) - set(defaults(schema)), path.stem),
                **defaults(schema)}
    assert preset == {key: expected[key] for key in preset}


def test_model_presets_hold_every_option():
    for name, schema in MODEL_SCHEMAS.items():
        assert _yaml(CONF_DIR / "model" / f"{name}.yaml") == defaults(schema)


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
        bad.append((rules["low"] - (1 if kind is int else 0.5), f">= {rules['low']}"))
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
        node = cfg[section] if section else cfg
        del node[f.name]
        key = f"{section}.{f.name}" if section else f.name
        _refused(cfg, key, None)


def test_optional_keys_may_be_left_out(bases):
    for section, model, schema in _schemas():
        cfg = copy.deepcopy(bases[model])
        node = cfg[section] if section else cfg
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
    "top-choice": (["logger=wandb"], "logger='wandb' is invalid: allowed: none, tensorboard"),
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
