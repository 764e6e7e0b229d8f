"""Models by ``_target_``: a user's model is one yaml file in their ``--config-dir`` and one
function ``build(input_shape, num_outputs, **options) -> torch.nn.Module`` (or an ``nn.Module``
subclass taking those arguments; docs/extending.md). The target is checked as
``dataset._target_`` is: before it is imported (no module of the standard library), after (a
function taking the config's options), and what it returns (an ``nn.Module``). SAMT trains it
through its sequential fast path (an ``nn.Sequential``) or its graph engine (anything else)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from helpers import check_stdlib_target_refused, compose_config, error_lines
from torch import nn

import samt.targets
from samt.models import build_model
from samt.optim import SAMT
from samt.targets import build_configured_model
from samt.validation import ConfigError, validate_config

# The user's module: a Sequential MLP, a network of two branches joined by addition (as a
# function and as an nn.Module class), one with a required option, and targets of the wrong
# kind. Each builder records its calls.
MODULE = '''
import math

from torch import nn

CALLS = []


def tiny(input_shape, num_outputs, *, width=16, activation="relu"):
    CALLS.append(("tiny", input_shape, num_outputs, width, activation))
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), act(),
                         nn.Linear(width, num_outputs))


class TwoBranch(nn.Module):
    def __init__(self, input_shape, num_outputs, width=16):
        super().__init__()
        CALLS.append(("TwoBranch", input_shape, num_outputs, width))
        features = math.prod(input_shape)
        self.flatten = nn.Flatten()
        self.left = nn.Linear(features, width)
        self.right = nn.Linear(features, width)
        self.act = nn.ReLU()
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        x = self.flatten(x)
        return self.head(self.act(self.left(x)) + self.act(self.right(x)))


def two_branch(input_shape, num_outputs, **options):
    return TwoBranch(input_shape, num_outputs, **options)


def needs_depth(input_shape, num_outputs, depth):
    return tiny(input_shape, num_outputs)


def refuses(input_shape, num_outputs, *, width=16):
    from samt.models import ModelConfigError

    raise ModelConfigError(f"model.width={width!r} is invalid: a power of two")


def returns_dict(input_shape, num_outputs, **options):
    CALLS.append(("returns_dict", input_shape, num_outputs))
    return {"layers": [1, 2, 3]}


class NotAModule:
    def __init__(self, input_shape, num_outputs, width=16):
        CALLS.append(("NotAModule",))
'''
TINY = "_target_: mymodels.tiny\nname: tiny\nwidth: 24\n"
BRANCHES = "_target_: mymodels.TwoBranch\nname: branches\nwidth: 12\n"


@pytest.fixture
def mymodels(tmp_path: Path, monkeypatch) -> Path:
    """``mymodels`` on ``sys.path`` (fresh) and a config folder with ``model/tiny.yaml`` and
    ``model/branches.yaml``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "mymodels.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    monkeypatch.setattr(samt.targets, "_ANNOUNCED", set())
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    conf = tmp_path / "myconf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "tiny.yaml").write_text(TINY)
    (conf / "model" / "branches.yaml").write_text(BRANCHES)
    return conf


@pytest.fixture
def engines(monkeypatch) -> list[tuple[str, int]]:
    """The pass engine (its class name) and block count of every SAMT built from now on."""
    seen: list[tuple[str, int]] = []
    init = SAMT.__init__

    def spy(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        seen.append((type(self.passes).__name__, len(self.blocks)))

    monkeypatch.setattr(SAMT, "__init__", spy)
    return seen


def _args(tmp_path: Path, conf: Path, *extra: str) -> list[str]:
    return ["--config-dir", str(conf), "dataset=digits", "model=tiny", "optimizer=adam",
            "epochs=1", "device=cpu", "progress=false", f"data.root={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}", *extra]


def _summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.parametrize("optimizer", ["adam", "samt_e"])
def test_a_users_sequential_model_is_a_yaml_file_and_a_function(tmp_path, mymodels, capsys,
                                                                engines, optimizer):
    assert run_cli(_args(tmp_path, mymodels, f"optimizer={optimizer}",
                         "+model.activation=tanh")) in (None, 0)
    err = capsys.readouterr().err
    assert "samt-run: note: model._target_='mymodels.tiny' imports the module mymodels" in err
    calls = sys.modules["mymodels"].CALLS
    assert calls and set(calls) == {("tiny", (1, 8, 8), 10, 24, "tanh")}  # the yaml's options
    summary = _summary(tmp_path)
    assert summary["status"] == "completed" and summary["model"] == "tiny"
    assert summary["label"] == optimizer and summary["dataset"] == "digits"
    assert summary["num_params"] == 64 * 24 + 24 + 24 * 10 + 10
    assert summary["final"]["test_metric"] > 20.0  # learned something; chance is 10 %
    # SAMT splits an nn.Sequential as it splits the shipped MLP: one block per Linear
    assert engines == ([] if optimizer == "adam" else [("SequentialPasses", 2)])


def test_samt_trains_a_users_model_of_two_branches_through_its_graph_engine(tmp_path, mymodels,
                                                                           engines):
    assert run_cli(_args(tmp_path, mymodels, "model=branches", "optimizer=samt_s")) in (None, 0)
    assert engines == [("GraphPasses", 3)]  # traced by torch.fx: left, right, head
    assert set(sys.modules["mymodels"].CALLS) == {("TwoBranch", (1, 8, 8), 10, 12)}
    summary = _summary(tmp_path)
    assert summary["status"] == "completed" and summary["model"] == "branches"
    assert summary["num_params"] == 2 * (64 * 12 + 12) + 12 * 10 + 10
    assert summary["final"]["test_metric"] > 20.0
    weights = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert set(weights) == {f"{m}.{p}" for m in ("left", "right", "head")
                            for p in ("weight", "bias")}


def test_a_function_may_build_any_module(mymodels):
    model = build_configured_model({"_target_": "mymodels.two_branch", "name": "b", "width": 5},
                                   [1, 8, 8], 10)
    assert type(model).__name__ == "TwoBranch" and not isinstance(model, nn.Sequential)
    assert sys.modules["mymodels"].CALLS[-1] == ("TwoBranch", (1, 8, 8), 10, 5)


def test_the_shipped_models_are_built_by_name_as_before():
    torch.manual_seed(0)
    mine = build_configured_model({"name": "mlp", "hidden": [8], "dropout": 0.0}, (1, 8, 8), 10)
    torch.manual_seed(0)
    theirs = build_model("mlp", (1, 8, 8), 10, hidden=[8], dropout=0.0)
    assert str(mine) == str(theirs)
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(),
                                                 theirs.state_dict().values(), strict=True))


@pytest.mark.parametrize("override, needle", [
    ("+model.depth=3", "model.depth=3 is invalid: unknown key for model tiny (mymodels.tiny "
                       "takes no argument 'depth'); known keys: _target_, activation, name, "
                       "width"),
    ("model._target_=mymodels.needs_depth",
     "model.width=24 is invalid: unknown key for model tiny (mymodels.needs_depth takes no "
     "argument 'width'); known keys: _target_, depth, name"),
    ("model.width=x", None),  # the function's own options are its to check
    ("model._target_=mymodels.two_branch", None),  # **options: any option
    ("model._target_=mymodels.NotAModule", "model._target_='mymodels.NotAModule' is invalid: "
                                           "names a class that is no torch.nn.Module subclass"),
    ("model._target_=mymodels.CALLS", "names a list, not a function"),
    ("model._target_=mymodels.math", "names a module, not a function"),
    ("model._target_=mymodels.nothing", "cannot be imported (AttributeError: mymodels has no "
                                        "attribute 'nothing')"),
    ("model._target_=tiny", "model._target_='tiny' is invalid: expected the dotted path of an "
                            "importable function build(input_shape, num_outputs, **options)"),
    ("model.name=../up", "model.name='../up' is invalid: allowed: 1 to 100 characters"),
    ("~model.name", "model.name=None is invalid: allowed: 1 to 100 characters"),
    ("+model.opt={_target_:builtins.open,file:victim,mode:w}",
     "model.opt={'_target_': 'builtins.open', 'file': 'victim', 'mode': 'w'} is invalid: a "
     "nested _target_ is not allowed"),
])
def test_the_target_and_its_options_are_checked_before_it_is_called(tmp_path, mymodels,
                                                                    override, needle):
    cfg = compose_config("model=tiny", "dataset=digits", "device=cpu", f"data.root={tmp_path}",
                         override, config_dir=mymodels)
    if needle is None:
        validate_config(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    module = sys.modules.get("mymodels")
    assert module is None or module.CALLS == []  # imported at most, never called


def test_a_nested_target_is_refused_unimported(tmp_path, mymodels):
    cfg = compose_config("model=tiny", "dataset=digits", "device=cpu", f"data.root={tmp_path}",
                         "+model.opt={_target_:mymodels.tiny}", config_dir=mymodels)
    with pytest.raises(ConfigError, match="nested _target_ is not allowed"):
        validate_config(cfg)
    assert "mymodels" not in sys.modules


def test_a_required_option_the_config_lacks_is_one_line(tmp_path, mymodels):
    (mymodels / "model" / "deep.yaml").write_text("_target_: mymodels.needs_depth\nname: deep\n")
    cfg = compose_config("model=deep", "dataset=digits", "device=cpu", f"data.root={tmp_path}",
                         config_dir=mymodels)
    with pytest.raises(ConfigError, match=r"^model._target_='mymodels.needs_depth' is invalid: "
                       r"cannot be called as mymodels.needs_depth\(input_shape, num_outputs, "
                       r"\*\*options\) with the options of model deep \(TypeError: missing a "
                       r"required argument: 'depth'\)"):
        validate_config(cfg)


@pytest.mark.parametrize("target", ["this.X", "builtins.open", "os.system"])
def test_a_standard_library_target_is_refused_unimported(tmp_path, mymodels, capsys, target):
    sys.modules.pop("this", None)
    code = run_cli(_args(tmp_path, mymodels, f"model._target_={target}"))
    check_stdlib_target_refused(capsys, code, "model._target_", target, tmp_path / "run")


def test_an_unknown_option_leaves_no_run_folder(tmp_path, mymodels, capsys):
    assert run_cli(_args(tmp_path, mymodels, "+model.depth=3")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert error == ("samt-run: error: model.depth=3 is invalid: unknown key for model tiny "
                     "(mymodels.tiny takes no argument 'depth'); known keys: _target_, "
                     "activation, name, width")
    assert not (tmp_path / "run").exists() and sys.modules["mymodels"].CALLS == []


def test_a_function_that_returns_no_module_is_one_line(tmp_path, mymodels, capsys):
    assert run_cli(_args(tmp_path, mymodels, "model._target_=mymodels.returns_dict")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert error == ("samt-run: error: model._target_='mymodels.returns_dict' is invalid: "
                     "returned a dict, not a torch.nn.Module; expected the dotted path of an "
                     "importable function build(input_shape, num_outputs, **options) that "
                     "returns a torch.nn.Module (or of an nn.Module subclass taking those "
                     "arguments), e.g. mypkg.my_net (docs/extending.md)")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_model_config_error_of_the_function_is_one_line(tmp_path, mymodels, capsys):
    assert run_cli(_args(tmp_path, mymodels, "model._target_=mymodels.refuses")) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert error == "samt-run: error: model.width=24 is invalid: a power of two"
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "metrics.csv").exists()
