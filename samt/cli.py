"""Command-line entry points; the only Hydra-aware module.

``samt-run``  trains one config (``-m`` sweeps); ``samt-data`` prepares offline datasets.

Exit status of ``samt-run`` (docs/reliability.md): 0 when the run completed (or reached its
``stop_at_target``), diverged or was already finished; 2 for a user error (bad config value,
data fault, unusable run folder); 130 on Ctrl-C and 143 on SIGTERM (the run folder keeps its
rows and checkpoint: rerun to resume); 1 for a crash, with the traceback. A sweep (``-m``) runs
every job even when some fail and exits 1 at the end if any failed. Each run (and each sweep)
ends with a short block on stderr saying how it ended (docs/outputs.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from samt.config_dirs import check_command_line, check_config_dirs
from samt.run_folder import (
    CHECKPOINT,
    METRICS,
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_REACHED_TARGET,
    SUMMARY,
    FolderState,
    RunFolderError,
    prepare_folder,
)
from samt.validation import (
    ConfigError,
    check_name_part,
    validate_config,
    validate_environment,
)

if TYPE_CHECKING:
    from samt.train.runner import Run

# torch, torchvision and the runner are imported where a run starts, not here: `samt-run
# --help` and a rejected config answer without them (docs/performance.md, start-up time).


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user error (exit 2, one line) rather than a crash."""
    if isinstance(exc, (ConfigError, RunFolderError)):
        return True
    from samt.train.runner import USER_ERRORS

    return isinstance(exc, USER_ERRORS)


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
EXIT_USER_ERROR, EXIT_SWEEP_FAILED, EXIT_CRASH = 2, 1, 1
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
# Keys whose values become part of a sweep job's folder name (hydra.sweep.subdir).
FOLDER_NAME_KEYS = ("optimizer.label", "dataset.name", "model.name", "seed")


@dataclass
class JobOutcome:
    """How one job of a sweep ended (the basic launcher runs jobs in this process)."""

    folder: Path
    status: str
    error: str | None = None
    done_before: bool = False  # the folder already held the finished run: nothing was done


# Jobs of the current sweep, in order; the sweep's start (time.monotonic()).
SWEEP_JOBS: list[JobOutcome] = []
_SWEEP_START: list[float] = []
# What each run folder held before this process wrote into it (single runs; on_run_start).
_FOLDER_STATES: dict[Path, FolderState] = {}
# The jobs of the current sweep that ``validate_sweep`` composed and validated (the job-list
# sweeper does not compose them a second time).
VALIDATED_JOBS: list[list[str]] = []


def _abs(path: str | Path) -> Path:
    """``path`` made absolute against the working directory, as Hydra makes its output_dir."""
    return Path(os.path.abspath(str(path)))


def _has_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds results worth keeping (not just a failure record)."""
    if (run_dir / METRICS).exists() or (run_dir / CHECKPOINT).exists():
        return True
    try:
        status = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))["status"]
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

    from samt.train.runner import Interrupted

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _error(message: str) -> None:
    print(f"samt-run: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"samt-run: warning: {message}", file=sys.stderr)


def run_job(cfg: DictConfig | dict, run_dir: Path, *, multirun: bool = False,
            resume_hint: str | None = None, sweep_dir: Path | None = None) -> float | None:
    """One ``samt-run`` job exactly as the CLI runs it: resolve, validate, run or resume.

    Returns ``optimized_metric`` (``optimized_value``: by default the final validation metric)
    and prints how the run ended (``report_run``). Single runs
    exit (``SystemExit``) with 2 on a user error, removing only what this process added to the
    folder (``FolderState``: recorded by ``RunCallbacks.on_run_start``, else here), with 1 on a
    crash (traceback, then the report) and 130/143 when interrupted. In a sweep (``multirun``) a
    failing job is reported, recorded in ``SWEEP_JOBS`` and in its summary.json (status failed;
    never outside ``sweep_dir``), and the function returns ``None`` so that the sweep goes on.
    ``resume_hint`` is the override that points a rerun at this folder (default
    ``hydra.run.dir=<run_dir>``).
    """
    from samt.train.runner import USER_ERRORS, Interrupted, Run, base_summary

    run_dir = Path(run_dir)
    started = time.monotonic()
    state = None
    if not multirun:
        state = _FOLDER_STATES.pop(_abs(run_dir), None) or FolderState.capture(run_dir)
    plain: dict[str, Any] | None = None
    run: Run | None = None
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
            if state is not None:
                state.undo()
            _error(str(exc))
            sys.exit(EXIT_USER_ERROR)
        _sweep_job_failed(run_dir, cfg, plain, f"{type(exc).__name__}: {exc}", show=str(exc),
                          sweep_dir=sweep_dir)
        return None
    except KeyboardInterrupt as exc:
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        _error(f"interrupted ({name}); {run_dir} keeps the epochs finished so far and their "
               "checkpoint. To continue, rerun the same command with "
               + (resume_hint or f"hydra.run.dir={run_dir}"))
        sys.exit(EXIT_SIGNAL.get(name, 130))
    except Exception as exc:
        traceback.print_exc()
        log = _log_traceback(run_dir, exc)
        if not multirun:
            summary = run.summary if run is not None else base_summary(plain or {})
            summary = {**summary, "status": STATUS_FAILED,
                       "error": f"{type(exc).__name__}: {exc}"}
            print(report_run(summary, run_dir, time.monotonic() - started, log=log),
                  file=sys.stderr)
            sys.exit(EXIT_CRASH)
        _sweep_job_failed(run_dir, cfg, plain, f"{type(exc).__name__}: {exc}",
                          show=f"crashed: {type(exc).__name__}: {exc}", sweep_dir=sweep_dir)
        return None
    _report_outcome(run, run_dir, time.monotonic() - started, multirun)
    value, warning = optimized_value(summary, plain.get("optimized_metric", "val_metric"))
    if warning and multirun and _sweeper_reads_values():
        _warn(warning)
    return value


# optimized_metric (samt.schema.OPTIMIZED_METRICS) -> (the summary.json key it reads, the
# test-set key read instead when the run has no validation split)
OPTIMIZED_METRICS = {"val_metric": ("final.val_metric", "final.test_metric"),
                     "best_val_metric": ("best_val_metric", "best_test_metric"),
                     "test_metric": ("final.test_metric", None)}
# Sweepers that run a fixed list of jobs and ignore the values the jobs return.
_FIXED_SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                   "hydra_plugins.samt_job_list.job_list_sweeper.JobListSweeper")


def optimized_value(summary: dict, key: str) -> tuple[float | None, str | None]:
    """The number a run returns to Hydra's sweeper (what a tuner such as Optuna optimizes):
    ``optimized_metric`` read from ``summary`` (``OPTIMIZED_METRICS``), and a warning when a
    validation metric was asked for but the run has no validation split (the test metric is
    returned then). None when the run has no such number (it failed or diverged early)."""
    def read(path: str) -> Any:
        node: Any = summary
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return None if isinstance(node, bool) or not isinstance(node, (int, float)) \
            else float(node)

    path, fallback = OPTIMIZED_METRICS[key]
    if fallback is None or summary.get("val_size"):
        return read(path), None
    return read(fallback), (
        f"optimized_metric={key}, but the run has no validation split (data.val_fraction=0): "
        f"the value returned to the sweeper is the test metric ({fallback}), so a tuner would "
        "tune on the test set; set data.val_fraction (e.g. 0.1) to tune on validation")


def _sweeper_reads_values() -> bool:
    """Whether this sweep's sweeper uses the values its jobs return (Optuna, Nevergrad, Ax)."""
    with contextlib.suppress(Exception):
        return str(HydraConfig.get().sweeper._target_) not in _FIXED_SWEEPERS
    return False


def _log_traceback(run_dir: Path, exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` into Hydra's job log in ``run_dir`` (only there, not on
    the console); the log's path, or None without one (``run_job`` called outside Hydra)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and \
                Path(handler.baseFilename).parent == _abs(run_dir):
            record = logging.LogRecord("samt", logging.ERROR, __file__, 0, "run failed: %s",
                                       (f"{type(exc).__name__}: {exc}",),
                                       (type(exc), exc, exc.__traceback__))
            with contextlib.suppress(Exception):
                handler.handle(record)
                handler.flush()
                return Path(handler.baseFilename)
    return None


def _metric_text(summary: dict) -> str:
    """``test accuracy: 93.46 % final, 93.88 % best (epoch 2)`` (RMSE for regression)."""
    metric = summary.get("metric")
    name = {"accuracy": "test accuracy", "rmse": "test RMSE"}.get(metric, "test metric")

    def show(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "n/a"
        return f"{value:.2f} %" if metric == "accuracy" else f"{value:.4g}"

    if not summary.get("epochs_completed"):
        return f"{name}: none (no epoch finished)"
    final = (summary.get("final") or {}).get("test_metric")
    return (f"{name}: {show(final)} final, {show(summary.get('best_test_metric'))} best "
            f"(epoch {summary.get('best_epoch')})")


def _target_text(summary: dict) -> str:
    """``val accuracy 91.3 >= 90 after epoch 3: 0.52 s of training, 66 parameter updates``."""
    hit = summary.get("reached_target") or {}
    value, seconds = hit.get("val_metric"), hit.get("wall_time_s")
    if not isinstance(value, int | float) or not isinstance(seconds, int | float):
        return "stopped at stop_at_target"
    sign = ">=" if summary.get("higher_is_better", True) else "<="
    return (f"val {summary.get('metric') or 'metric'} {value:.4g} {sign} "
            f"{summary.get('stop_at_target')} after epoch {hit.get('epoch')}: {seconds:.2f} s "
            f"of training, {hit.get('param_updates')} parameter updates")


def report_run(summary: dict, run_dir: Path, elapsed: float, *, done_before: bool = False,
               log: Path | None = None) -> str:
    """The block printed when a run ends: status (with the error, one line), test metric
    (final and best), epochs, wall time of this call (and the training time recorded in
    summary.json) and the run folder (for a failed run: where its log is)."""
    status = summary.get("status")
    if done_before:
        head = f"run already finished ({status}): nothing to do"
    elif status in (STATUS_DIVERGED, STATUS_FAILED):
        head = f"run {status}: {(str(summary.get('error') or '').splitlines() or [''])[0]}"
    elif status == STATUS_REACHED_TARGET:
        head = f"run {status}: {_target_text(summary)}"
    else:
        head = f"run {status}"
    training = summary.get("wall_time_s")
    training_text = (f" (training {training:.1f} s)"
                     if isinstance(training, (int, float)) and not done_before else "")
    where = f"  run folder: {_abs(run_dir)}"
    if status == STATUS_FAILED:
        where += (f" (summary.json; the traceback is in {log.name})" if log is not None
                  else " (summary.json)")
    return "\n".join([
        f"samt-run: {head}",
        f"  {_metric_text(summary)}",
        f"  epochs: {summary.get('epochs_completed') or 0} of {summary.get('epochs')}; "
        f"wall time {elapsed:.1f} s{training_text}",
        where])


def _report_outcome(run: Run, run_dir: Path, elapsed: float, multirun: bool) -> None:
    """Print how a run that returned ended; in a sweep, record it for the sweep's report."""
    summary = run.summary
    done = run.outcome == "done"
    if done:
        print(f"samt-run: {run_dir} already holds a finished run of this config "
              f"(status {summary.get('status')}, {summary.get('epochs_completed')} epochs); "
              "nothing to do (resume=false runs it again)")
    elif summary.get("status") == STATUS_DIVERGED:
        print(f"samt-run: warning: run diverged: {summary.get('error')}; {run_dir} keeps the "
              f"{summary.get('epochs_completed')} finished epochs", file=sys.stderr)
    if multirun:
        SWEEP_JOBS.append(JobOutcome(_abs(run_dir), str(summary.get("status")),
                                     summary.get("error"), done_before=done))
    else:
        print(report_run(summary, run_dir, elapsed, done_before=done), file=sys.stderr)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder`` (both resolved: symlinks and '..' followed)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _sweep_job_failed(run_dir: Path, cfg: DictConfig | dict, plain: dict | None, error: str,
                      show: str, sweep_dir: Path | None = None) -> None:
    """Record a failed sweep job: a summary.json with status failed unless the folder already
    holds results (those are never overwritten) or lies outside ``sweep_dir``; the job list;
    a message."""
    _error(f"sweep job in {run_dir} failed: {show}")
    if run_dir.is_dir() and not _has_results(run_dir) and (
            sweep_dir is None or _inside(run_dir, sweep_dir)):
        if plain is None and isinstance(cfg, DictConfig):  # best effort: unresolved values
            plain = OmegaConf.to_container(cfg, resolve=False)
        from samt.train.folder import RunFolder, Summary

        folder, summary = RunFolder(run_dir), Summary.start(plain or {})
        summary.stop(STATUS_FAILED, error)
        folder.write_summary(summary)
        if plain is not None:
            with contextlib.suppress(Exception):
                folder.write_config(plain)
    SWEEP_JOBS.append(JobOutcome(_abs(run_dir), STATUS_FAILED, error))


def _task_config(config: DictConfig) -> DictConfig:
    """The job's config as the task function receives it: Hydra's node removed."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _resolve_early(config: DictConfig) -> dict[str, Any] | None:
    """The job config resolved as the job will resolve it, before Hydra writes anything; None
    when it cannot be resolved yet (it may read ``${hydra:runtime.output_dir}``, set only when
    the job starts): the job reports it then if it still fails."""
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(config)  # for ${hydra:...} interpolations, as in the job itself
    try:
        return resolve_config(_task_config(config))
    except ConfigError:
        return None
    finally:
        hydra_config.cfg = previous


def _validate_early(config: DictConfig) -> None:
    """Resolve and validate the job config before Hydra writes anything (``USER_ERRORS``)."""
    plain = _resolve_early(config)
    if plain is not None:
        validate_config(plain)
        validate_environment(plain)


def _override_values(override: Any) -> list[Any]:
    """The plain values an override sets (each value of a sweep); interpolations left out."""
    from hydra.core.override_parser.types import QuotedString

    values = list(override.sweep_iterator()) if override.is_sweep_override() \
        else [override.value()]
    values = [v.text if isinstance(v, QuotedString) else v for v in values]
    return [v for v in values if not (isinstance(v, str) and "${" in v)]


def _check_sweep_folder_names(config: DictConfig) -> None:
    """``ConfigError`` for a value of ``FOLDER_NAME_KEYS``, in the sweep's arguments or its base
    config, that would put a job folder outside the sweep folder (before any folder exists)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values: list[tuple[str, Any]] = []
    with contextlib.suppress(Exception):
        values.append(("optimizer.label", OmegaConf.select(config, "optimizer.label")))
    with contextlib.suppress(Exception):
        parser = OverridesParser.create()
        for override in parser.parse_overrides(list(config.hydra.overrides.task)):
            if override.key_or_group in FOLDER_NAME_KEYS and not override.is_delete():
                values += [(override.key_or_group, v) for v in _override_values(override)]
    for key, value in values:
        if value is None:
            continue
        if key == "optimizer.label":
            check_name_part(key, value)
        elif any(part in str(value) for part in ("/", "\\", "..")):
            raise ConfigError(f"{key}={value!r} is invalid: it becomes part of the job folder's "
                              "name, so it must not hold '/', '\\' or '..'")


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, as the sweep's sweeper will compose them (Hydra's basic sweeper:
    the product of the comma-separated values; ``job_list``: the file's jobs, then the command
    line's); None for a sweeper that chooses its jobs as it goes (Optuna) or a job list that
    cannot be read (the sweeper reports it)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.samt_job_list.job_list_sweeper import read_jobs

    target = str(OmegaConf.select(config, "hydra.sweeper._target_") or "")
    arguments = list(config.hydra.overrides.task)
    if target == _FIXED_SWEEPERS[0]:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        params = config.hydra.sweeper.get("params") or {}
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()),
                                            *arguments])
        return [job for batch in BasicSweeper.split_arguments(overrides, None)
                for job in batch]
    if target == _FIXED_SWEEPERS[1] and config.hydra.sweeper.get("jobs"):
        try:
            return [[*job, *arguments] for job in read_jobs(str(config.hydra.sweeper.jobs))]
        except (OSError, ValueError, OmegaConfBaseException):
            return None
    return None


# Launchers whose jobs run on this machine (SLURM's run elsewhere, with their own devices).
_LOCAL_LAUNCHERS = (".BasicLauncher", ".JoblibLauncher", "submitit_launcher.LocalLauncher")


def validate_sweep(config: DictConfig) -> int:
    """Compose and validate every job of the sweep (``sweep_jobs``) before the first starts: a
    user error in any job is ``ConfigError`` naming the job (Hydra's job number and its
    overrides). The checks of this machine (``validate_environment``: a CUDA device, an
    optimizer's trial step) only when the launcher runs the jobs here. Returns the number of
    jobs checked."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    jobs = sweep_jobs(config)
    VALIDATED_JOBS[:] = []
    if not jobs:
        return 0
    loader = GlobalHydra.instance().config_loader()
    plains: list[tuple[str, dict[str, Any]]] = []

    @contextlib.contextmanager
    def naming(where: str) -> Iterator[None]:
        try:
            yield
        except HydraException as exc:
            raise ConfigError(f"{where}: {' '.join(str(exc).split())}") from None
        except Exception as exc:
            if not is_user_error(exc):
                raise
            raise ConfigError(f"{where}: {exc}") from None

    for num, job in enumerate(jobs):  # every config first (fast), then the environment
        where = f"sweep job #{num} ({' '.join(job)})"
        with naming(where):
            job_config = loader.load_sweep_config(config, list(job))
            with open_dict(job_config):
                job_config.hydra.job.num = num
                job_config.hydra.runtime.merge_with(config.hydra.runtime)
            plain = _resolve_early(job_config)
            if plain is not None:
                validate_config(plain)
                plains.append((where, plain))
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if launcher.endswith(_LOCAL_LAUNCHERS):  # jobs run on this machine: check it for them
        for where, plain in plains:
            with naming(where):
                validate_environment(plain)
    VALIDATED_JOBS[:] = [list(job) for job in jobs]
    return len(jobs)


def _fail_early(exc: BaseException) -> None:
    """A user error found before Hydra wrote anything: one line, exit 2."""
    _error(str(exc))
    sys.exit(EXIT_USER_ERROR)


def _sweep_report(config: DictConfig) -> tuple[str, int]:
    """The block printed at the end of a sweep and the number of failed jobs in this process."""
    sweep_dir = _abs(str(config.hydra.sweep.dir))
    jobs = list(SWEEP_JOBS)
    source = ""
    if not jobs:  # jobs ran in other processes (joblib, SLURM): read their summaries
        source = " (read from the jobs' summary.json)"
        for path in sorted(sweep_dir.glob("*/summary.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                summary = json.loads(path.read_text(encoding="utf-8"))
                jobs.append(JobOutcome(path.parent, str(summary["status"]), summary.get("error")))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    done_before = sum(job.done_before for job in jobs)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    elapsed = time.monotonic() - _SWEEP_START[0] if _SWEEP_START else 0.0
    lines = [f"samt-run: sweep ended: {len(jobs)} job(s){source}: {parts or 'none'}"
             + (f" ({done_before} already finished before)" if done_before else "")
             + f"; wall time {elapsed:.1f} s"]
    failed = [job for job in jobs if job.status == STATUS_FAILED]
    if failed:
        lines.append(f"  {len(failed)} sweep job(s) failed:")
        lines += [f"    {job.folder}: {(str(job.error or '').splitlines() or [''])[0]}"
                  for job in failed]
    lines += [f"  sweep folder: {sweep_dir}", f"  next: samt-report {sweep_dir}"]
    return "\n".join(lines), len(failed) if SWEEP_JOBS else 0


class RunCallbacks(Callback):
    """Registered in conf/config.yaml.

    Single run (``on_run_start``, before Hydra creates or writes the run folder): validates
    the config and the run folder's path, so that a user error writes nothing; records what
    the folder holds (``FolderState``), so that a run refused later removes only what it added
    and puts back Hydra's ``.hydra/`` files.
    Sweep: checks the values that name job folders, every job's config (``validate_sweep``)
    and the sweep folder's path before anything is written or run; at the end prints how the
    sweep ended (``_sweep_report``) and exits with status 1 if a job failed.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _FOLDER_STATES.clear()
        try:
            run_dir = _abs(str(config.hydra.run.dir))
        except Exception:  # an unresolvable folder name: Hydra reports it
            return
        try:
            check_config_dirs(config)
            _validate_early(config)
            subdir = config.hydra.output_subdir
            state = FolderState.capture(run_dir, restore=[str(subdir)] if subdir else [])
            state.created = prepare_folder("hydra.run.dir", run_dir)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            _fail_early(exc)
        state.added = (f"{config.hydra.job.name}.log",)
        _FOLDER_STATES[run_dir] = state

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SWEEP_JOBS.clear()
        _SWEEP_START[:] = [time.monotonic()]
        try:
            check_config_dirs(config)
            _check_sweep_folder_names(config)
            validate_sweep(config)
            try:
                sweep_dir = _abs(str(config.hydra.sweep.dir))
            except Exception:  # an unresolvable folder name: Hydra reports it
                return
            prepare_folder("hydra.sweep.dir", sweep_dir)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            _fail_early(exc)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report, failed = _sweep_report(config)
        print(report, file=sys.stderr)
        SWEEP_JOBS.clear()
        if failed:
            sys.exit(EXIT_SWEEP_FAILED)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_run(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = _abs(str(hydra_cfg.sweep.dir)) if multirun else None
    hint = (f"hydra.sweep.dir={sweep_dir}" if multirun else f"hydra.run.dir={run_dir}")
    return run_job(cfg, run_dir, multirun=multirun, resume_hint=hint, sweep_dir=sweep_dir)


def register_plugins() -> None:
    """Register samt's Hydra plugins (the job-list sweeper, ``hydra/sweeper=job_list``) by class.

    Hydra finds plugins by listing the folders of the ``hydra_plugins`` namespace package; an
    editable install (``pip install -e .``) puts none there (its import hook maps the module
    instead), so without this the sweeper is an "Unknown plugin class" from any folder but
    the checkout's root. Registering it by class works with every kind of install.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.samt_job_list.job_list_sweeper import JobListSweeper

    Plugins.instance().register(JobListSweeper)


def run_main() -> None:
    """``samt-run``: Hydra entry point (``samt-run --help`` lists the config groups)."""
    register_plugins()
    try:  # what Hydra would report with a traceback
        check_command_line(sys.argv[1:], sorted(p.name for p in CONF_DIR.iterdir()
                                                 if p.is_dir() and p.name != "hydra"))
    except ConfigError as exc:
        _fail_early(exc)
    _hydra_run()


def data_main(argv: list[str] | None = None) -> None:
    """``samt-data NAME... [--root DIR]``: put datasets where the runner looks for them."""
    from samt.data import DATASETS, DataError, prepare_dataset

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
