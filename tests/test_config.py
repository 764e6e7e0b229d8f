"""Every combination of the config groups composes, resolves and passes validation."""

from __future__ import annotations

import itertools

import pytest
from conftest import CONF_DIR
from helpers import compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from samt.validation import ConfigError, validate_config

GROUPS = ("dataset", "model", "optimizer", "device")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str]) -> dict:
    return compose_config(*overrides)


UNJOINED = {"dataset", "optimizer"}  # no rule joins these two groups: their pairs are not all run


def _pairwise_combinations() -> list[tuple[str, ...]]:
    """Combinations in which every pair of options from two groups occurs at least once, except
    dataset x optimizer (``UNJOINED``: each dataset and each optimizer still composes with every
    model and every device): one per model x optimizer pair with datasets and devices cycled,
    then one per pair still missing, the other groups at their first option."""
    options = [_options(g) for g in GROUPS]
    datasets, models, optimizers, devices = options
    combos = [(datasets[i % len(datasets)], model, optimizer, devices[i % len(devices)])
              for i, (optimizer, model) in enumerate(itertools.product(optimizers, models))]
    for a, b in itertools.combinations(range(len(GROUPS)), 2):
        if {GROUPS[a], GROUPS[b]} == UNJOINED:
            continue
        for x, y in itertools.product(options[a], options[b]):
            if not any(c[a] == x and c[b] == y for c in combos):
                combo = [o[0] for o in options]
                combo[a], combo[b] = x, y
                combos.append(tuple(combo))
    return combos


def test_every_pair_of_group_options_composes_and_validates(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    combos = _pairwise_combinations()
    for a, b in itertools.combinations(range(len(GROUPS)), 2):
        if {GROUPS[a], GROUPS[b]} == UNJOINED:
            continue
        pairs = {(c[a], c[b]) for c in combos}
        assert len(pairs) == len(_options(GROUPS[a])) * len(_options(GROUPS[b])), (a, b)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for combo in combos:
            overrides = [f"{g}={o}" for g, o in zip(GROUPS, combo, strict=True)]
            cfg = OmegaConf.to_container(compose(config_name="config", overrides=overrides),
                                         resolve=True)
            validate_config(cfg)
            assert cfg["dataset"]["name"].replace("_", "") in combo[0].replace("_", "")


def test_defaults_are_the_paper_headline_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    cfg = _compose([])
    assert cfg["dataset"]["name"] == "mnist"
    assert cfg["model"] == {"name": "mlp", "hidden": [400], "activation": "relu",
                            "dropout": 0.0, "input_dropout": 0.0, "norm": "none"}
    assert cfg["data"]["root"] == str(tmp_path)


def test_samt_presets_set_their_step_type(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    expected = {"samt_s": "scalar", "samt_e": "element", "samt_r": "row", "samt_c": "column"}
    for preset, step_type in expected.items():
        cfg = _compose([f"optimizer={preset}"])
        assert cfg["optimizer"]["step_type"] == step_type
        assert cfg["optimizer"]["label"] == preset
    assert _compose(["optimizer=am_fixed"])["optimizer"]["combine"] == "fixed"
    assert _compose(["optimizer=samt_e_right"])["optimizer"]["combine"] == "learned"
    hyper = _compose(["optimizer=samt_e_hypergradient"])["optimizer"]
    assert hyper["meta_mode"] == "hypergradient"


@pytest.mark.parametrize("override, key", [
    ("epochs=0", "epochs"),
    ("batch_size=0", "batch_size"),
    ("optimizer=sgd optimizer.lr=0", "optimizer.lr"),
    ("optimizer=samt_e optimizer.eta_min=2.0", "optimizer.eta_min"),
    ("optimizer=samt_e optimizer.eta0=5.0", "optimizer.eta0"),
    ("optimizer=samt_e optimizer.step_type=diagonal", "optimizer.step_type"),
    ("optimizer=samt_e optimizer.projection=relu", "optimizer.projection"),
    ("optimizer=samt_e optimizer.combine=sum", "optimizer.combine"),
    ("optimizer=samt_e optimizer.meta_mode=none", "optimizer.meta_mode"),
    ("optimizer=samt_e optimizer.features=[mean,skew]", "optimizer.features"),
    ("optimizer=samt_e optimizer.group_size=-1", "optimizer.group_size"),
    ("optimizer=samt_e optimizer.features_per_group=true", "optimizer.features_per_group"),
    ("model.hidden=[]", "model.hidden"),
])
def test_bad_values_name_the_key(override, key, monkeypatch, tmp_path):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    cfg = _compose(override.split())
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(cfg)
