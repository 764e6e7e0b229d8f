"""Helpers shared by the tests: composing configs, fast command lines, reading run folders,
small SAMT models and batches. Import them by name (``from helpers import digits_config``)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from torch import nn

from samt.cli import resolve_config

WALL = ("epoch_time_s", "wall_time_s")  # metrics.csv columns that differ between equal runs
F64 = torch.float64


def compose_config(*overrides: str, config_dir: Path | None = None,
                   resolve: bool = True) -> dict:
    """``conf/`` composed with ``overrides`` (and ``config_dir`` on the search path), resolved as
    ``samt-run`` resolves it (``resolve_config``); with ``resolve=False`` the plain container
    with its interpolations as written."""
    extra = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*extra, *overrides])
    if not resolve:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=False)
    return resolve_config(cfg)


def digits_config(root: Path, *overrides: str) -> dict:
    """A resolved digits config on the CPU without progress bars (``overrides`` win)."""
    return compose_config("dataset=digits", "device=cpu", "progress=false",
                          f"data.root={root}", *overrides)


def digits_args(root: Path, *extra: str) -> list[str]:
    """A fast ``samt-run`` command line: digits, Adam, an MLP of 8 units, one epoch, CPU
    (``extra`` appended: later keys win)."""
    return ["dataset=digits", "optimizer=adam", "model.hidden=[8]", "epochs=1", "device=cpu",
            "progress=false", f"data.root={root}", *extra]


def error_lines(text: str) -> list[str]:
    """The ``samt-run: error: ...`` lines of ``text`` (stderr)."""
    return [line for line in text.splitlines() if line.startswith("samt-run: error:")]


def read_rows(run_dir: Path, wall: bool = False) -> list[dict]:
    """The rows of ``run_dir/metrics.csv`` as the CSV holds them (strings), without the
    wall-time columns unless ``wall``."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if wall or k not in WALL}
                for r in csv.DictReader(fh)]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def tanh_mlp(*widths: int, dtype: torch.dtype = F64, seed: int = 0) -> nn.Sequential:
    """``Linear`` layers of ``widths`` (inputs first) with ``Tanh`` between, seeded."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers).to(dtype)


def random_batches(n: int, size: int, features: int, classes: int = 3,
                   dtype: torch.dtype = F64, seed: int = 1) -> list[tuple[torch.Tensor,
                                                                          torch.Tensor]]:
    """``n`` batches of ``size`` standard-normal inputs and random class targets."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, features, generator=g, dtype=dtype),
             torch.randint(0, classes, (size,), generator=g)) for _ in range(n)]


def check_stdlib_target_refused(capsys: Any, code: int, key: str, target: str,
                                run_dir: Path) -> None:
    """A ``_target_`` in Python's standard library was refused before anything was imported:
    exit 2, one error line naming ``key``, ``this`` never imported (it prints the Zen of Python
    when it is), no run folder."""
    assert code == 2
    out = capsys.readouterr()
    (error,) = error_lines(out.err)
    assert error.startswith(f"samt-run: error: {key}='{target}' is invalid: names a module of "
                            "Python's standard library") and "not imported" in error
    assert "Beautiful is better than ugly" not in out.out + out.err
    assert "this" not in sys.modules
    assert not run_dir.exists()
