"""Optimizers by ``_target_``: adding one is a yaml file; the checks read the class it names;
the SAMT preset composes SAMT's constructor defaults (one source: SAMTOptions)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF_DIR, run_cli
from helpers import compose_config
from torch import nn

from samt.optim import SAMT, TorchOptimizerStep, build_optimizer, takes_model
from samt.optim.hypergradient_sgd import HypergradientSGD
from samt.train import Run
from samt.train.checkpoint import CHECKPOINT, load_checkpoint
from samt.validation import ConfigError, validate_config, validate_environment

ADAGRAD = ("_target_: torch.optim.Adagrad\n_partial_: true\nname: adagrad\nlabel: adagrad\n"
           "lr: 0.05\nlr_decay: 0.0\nschedule: constant\n")


def _compose(*overrides: str, config_dir: Path | None = None) -> dict:
    return compose_config("dataset=digits", "device=cpu", "device.threads=1", "progress=false",
                          "model.hidden=[16]", "epochs=1", *overrides, config_dir=config_dir)


def _my_conf(tmp_path: Path, name: str, text: str) -> Path:
    """A user's config folder holding ``optimizer/<name>.yaml``."""
    conf = tmp_path / "myconf"
    (conf / "optimizer").mkdir(parents=True, exist_ok=True)
    (conf / "optimizer" / f"{name}.yaml").write_text(text)
    return conf


def _validate(cfg: dict) -> None:
    validate_config(cfg)
    validate_environment(cfg)


def test_an_optimizer_added_as_a_yaml_file_trains(tmp_path: Path):
    """A yaml naming torch.optim.Adagrad in the user's own config folder, nothing else."""
    conf = _my_conf(tmp_path, "adagrad", ADAGRAD)
    run = tmp_path / "run"
    code = run_cli(["--config-dir", str(conf), "optimizer=adagrad", "dataset=digits",
                    "epochs=1", "progress=false", "device=cpu", "model.hidden=[16]",
                    f"data.root={tmp_path / 'data'}", f"hydra.run.dir={run}"])
    assert code in (None, 0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["optimizer"] == "adagrad" and summary["label"] == "adagrad"
    assert summary["final"]["test_metric"] > 20.0  # digits, chance is 10 %
    group = load_checkpoint(run / CHECKPOINT)["optimizer"]["optimizer"]["param_groups"][0]
    assert group["lr"] == 0.05 and "lr_decay" in group  # Adagrad's own option


@pytest.mark.parametrize("name, cls", [("radam", torch.optim.RAdam),
                                       ("adamw", torch.optim.AdamW)])
def test_shipped_radam_and_adamw_train(name, cls, tmp_path: Path):
    cfg = _compose(f"optimizer={name}", f"data.root={tmp_path}", "epochs=2")
    _validate(cfg)
    run = Run(cfg, tmp_path / "run")
    summary = run.execute()
    assert summary["status"] == "completed" and summary["label"] == name
    assert type(run.optimizer) is TorchOptimizerStep and type(run.optimizer.optimizer) is cls
    assert run.optimizer.optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # a tuple
    assert run.optimizer.optimizer.param_groups[0]["lr"] == 1e-3  # the yaml's
    rows = load_checkpoint(tmp_path / "run" / CHECKPOINT)["rows"]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.parametrize("override, needles", [
    ("+optimizer.foo=1", ["optimizer='adagrad'", "options were rejected",
                          "unknown key optimizer.foo=1", "torch.optim.Adagrad", "lr_decay"]),
    ("optimizer.lr_decay=fast", ["optimizer.lr_decay='fast'", "a number",
                                 "optimizer adagrad's default: 0"]),
    ("optimizer.lr=0", ["optimizer.lr=0", "> 0"]),
    ("+optimizer.initial_accumulator_value=abc",
     ["optimizer.initial_accumulator_value='abc'", "a number"]),
    ("optimizer.schedule=cosine", None),  # allowed: Adagrad takes an outside schedule
])
def test_a_yaml_added_optimizer_is_checked_against_its_class(override, needles, tmp_path):
    conf = _my_conf(tmp_path, "adagrad", ADAGRAD)
    cfg = _compose("optimizer=adagrad", override, f"data.root={tmp_path}", config_dir=conf)
    if needles is None:
        _validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        _validate(cfg)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_constant_schedule_only_is_a_key_of_the_yaml(tmp_path: Path):
    conf = _my_conf(tmp_path, "adagrad_own", ADAGRAD + "constant_schedule_only: true\n")
    cfg = _compose("optimizer=adagrad_own", f"data.root={tmp_path}", config_dir=conf)
    _validate(cfg)
    cfg = _compose("optimizer=adagrad_own", "optimizer.schedule=cosine",
                   f"data.root={tmp_path}", config_dir=conf)
    with pytest.raises(ConfigError, match=r"optimizer.schedule='cosine' is invalid: optimizer "
                       r"adagrad adapts its own step size .*only constant"):
        _validate(cfg)
    for shipped in ("hypergradient_sgd", "schedulefree_adamw"):
        assert _compose(f"optimizer={shipped}",
                        f"data.root={tmp_path}")["optimizer"]["constant_schedule_only"] is True


@pytest.mark.parametrize("target, needles", [
    ("torch.optim.Adamm", ["optimizer._target_='torch.optim.Adamm'", "cannot be imported",
                           "torch.optim has no attribute 'Adamm'", "torch.optim.Adam,"]),
    ("no_such_package.Optimizer", ["optimizer._target_='no_such_package.Optimizer'",
                                   "ModuleNotFoundError", "e.g. torch.optim.Adam"]),
    ("adam", ["optimizer._target_='adam'", "dotted path"]),
    ("math.pi", ["optimizer._target_='math.pi'", "Python's standard library (math)",
                 "not imported"]),
    ("torch.nn.functional.relu", ["names a function, not a class"]),
    ("torch.nn.Linear", ["names a class that is no optimizer", "torch.optim.Optimizer"]),
])
def test_a_bad_target_is_one_clear_error(target, needles, tmp_path: Path):
    cfg = _compose("optimizer=adam", f"optimizer._target_={target}", f"data.root={tmp_path}")
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_a_missing_target_or_partial_false_is_refused(tmp_path: Path):
    conf = _my_conf(tmp_path, "old_style", "name: adam\nlabel: adam\nlr: 1.0e-3\n")
    cfg = _compose("optimizer=old_style", f"data.root={tmp_path}", config_dir=conf)
    with pytest.raises(ConfigError, match=r"optimizer._target_=None is invalid: expected the "
                                          r"dotted path of an importable optimizer class"):
        validate_config(cfg)
    cfg = _compose("optimizer=adam", "optimizer._partial_=false", f"data.root={tmp_path}")
    with pytest.raises(ConfigError, match=r"optimizer._partial_=False is invalid: allowed: true"):
        validate_config(cfg)


def test_the_cli_refuses_a_bad_target_without_importing_torch_first(tmp_path: Path):
    """A malformed ``_target_`` is a static check: refused before torch is imported."""
    code = ("import sys\nfrom samt.cli import run_main\n"
            f"sys.argv = ['samt-run', 'optimizer=adam', 'optimizer._target_=adam', "
            f"'hydra.run.dir={tmp_path / 'run'}']\n"
            "try:\n    run_main()\nexcept SystemExit as exc:\n    assert exc.code == 2\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "optimizer._target_='adam' is invalid" in done.stderr


def test_every_shipped_optimizer_config_names_an_importable_class():
    from samt.validation import optimizer_target

    for path in sorted((CONF_DIR / "optimizer").glob("*.yaml")):
        cfg = _compose(f"optimizer={path.stem}", "data.root=/tmp")
        opt = cfg["optimizer"]
        assert opt["_partial_"] is True, path.name
        cls = optimizer_target(cfg)
        assert takes_model(cls) == issubclass(cls, SAMT) == opt["name"].startswith("samt")
        assert opt["name"] == (path.stem if not takes_model(cls) else "samt"), path.name


def test_the_samt_preset_composes_the_constructors_defaults():
    """One source for SAMT's defaults: ``SAMTOptions`` (samt/optim/options.py). The constructor's
    keyword defaults are its values; the composed ``optimizer=samt`` holds every option but
    ``SAMT_UNLISTED`` (so that the command line can override it) with that value, and samt.yaml
    restates none of them."""
    from samt.optim.options import DEFAULTS, SAMTOptions
    from samt.schema import SAMT_UNLISTED

    params = inspect.signature(SAMT).parameters
    fields = [f.name for f in dataclasses.fields(SAMTOptions)]
    assert fields == [p for p in params if p not in ("model", "loss_fn")]
    for key in fields:
        assert params[key].default is getattr(DEFAULTS, key), key
    opt = _compose("optimizer=samt", "data.root=/tmp")["optimizer"]
    options = {k: v for k, v in opt.items()
               if k not in ("_target_", "_partial_", "name", "label", "schedule")}
    assert set(options) == set(fields) - set(SAMT_UNLISTED)
    for key, value in options.items():
        default = params[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key
    written = yaml.safe_load((CONF_DIR / "optimizer" / "samt.yaml").read_text())
    assert not set(written) & set(options), "samt.yaml restates a default"
    assert params["eta_max"].default == 0.3


def test_build_optimizer_takes_a_class_a_dotted_path_or_a_name():
    def model() -> nn.Sequential:
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    ce = nn.functional.cross_entropy
    for optimizer, cls in [(torch.optim.Adagrad, torch.optim.Adagrad), ("radam", torch.optim.RAdam),
                           ("torch.optim.AdamW", torch.optim.AdamW),
                           (HypergradientSGD, HypergradientSGD)]:
        stepper = build_optimizer(optimizer, model(), ce, lr=0.01)
        assert type(stepper.optimizer) is cls
        stepper.step(torch.randn(5, 4), torch.randint(0, 3, (5,)))
    adam = build_optimizer("adam", model(), ce, betas=[0.8, 0.9])
    assert adam.optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    samt = build_optimizer("samt", model(), ce, eta0=0.1, features=["mean", "norm"])
    assert type(samt) is SAMT and samt.eta_max == 0.3
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        build_optimizer("adamx", model(), ce)


def test_samt_optim_imports_no_hydra(tmp_path: Path):
    code = ("import sys\nimport samt.optim.factory, samt.optim.samt, samt.optim.baselines\n"
            "print([m for m in ('hydra', 'omegaconf') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
