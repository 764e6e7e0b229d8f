"""Datasets by ``_target_``: a user's dataset is one yaml file in their ``--config-dir`` and one
function ``load(root, split, **options) -> samt.data.DatasetSplits`` (docs/datasets.md). The
target is checked as ``optimizer._target_`` is: before it is imported (no module of the standard
library), after (a function taking the config's options), and what it returns (a
``DatasetSplits``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import check_stdlib_target_refused, compose_config, error_lines

import samt.targets
from samt.validation import ConfigError, validate_config

# The user's module: a blobs dataset (three well separated Gaussian clusters in 4-D), a loader
# with a required option, and two that return the wrong thing. It records each call.
MODULE = '''
import torch
from samt.data import DatasetSplits

CALLS = []


def load_blobs(root, split, *, n=240, classes=3, noise=0.5):
    CALLS.append((root, split, n, classes, noise))
    g = torch.Generator().manual_seed(split)
    centers = 4 * torch.randn(classes, 4, generator=g)
    y = torch.arange(n) % classes
    x = centers[y] + noise * torch.randn(n, 4, generator=g)
    cut = 3 * n // 4
    return DatasetSplits(name="blobs", task="classification", x_train=x[:cut],
                         y_train=y[:cut], x_test=x[cut:], y_test=y[cut:], input_shape=(4,),
                         num_outputs=classes)


def load_needs_size(root, split, size):
    return load_blobs(root, split, n=size)


def load_dict(root, split, **options):
    return {"x": [1, 2, 3]}


class Blobs:
    pass
'''
BLOBS = "_target_: mysets.load_blobs\nname: blobs\nn: 200\nclasses: 3\n"


@pytest.fixture
def mysets(tmp_path: Path, monkeypatch) -> Path:
    """``mysets`` on ``sys.path`` (fresh) and a config folder with ``dataset/blobs.yaml``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "mysets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mysets", raising=False)
    monkeypatch.setattr(samt.targets, "_ANNOUNCED", set())
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    conf = tmp_path / "myconf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "dataset" / "blobs.yaml").write_text(BLOBS)
    return conf


def _args(tmp_path: Path, conf: Path, *extra: str) -> list[str]:
    return ["--config-dir", str(conf), "dataset=blobs", "optimizer=adam", "optimizer.lr=0.01",
            "model.hidden=[16]", "epochs=2", "batch_size=32", "device=cpu", "progress=false",
            f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}", *extra]


def test_a_users_dataset_is_a_yaml_file_and_a_function(tmp_path, mysets, capsys):
    assert run_cli(_args(tmp_path, mysets, "+dataset.split=1", "data.val_fraction=0.2")) in (
        None, 0)
    err = capsys.readouterr().err
    assert "samt-run: note: dataset._target_='mysets.load_blobs' imports the module mysets" in err
    calls = sys.modules["mysets"].CALLS
    assert calls[-1] == (tmp_path / "data", 1, 200, 3, 0.5)  # root, split, the yaml's options
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["dataset"] == "blobs"
    assert (summary["train_size"], summary["val_size"], summary["test_size"]) == (120, 30, 50)
    assert summary["split"]["dataset_split"] == 1
    assert summary["final"]["test_metric"] > 80.0  # three separated clusters; chance is 33 %


@pytest.mark.parametrize("override, needle", [
    ("+dataset.nn=3", "dataset.nn=3 is invalid: unknown key for dataset blobs "
                      "(mysets.load_blobs takes no argument 'nn'); known keys: _target_, "
                      "classes, n, name, noise, split"),
    ("dataset._target_=mysets.load_needs_size",
     "dataset.n=200 is invalid: unknown key for dataset blobs (mysets.load_needs_size takes no "
     "argument 'n'); known keys: _target_, name, size, split"),
    ("dataset.n=x", None),  # the function's own options are its to check
    ("dataset._target_=mysets.Blobs", "dataset._target_='mysets.Blobs' is invalid: names a "
                                      "type, not a function"),
    ("dataset._target_=mysets.CALLS", "names a list, not a function"),
    ("dataset._target_=mysets.nothing", "cannot be imported (AttributeError: mysets has no "
                                        "attribute 'nothing')"),
    ("dataset._target_=load_blobs", "dataset._target_='load_blobs' is invalid: expected the "
                                    "dotted path of an importable function load(root, split"),
    ("dataset.name=../up", "dataset.name='../up' is invalid: allowed: 1 to 100 characters"),
    ("+dataset.opt={_target_:builtins.open,file:victim,mode:w}",
     "dataset.opt={'_target_': 'builtins.open', 'file': 'victim', 'mode': 'w'} is invalid: a "
     "nested _target_ is not allowed"),
])
def test_the_target_and_its_options_are_checked_before_it_is_called(tmp_path, mysets,
                                                                    override, needle):
    cfg = compose_config("dataset=blobs", "device=cpu", f"data.root={tmp_path}", override,
                         config_dir=mysets)
    if needle is None:
        validate_config(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    module = sys.modules.get("mysets")
    assert module is None or module.CALLS == []  # imported at most, never called


def test_a_required_option_the_config_lacks_is_one_line(tmp_path, mysets):
    (mysets / "dataset" / "sized.yaml").write_text(
        "_target_: mysets.load_needs_size\nname: sized\n")
    cfg = compose_config("dataset=sized", "device=cpu", f"data.root={tmp_path}",
                         config_dir=mysets)
    with pytest.raises(ConfigError, match=r"^dataset._target_='mysets.load_needs_size' is "
                       r"invalid: cannot be called as mysets.load_needs_size\(root, split, "
                       r"\*\*options\) with the options of dataset sized \(TypeError: missing a "
                       r"required argument: 'size'\)"):
        validate_config(cfg)


@pytest.mark.parametrize("target", ["this.X", "builtins.open", "os.system"])
def test_a_standard_library_target_is_refused_unimported(tmp_path, mysets, capsys, target):
    sys.modules.pop("this", None)
    code = run_cli(_args(tmp_path, mysets, f"dataset._target_={target}"))
    check_stdlib_target_refused(capsys, code, "dataset._target_", target, tmp_path / "run")


def test_a_function_that_returns_no_dataset_splits_is_one_line(tmp_path, mysets, capsys):
    assert run_cli(_args(tmp_path, mysets, "dataset._target_=mysets.load_dict")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert error == ("samt-run: error: dataset._target_='mysets.load_dict' is invalid: returned "
                     "a dict, not a samt.data.DatasetSplits; expected the dotted path of an "
                     "importable function load(root, split, **options) that returns a "
                     "samt.data.DatasetSplits, e.g. mypkg.load_my_set (docs/datasets.md)")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "metrics.csv").exists()
