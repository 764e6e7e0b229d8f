"""Shared test settings: offline, CPU, quiet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"


@pytest.fixture
def shared_data_root() -> Path:
    """The real offline datasets, from ``SAMT_DATA_ROOT``; skipped (with the reason) when unset."""
    root = os.environ.get("SAMT_DATA_ROOT")
    if not root:
        pytest.skip("SAMT_DATA_ROOT not set: point it at a folder with MNIST/FashionMNIST/UCI")
    return Path(root)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Tiny models run fastest (and never oversubscribe the CPU) on one thread."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(args: list[str]) -> int | None:
    """``samt-run ARGS`` in this process; the exit status if it exited, else None."""
    import sys

    from samt.cli import run_main

    saved = sys.argv
    sys.argv = ["samt-run", *args]
    try:
        run_main()
    except SystemExit as exc:
        return exc.code
    finally:
        sys.argv = saved
    return None
