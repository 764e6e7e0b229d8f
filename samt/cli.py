"""Command-line entry points; the only Hydra-aware module.

``samt-run``  trains one config (``-m`` sweeps); ``samt-data`` prepares offline datasets.

Exit status of ``samt-run`` (docs/reliability.md): 0 when the run completed, diverged or was
already finished; 2 for a user error (bad config value, data fault, unusable run folder); 130 on
Ctrl-C and 143 on SIGTERM (the run folder keeps its rows and checkpoint: rerun to resume); 1 for
a crash, with Hydra's traceback. A sweep (``-m``) runs every job even when some fail and exits 1
at the end if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from samt.data import DATASETS, DataError, prepare_dataset
from samt.train.checkpoint import FolderLock
from samt.train.records import write_json
from samt.train.runner import (
    STATUS_DIVERGED,
    STATUS_FAILED,
    USER_ERRORS,
    Interrupted,
    Run,
    base_summary,
)
from samt.validation import ConfigError, validate_config, validate_environment



def find_conf_dir() -> Path:
    """The Hydra config folder: ``samt/conf`` in an installed wheel, else the checkout's
    top-level ``conf/`` (editable installs and source trees; the one source of the configs)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"samt's configs are missing: neither {package / 'conf'} nor "
                            f"{package.parent / 'conf'} holds config.yaml (a broken install?)")


CONF_DIR = find_conf_dir()
EXIT_USER_ERROR, EXIT_SWEEP_FAILED = 2, 1
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
HYDRA_FILES = (".hydra", "config.yaml", FolderLock.NAME)

# Jobs of the current sweep that failed (the basic launcher runs them in this process).
SWEEP_FAILURES: list[tuple[Path, str]] = []
# Hydra's files of an existing result folder, read before Hydra rewrites them (single runs).
_HYDRA_SNAPSHOT: dict[Path, bytes] = {}


def _remove_if_not_a_result(run_dir: Path) -> None:
    """Delete a run folder that holds only Hydra's own files (no metrics, no summary)."""
    if run_dir.is_dir() and all(p.name in HYDRA_FILES or p.suffix == ".log"
                                for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def _has_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds results worth keeping (not just a failure record)."""
    if (run_dir / "metrics.csv").exists() or (run_dir / "checkpoint.pt").exists():
        return True
    try:
        status = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["status"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return status != STATUS_FAILED


def resolve_config(cfg: DictConfig | dict) -> dict[str, Any]:
    """The plain, resolved config with ``data.root`` and ``optimizer.meta_init`` made absolute;
    ``ConfigError`` if it cannot be resolved (a missing environment variable, a broken
    interpolation, a ``???`` value)."""
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(f"the config cannot be resolved: {'; '.join(lines)}") from None
    data = plain.get("data")
    if isinstance(data, dict) and isinstance(data.get("root"), str) and data["root"]:
        data["root"] = to_absolute_path(os.path.expanduser(data["root"]))
    opt = plain.get("optimizer")
    if isinstance(opt, dict) and isinstance(opt.get("meta_init"), str) and opt["meta_init"]:
        opt["meta_init"] = to_absolute_path(os.path.expanduser(opt["meta_init"]))
    return plain


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While training, SIGTERM stops the run like Ctrl-C (status ``interrupted``)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _error(message: str) -> None:
    print(f"samt-run: error: {message}", file=sys.stderr)


def run_job(cfg: DictConfig | dict, run_dir: Path, *, multirun: bool = False,
            resume_hint: str | None = None) -> float | None:
    """One ``samt-run`` job exactly as the CLI runs it: resolve, validate, run or resume.

    Returns the final test metric. Single runs exit (``SystemExit``) with 2 on a user error,
    leaving no result files, and 130/143 when interrupted. In a sweep (``multirun``) a failing
    job is reported, recorded in ``SWEEP_FAILURES`` and in its summary.json (status failed),
    and the function returns ``None`` so that the sweep goes on. ``resume_hint`` is the override
    that points a rerun at this folder (default ``hydra.run.dir=<run_dir>``).
    """
    run_dir = Path(run_dir)
    plain: dict[str, Any] | None = None
    try:
        with terminate_as_interrupt():
            plain = resolve_config(cfg)
            validate_config(plain)
            validate_environment(plain)
            run = Run(plain, run_dir, log=lambda message: print(f"samt-run: {message}",
                                                                file=sys.stderr))
            summary = run.execute()
    except USER_ERRORS as exc:
        if not multirun:
            _remove_if_not_a_result(run_dir)
            _restore_hydra_files(run_dir.absolute())
            _error(str(exc))
            sys.exit(EXIT_USER_ERROR)
        _sweep_job_failed(run_dir, cfg, plain, f"{type(exc).__name__}: {exc}", show=str(exc))
        return None
    except KeyboardInterrupt as exc:
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        _error(f"interrupted ({name}); {run_dir} keeps the epochs finished so far and their "
               "checkpoint. To continue, rerun the same command with "
               + (resume_hint or f"hydra.run.dir={run_dir}"))
        sys.exit(EXIT_SIGNAL.get(name, 130))
    except Exception as exc:
        if not multirun:
            raise  # a crash: Hydra prints the traceback; summary.json says failed
        traceback.print_exc()
        _sweep_job_failed(run_dir, cfg, plain, f"{type(exc).__name__}: {exc}",
                          show=f"crashed: {type(exc).__name__}: {exc}")
        return None
    _report_outcome(run, run_dir)
    final = summary.get("final") or {}
    return final.get("test_metric")


def _report_outcome(run: Run, run_dir: Path) -> None:
    summary = run.summary
    if run.outcome == "done":
        print(f"samt-run: {run_dir} already holds a finished run of this config "
              f"(status {summary.get('status')}, {summary.get('epochs_completed')} epochs); "
              "nothing to do (resume=false runs it again)")
    elif summary.get("status") == STATUS_DIVERGED:
        print(f"samt-run: warning: run diverged: {summary.get('error')}; {run_dir} keeps the "
              f"{summary.get('epochs_completed')} finished epochs", file=sys.stderr)


def _sweep_job_failed(run_dir: Path, cfg: DictConfig | dict, plain: dict | None, error: str,
                      show: str) -> None:
    """Record a failed sweep job: a summary.json with status failed unless the folder already
    holds results (those are never overwritten), the failure list, a message."""
    _error(f"sweep job in {run_dir} failed: {show}")
    if run_dir.is_dir() and not _has_results(run_dir):
        if plain is None and isinstance(cfg, DictConfig):  # best effort: unresolved values
            plain = OmegaConf.to_container(cfg, resolve=False)
        summary = base_summary(plain or {})
        summary.update(status=STATUS_FAILED, error=error)
        write_json(run_dir / "summary.json", summary)
        if plain is not None:
            with contextlib.suppress(Exception):
                OmegaConf.save(OmegaConf.create(plain), run_dir / "config.yaml")
    SWEEP_FAILURES.append((run_dir, error))


def _restore_hydra_files(run_dir: Path) -> None:
    """Undo Hydra's rewrite of ``.hydra/`` in a result folder whose run was refused."""
    for path, data in _HYDRA_SNAPSHOT.items():
        if path.parent.parent == run_dir:
            with contextlib.suppress(OSError):
                path.write_bytes(data)
    _HYDRA_SNAPSHOT.clear()


class RunCallbacks(Callback):
    """Registered in conf/config.yaml.

    Single run: keeps a copy of an existing result folder's ``.hydra/*.yaml`` (Hydra rewrites
    them before the job starts), put back when the run is refused (e.g. another config).
    Sweep: a sweep with a failed job exits with status 1 after all its jobs ran.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _HYDRA_SNAPSHOT.clear()
        with contextlib.suppress(Exception):
            run_dir = Path(to_absolute_path(str(config.hydra.run.dir)))
            hydra_dir = run_dir / str(config.hydra.output_subdir)
            if _has_results(run_dir) and hydra_dir.is_dir():
                _HYDRA_SNAPSHOT.update({p: p.read_bytes() for p in hydra_dir.glob("*.yaml")})

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SWEEP_FAILURES.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not SWEEP_FAILURES:
            return
        lines = [f"  {path}: {error.splitlines()[0]}" for path, error in SWEEP_FAILURES]
        print(f"samt-run: {len(SWEEP_FAILURES)} sweep job(s) failed:\n" + "\n".join(lines),
              file=sys.stderr)
        SWEEP_FAILURES.clear()
        sys.exit(EXIT_SWEEP_FAILED)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_run(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    hint = (f"hydra.sweep.dir={to_absolute_path(str(hydra_cfg.sweep.dir))}" if multirun
            else f"hydra.run.dir={run_dir}")
    return run_job(cfg, run_dir, multirun=multirun, resume_hint=hint)


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
