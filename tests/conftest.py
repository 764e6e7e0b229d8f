"""Shared test settings: offline, CPU, quiet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"


def configured_data_root() -> Path:
    """The data root the tool itself would use: ``$SAMT_DATA_ROOT``, else ``./data``."""
    return Path(os.environ.get("SAMT_DATA_ROOT") or "data").expanduser().resolve()


def require_dataset(name: str) -> Path:
    """The data root holding dataset ``name``; the test is skipped, with the reason, when the
    dataset is absent there (none of its files exist). Files that are present but incomplete or
    wrong are not skipped: the test then runs and fails, as it should."""
    from samt.data.registry import get_spec

    root = configured_data_root()
    spec = get_spec(name)
    folder = root / spec.folder
    if not any((folder / f).exists() for f in spec.files):
        source = ("$SAMT_DATA_ROOT" if os.environ.get("SAMT_DATA_ROOT")
                  else "the default data root ./data ($SAMT_DATA_ROOT unset)")
        remedy = spec.hints[0] if spec.hints else f"supply it under {folder}"
        pytest.skip(f"real-data test: dataset {name} is absent from {folder} ({source}); "
                    f"to supply it: {remedy}; or set SAMT_DATA_ROOT to a data root that "
                    "holds it")
    return root


@pytest.fixture
def shared_data_root() -> Path:
    """The real MNIST data root (``$SAMT_DATA_ROOT``, else ./data); skipped when MNIST is absent."""
    return require_dataset("mnist")


@pytest.fixture(autouse=True)
def _restore_logging():
    """In-process ``samt-run`` calls let Hydra configure the root logger (a console handler on
    the test's captured, later closed, stdout; the job's file handler): undo that after each
    test, so that the next test's log calls do not write into closed streams."""
    import logging

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler).__name__ != "LogCaptureHandler":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


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
