"""Command-line entry points; the only Hydra-aware module.

``samt-run``  trains one config (``-m`` sweeps); ``samt-data`` prepares offline datasets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from samt.data import DATASETS, DataError, prepare_dataset
from samt.models import ModelConfigError
from samt.optim import SAMTModelError
from samt.train import run_training
from samt.validation import ConfigError, validate_config

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
USER_ERRORS = (ConfigError, DataError, ModelConfigError, SAMTModelError)


def _remove_if_not_a_result(run_dir: Path) -> None:
    """Delete a run folder that holds only Hydra's own files (no metrics, no summary)."""
    if run_dir.is_dir() and all(p.name in (".hydra", "config.yaml") or p.suffix == ".log"
                                for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_run(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        plain["data"]["root"] = to_absolute_path(str(plain["data"]["root"]))
        validate_config(plain)
        OmegaConf.save(plain, run_dir / "config.yaml")
        summary = run_training(plain, run_dir)
    except USER_ERRORS as exc:
        _remove_if_not_a_result(run_dir)
        print(f"samt-run: error: {exc}", file=sys.stderr)
        sys.exit(2)
    final = summary.get("final") or {}
    return final.get("test_metric")


def run_main() -> None:
    """``samt-run``: Hydra entry point (``samt-run --help`` lists the config groups)."""
    _hydra_run()


def data_main(argv: list[str] | None = None) -> None:
    """``samt-data NAME... [--root DIR]``: put datasets where the runner looks for them."""
    parser = argparse.ArgumentParser(prog="samt-data", description=data_main.__doc__)
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS), metavar="NAME",
                        help=f"datasets to prepare: {', '.join(sorted(DATASETS))}")
    parser.add_argument("--root", default=None,
                        help="data root (default: $SAMT_DATA_ROOT, else ./data)")
    args = parser.parse_args(argv)
    root = Path(args.root or os.environ.get("SAMT_DATA_ROOT") or "data").resolve()
    for name in args.names:
        try:
            where = prepare_dataset(name, root)
        except DataError as exc:
            print(f"samt-data: error: {exc}", file=sys.stderr)
            sys.exit(2)
        print(f"{name}: ready in {where}")
