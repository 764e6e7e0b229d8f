"""Layering: ``samt.optim`` is a library of optimizers usable in any training loop.

Every module in ``samt/optim`` imports only torch, the standard library and ``samt.optim`` itself,
and names no run-folder file (``checkpoint.pt``, ``metrics.csv``, ...) and no key of the Hydra
run config (``optimizer.meta_init``, ``_target_``, a ``cfg`` dict): reading run folders and
configs is the runner's side (``samt.train.folder``). The checks parse the sources (``ast``,
``tokenize``), so they also see imports inside functions and ``TYPE_CHECKING`` blocks, and
names in strings, docstrings and comments.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, REPO

from samt import run_folder
from samt.schema import CONFIG_KEYS

OPTIM = REPO / "samt" / "optim"
ALLOWED_PACKAGES = {"torch"}  # besides the standard library and samt.optim
# The files of a run folder (docs/outputs.md) and the job log Hydra writes there.
RUN_FOLDER_FILES = (run_folder.METRICS, run_folder.SUMMARY, run_folder.CONFIG,
                    run_folder.CHECKPOINT, run_folder.SAMT_META, run_folder.LEARNING_CURVES,
                    run_folder.SAMT_STEPS, run_folder.FolderLock.NAME, "cli.log", ".hydra")
# Hydra's own keys (instantiate) and the runner's names for a config or a run folder.
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
CONFIG_NAMES = {"cfg", "opt_cfg", "run_dir", "run_folder"}


def _config_sections() -> list[str]:
    """The groups and top-level keys of the run config (``conf/config.yaml``'s groups, the
    schema's top-level keys), and ``hydra``."""
    conf = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    groups = [next(iter(entry)).replace("override ", "").split("/")[0]
              for entry in conf["defaults"] if isinstance(entry, dict)]
    return sorted({*groups, *conf, *CONFIG_KEYS, "hydra"} - {"defaults"})


# ``optimizer.meta_init``, ``data.root``, ``hydra.run.dir``: a section, a dot and a key (not a
# method call such as ``model.parameters()``, and not an attribute such as ``self.model.x``).
CONFIG_KEY = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, _config_sections()))
                        + r")\.[A-Za-z_]\w*\b(?!\()")


def _modules() -> list[Path]:
    return sorted(OPTIM.rglob("*.py"))


def _package(module: Path) -> str:
    """The package a module of ``samt/optim`` (or of a subpackage) belongs to."""
    return ".".join(["samt", "optim", *module.relative_to(OPTIM).parent.parts])


def import_problems(source: str, package: str = "samt.optim") -> list[str]:
    """The imports in ``source`` (a module of ``package``) of anything but torch, the standard
    library and ``samt.optim``: statements anywhere, ``importlib.import_module`` with a literal
    name, and string constants naming a ``samt`` module (lazy-import tables)."""
    problems = []

    def check(name: str, line: int) -> None:
        top = name.split(".")[0]
        if name == "samt.optim" or name.startswith("samt.optim."):
            return
        if top in sys.stdlib_module_names or top in ALLOWED_PACKAGES:
            return
        problems.append(f"line {line}: imports {name}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside samt.optim (or above it, which is not allowed)
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                check(f"{base}.{node.module}" if node.module else base, node.lineno)
            else:
                check(node.module or "", node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            check(node.args[0].value, node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and re.fullmatch(r"samt(\.\w+)+", node.value)):
            check(node.value, node.lineno)
    return problems


def naming_problems(source: str) -> list[str]:
    """Run-folder file names and run-config keys in ``source``'s strings, docstrings and
    comments, and code names for a config or run folder (``cfg``, ``opt_cfg``, ``run_dir``)."""
    problems = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        text = token.string

        def line(at: int, text: str = text, first: int = token.start[0]) -> int:
            return first + text.count("\n", 0, at)

        problems += [f"line {line(text.index(name))}: names the run-folder file {name}"
                     for name in RUN_FOLDER_FILES if name in text]
        problems += [f"line {line(text.index(key))}: names the Hydra key {key}"
                     for key in HYDRA_KEYS if key in text]
        problems += [f"line {line(match.start())}: names the config key {match.group()}"
                     for match in CONFIG_KEY.finditer(text)]
    for node in ast.walk(ast.parse(source)):
        name = (node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg)
                else node.attr if isinstance(node, ast.Attribute) else None)
        if name in CONFIG_NAMES:
            problems.append(f"line {node.lineno}: code name {name}")
    return problems


def test_the_optim_package_is_where_it_is_expected():
    assert {p.name for p in _modules()} >= {"__init__.py", "samt.py", "baselines.py"}


@pytest.mark.parametrize("module", _modules(), ids=lambda p: p.name)
def test_optim_imports_only_torch_the_standard_library_and_itself(module):
    assert import_problems(module.read_text(encoding="utf-8"), _package(module)) == [], module


@pytest.mark.parametrize("module", _modules(), ids=lambda p: p.name)
def test_optim_names_no_run_folder_file_and_no_config_key(module):
    assert naming_problems(module.read_text(encoding="utf-8")) == [], module


# What samt/optim/samt.py's read_meta did before the run folder took it over: the checks must
# catch each of these.
OLD_READ_META = '''
import yaml
from samt.train.checkpoint import CHECKPOINT

_LAZY = {"RunFolder": "samt.train.folder"}


def read_meta(source):
    """From a ``save_meta`` file, a ``samt-run`` ``checkpoint.pt`` or a run folder (its
    ``checkpoint.pt``, else ``samt_meta.pt``)."""
    where = f"optimizer.meta_init={str(source)!r}"
    from omegaconf import OmegaConf
    importlib.import_module("samt.train")
    path = Path(source)
    if path.is_dir():
        found = [path / n for n in ("checkpoint.pt", "samt_meta.pt") if (path / n).is_file()]
    opt_cfg = state["config"].get("optimizer") or {}  # the run's optimizer config
    if opt_cfg.get("name") != "samt":
        raise MetaInitError(f"{where}: not of SAMT; build it with _target_")
    return self.model.parameters(), model.parameters(), cfg
'''


def test_the_checks_catch_the_old_run_folder_reading():
    imports = import_problems(OLD_READ_META)
    assert {p.split(": ", 1)[1] for p in imports} == {
        "imports yaml", "imports samt.train.checkpoint", "imports samt.train.folder",
        "imports omegaconf", "imports samt.train"}
    names = "\n".join(naming_problems(OLD_READ_META))
    for expected in ("run-folder file checkpoint.pt", "run-folder file samt_meta.pt",
                     "config key optimizer.meta_init", "Hydra key _target_", "code name opt_cfg",
                     "code name cfg"):
        assert expected in names, expected
    assert "model.parameters" not in names  # a method call is no config key
