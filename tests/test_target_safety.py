"""A config's ``_target_`` imports code: only ``optimizer._target_`` may name any, it is checked
before it is imported (no module of the standard library; a package outside the shipped ones
is named first) and after (an optimizer class), and nothing nested is ever instantiated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import error_lines
from torch import nn

from samt.targets import optimizer_constructor
from samt.train.build_optimizer import build_from_config
from samt.validation import ConfigError

ZEN = "Beautiful is better than ugly"


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return ["dataset=digits", "model.hidden=[8]", "epochs=1", "device=cpu", "progress=false",
            f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", *extra]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize("override, key", [
    ("+optimizer.beta3={{_target_:builtins.open,file:{victim},mode:w}}", "optimizer.beta3"),
    ("optimizer.betas=[0.9,{{_target_:builtins.open,file:{victim},mode:w}}]",
     "optimizer.betas[1]"),
    ("+model.extra={{inner:{{_target_:shutil.copyfile,src:{victim},dst:{victim}.copy}}}}",
     "model.extra.inner"),
])
def test_a_nested_target_is_refused_and_never_called(tmp_path, capsys, override, key):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    optimizer = "optimizer=adam" if "betas" in override else "optimizer=prodigy"
    assert run_cli(_args(tmp_path, optimizer, override.format(victim=victim))) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert f"{key}=" in error and "a nested _target_ is not allowed" in error
    assert victim.read_text() == "precious\n" and not Path(f"{victim}.copy").exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("target", ["builtins.type", "collections.OrderedDict", "this.X",
                                    "builtins.open", "os.system"])
def test_a_standard_library_target_is_one_line_and_never_imported(tmp_path, capsys, target):
    sys.modules.pop("this", None)
    assert run_cli(_args(tmp_path, "optimizer=adam", f"optimizer._target_={target}")) == 2
    out = capsys.readouterr()
    (error,) = error_lines(out.err)
    assert f"optimizer._target_='{target}' is invalid" in error
    assert "standard library" in error and "not imported" in error
    assert ZEN not in out.out + out.err and "this" not in sys.modules
    assert not (tmp_path / "run").exists()  # no stray folder


def _package(tmp_path: Path, monkeypatch, body: str) -> str:
    """A package of the user's own on ``sys.path``: ``myopts`` with ``body``; its name."""
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "myopts.py").write_text(body)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("myopts", None)
    return "myopts"


def test_a_package_outside_the_shipped_ones_is_named_before_it_is_imported(
        tmp_path, monkeypatch, capsys):
    import samt.targets

    monkeypatch.setattr(samt.targets, "_ANNOUNCED", set())
    name = _package(tmp_path, monkeypatch, "import sys, torch\n"
                    "print('IMPORTED', file=sys.stderr)\n"
                    "class MySGD(torch.optim.SGD):\n    pass\n")
    make, cls = optimizer_constructor({"_target_": f"{name}.MySGD", "_partial_": True,
                                       "name": "my", "lr": 0.1})
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("samt-run: note: optimizer._target_='myopts.MySGD' imports the "
                             "module myopts") and err[1] == "IMPORTED"
    assert cls.__name__ == "MySGD" and make.keywords == {"lr": 0.1}


def test_the_constructor_binds_plain_values_and_refuses_nested_targets(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer.momentum=.*nested _target_"):
        optimizer_constructor({"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": {
            "_target_": "builtins.open", "file": str(tmp_path / "victim"), "mode": "w"}})
    assert not (tmp_path / "victim").exists()
    make, _ = optimizer_constructor({"_target_": "torch.optim.Adam", "betas": [0.8, 0.9]})
    assert make.keywords == {"betas": (0.8, 0.9)}


def test_a_takes_model_class_must_keep_the_runners_contract(tmp_path, monkeypatch):
    name = _package(tmp_path, monkeypatch, "class Half:\n    takes_model = True\n"
                    "    def __init__(self, model, loss_fn):\n        self.model = model\n"
                    "    def step(self, inputs, targets):\n        return None\n")
    with pytest.raises(ConfigError) as err:
        build_from_config({"_target_": f"{name}.Half", "_partial_": True, "name": "half"},
                          nn.Linear(2, 2), nn.functional.mse_loss)
    message = str(err.value)
    assert "optimizer._target_='myopts.Half' is invalid: its objects lack" in message
    assert "epoch_stats, eval_mode, has_meta" in message and "step," not in message
