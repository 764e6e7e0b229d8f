"""Experiment trackers: the same per-epoch scalars as metrics.csv, written elsewhere too.

``logger`` (the config group ``conf/logger/``) maps each tracker's name to its settings
(``samt.schema.LOGGER_SCHEMAS``); ``{}`` (``logger=none``, the default) and ``csv`` write nothing
beyond metrics.csv, which every run writes. Every numeric column of a metrics.csv row becomes a
scalar at step = epoch: ``train/loss``, ``test/metric``, ``val/metric``, ``time/epoch_s``, and
for SAMT the per-block statistics ``samt/b0/eta_mean`` and so on (``tag_of``).

- ``tensorboard``: event files in ``<run folder>/tensorboard/`` (``pip install
  'samt[tensorboard]'``); the run's ``tags`` are the text ``run/tags`` (comma-separated) at
  step 0.
- ``mlflow``: an MLflow run (``pip install 'samt[mlflow]'``), by default in the local file store
  ``<run folder>/mlruns`` (offline); the config as params (``optimizer.lr``), the tags as the
  MLflow tag ``samt.tags``; a resumed run continues the MLflow run of its folder.
- ``wandb``: a W&B run (``pip install 'samt[wandb]'``), by default offline in
  ``<run folder>/wandb/`` (never sent; ``wandb sync`` uploads it); the config as its config,
  the tags as its tags; each start or resume is a W&B run of its own.

A logger whose package is missing, or whose folder is a file, is a ``TrackerError`` (a one-line
user error) raised when the tracker is made, before the run touches its folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from samt.schema import LOGGER_SCHEMAS, LOGGERS, defaults

__all__ = ["LOGGERS", "TAGS", "MlflowTracker", "NoTracker", "TensorBoardTracker", "Tracker",
           "TrackerError", "Trackers", "WandbTracker", "logger_problem", "logger_settings",
           "make_tracker", "scalars", "tag_of"]

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_EVENTS = "events.out.tfevents."  # how the names of its event files begin
TAGS_TEXT = "run/tags"  # the TensorBoard text that holds the run's tags
MLFLOW_DIR = "mlruns"  # the default MLflow file store, in the run folder
MLFLOW_TAGS = "samt.tags"  # the MLflow tag that holds the run's tags (comma-separated)
MLFLOW_FOLDER = "samt.run_folder"  # the MLflow tag naming the run folder (resume finds it)
MLFLOW_BATCH = 100  # params per log_batch call (MLflow's limit)
MLFLOW_PARAM_CHARS = 6000  # the longest param value MLflow takes
WANDB_DIR = "wandb"  # the folder W&B makes in logger.wandb.dir (default: the run folder)
WANDB_TAG_CHARS = 64  # the longest tag W&B takes
# W&B settings: no console capture or messages, no git, code, system metrics or package list
WANDB_SETTINGS = {"silent": True, "console": "off", "disable_git": True, "save_code": False,
                  "x_disable_stats": True, "x_disable_meta": True, "x_save_requirements": False,
                  "disable_job_creation": True}
# metrics.csv column -> scalar tag (SAMT's b{k}_{stat} columns become samt/b{k}/{stat})
TAGS = {"train_loss": "train/loss", "train_metric": "train/metric", "test_loss": "test/loss",
        "test_metric": "test/metric", "val_loss": "val/loss", "val_metric": "val/metric",
        "epoch_time_s": "time/epoch_s", "wall_time_s": "time/wall_s",
        "iterations": "progress/iterations", "param_updates": "progress/param_updates",
        "skipped": "progress/skipped"}
# logger -> (the module its tracker imports, the pip extra, the package pip installs)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard", "tensorboard"),
            "mlflow": ("mlflow", "mlflow", "mlflow-skinny"),
            "wandb": ("wandb", "wandb", "wandb")}


# The run's status (samt.run_folder) -> the MLflow run status it ends with.
MLFLOW_STATUS = {"completed": "FINISHED", "reached_target": "FINISHED", "interrupted": "KILLED",
                 "failed": "FAILED", "diverged": "FAILED"}


class TrackerError(Exception):
    """The logger cannot start (its package cannot be imported, its folder is a file): a user
    error, found before the run touches its folder."""


class Tracker(Protocol):
    """Receives each finished epoch's metrics.csv row.

    Made (``make_tracker``) while the run sets up, so that a logger that cannot start is
    refused (``TrackerError``) before a previous run's results are removed; ``open`` then
    creates its files, ``log_row`` writes each epoch, ``close`` ends it.
    """

    def open(self) -> None: ...

    def log_row(self, row: dict[str, Any]) -> None: ...

    def close(self, status: str = "completed") -> None: ...


class NoTracker:
    """``logger=none`` and ``logger=csv``: metrics.csv (written by the run folder) only."""

    def open(self) -> None:
        """Nothing to do."""

    def log_row(self, row: dict[str, Any]) -> None:
        """Nothing to do."""

    def close(self, status: str = "completed") -> None:
        """Nothing to do."""


def tag_of(column: str) -> str:
    """The scalar tag of a metrics.csv column."""
    if column in TAGS:
        return TAGS[column]
    head, _, stat = column.partition("_")
    if head.startswith("b") and head[1:].isdigit() and stat:
        return f"samt/{head}/{stat}"
    return f"other/{column}"


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row's finite numbers by tag (``tag_of``), without ``epoch`` (the step)."""
    return {tag_of(column): float(value) for column, value in row.items()
            if column != "epoch" and not isinstance(value, bool)
            and isinstance(value, int | float) and math.isfinite(value)}


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A run config as MLflow params: ``{"optimizer.lr": "0.001", "model.hidden": "[400]"}``
    (values as JSON, strings as they are), without the ``logger`` section."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name == "logger":
            continue
        if isinstance(value, Mapping) and value:
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return out


def _invalid(name: str, problem: str) -> TrackerError:
    return TrackerError(f"logger={name!r} is invalid: {problem}")


def _folder_problem(folder: Path, what: str) -> str | None:
    """Why ``folder`` cannot be (or be made as) a folder: it, or a folder above it, is a file."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else (f"{path} is a file, not a folder ({what}); move "
                                               "it away")
    return None


class TensorBoardTracker:
    """Scalars of every epoch into ``run_dir/tensorboard`` (appended to on resume).

    Building it imports TensorBoard's writer and checks its folder; only ``open`` writes.
    """

    def __init__(self, run_dir: Path, tags: tuple[str, ...] = ()) -> None:
        self.tags = tuple(tags)
        problem = tensorboard_import_error()
        if problem:
            raise _invalid("tensorboard", problem)
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise _invalid("tensorboard", f"{self.log_dir} is a file, not a folder (TensorBoard "
                           "writes its event files there); move it away, or use logger=none")
        self.writer: Any = None

    def open(self) -> None:
        """Create the writer (and ``tensorboard/`` with its first event file)."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        if self.tags:
            self.writer.add_text(TAGS_TEXT, ", ".join(self.tags), 0)

    def log_row(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self, status: str = "completed") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _store_folder(uri: str) -> Path | None:
    """The folder of a local MLflow file store that ``uri`` (a path or ``file:`` URI) names,
    or None for another kind of store (``sqlite:``, ``http:``, ...)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        return None
    return Path(uri).expanduser()


class MlflowTracker:
    """An MLflow run: the config as params, the tags, the scalars of every epoch.

    Building it imports MLflow and checks the file store's folder; only ``open`` writes. A
    local file store (the default ``<run folder>/mlruns``) needs no server and no network.
    """

    def __init__(self, run_dir: Path, settings: Mapping[str, Any], tags: tuple[str, ...] = (),
                 config: Mapping[str, Any] | None = None, resume: bool = False) -> None:
        problem = package_problem("mlflow")
        if problem:
            raise _invalid("mlflow", problem)
        self.run_dir, self.tags, self.resume = Path(run_dir).resolve(), tuple(tags), resume
        self.params = flat_config(config or {})
        uri = settings.get("tracking_uri")
        self.store = self.run_dir / MLFLOW_DIR if uri is None else _store_folder(str(uri))
        if self.store is not None:
            problem = _folder_problem(self.store, "MLflow's file store")
            if problem:
                raise TrackerError(
                    f"logger.mlflow.tracking_uri={uri!r} is invalid: {problem}, or set "
                    "logger.mlflow.tracking_uri" if uri is not None else
                    f"logger='mlflow' is invalid: {problem}, or set logger.mlflow.tracking_uri")
            self.store = self.store.resolve()
        self.uri = self.store.as_uri() if self.store is not None else str(uri)
        self.experiment_name = str(settings.get("experiment_name") or "samt")
        self.run_name = str(settings.get("run_name") or self.run_dir.name)
        self.client: Any = None
        self.run_id: str | None = None

    def _previous_run(self, experiment_id: str) -> str | None:
        """The MLflow run this run folder logged to before (resume), or None."""
        folder = str(self.run_dir)
        if "'" in folder:
            return None
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{MLFLOW_FOLDER}` = '{folder}'",
            max_results=1, order_by=["attributes.start_time DESC"])
        return found[0].info.run_id if found else None

    def open(self) -> None:
        """Create (or, on resume, reopen) the MLflow run and log the config as params."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.store is not None:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x asks for it
            self.store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(self.experiment_name))
        self.run_id = self._previous_run(experiment_id) if self.resume else None
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return  # its params are the same config (a resume needs one)
        tags = {MLFLOW_FOLDER: str(self.run_dir)}
        if self.tags:
            tags[MLFLOW_TAGS] = ", ".join(self.tags)
        run = self.client.create_run(experiment_id, tags=tags, run_name=self.run_name)
        self.run_id = run.info.run_id
        params = [Param(key, value[:MLFLOW_PARAM_CHARS]) for key, value in self.params.items()]
        for start in range(0, len(params), MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + MLFLOW_BATCH])

    def log_row(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(tag, value, now, step) for tag, value in scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str = "completed") -> None:
        """End the MLflow run with the run's outcome: FINISHED (completed or reached_target),
        KILLED (interrupted) or FAILED (failed, diverged)."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))
            self.run_id = None


class WandbTracker:
    """A Weights & Biases run: the config, the tags, the scalars of every epoch.

    Building it imports W&B and checks its folder; only ``open`` writes. ``mode: offline`` (the
    default) writes only to ``<dir>/wandb/offline-run-*/`` and never touches the network.
    """

    def __init__(self, run_dir: Path, settings: Mapping[str, Any], tags: tuple[str, ...] = (),
                 config: Mapping[str, Any] | None = None) -> None:
        problem = package_problem("wandb")
        if problem:
            raise _invalid("wandb", problem)
        long = [t for t in tags if len(t) > WANDB_TAG_CHARS]
        if long:
            raise _invalid("wandb", f"W&B takes tags of at most {WANDB_TAG_CHARS} characters "
                           f"and tags holds {long[0]!r}; shorten it, or leave wandb out of "
                           "logger")
        self.run_dir, self.tags = Path(run_dir), list(tags)
        self.config = {k: v for k, v in (config or {}).items() if k != "logger"}
        self.settings = {**defaults(LOGGER_SCHEMAS["wandb"]), **settings}
        where = self.settings.get("dir")
        self.dir = Path(where).expanduser() if where else self.run_dir
        problem = _folder_problem(self.dir / WANDB_DIR, "W&B writes its runs there")
        if problem:
            raise TrackerError(f"logger.wandb.dir={where!r} is invalid: {problem}, or set "
                               "logger.wandb.dir" if where else
                               f"logger='wandb' is invalid: {problem}, or set logger.wandb.dir")
        self.run: Any = None

    def open(self) -> None:
        """Start the W&B run (offline: its folder ``<dir>/wandb/offline-run-*``)."""
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        known = getattr(wandb.Settings, "model_fields", None)  # older versions: not pydantic
        quiet = {k: v for k, v in WANDB_SETTINGS.items() if known is None or k in known}
        self.run = wandb.init(
            mode=s["mode"], project=s["project"], entity=s.get("entity"), group=s.get("group"),
            name=s.get("name") or self.run_dir.name, dir=str(self.dir), config=self.config,
            tags=self.tags, settings=wandb.Settings(**quiet))

    def log_row(self, row: dict[str, Any]) -> None:
        self.run.log(scalars(row), step=int(row["epoch"]))

    def close(self, status: str = "completed") -> None:
        """Finish the W&B run: exit code 0 when the run completed (or reached its target), else
        1."""
        if self.run is not None:
            self.run.finish(exit_code=0 if status in ("completed", "reached_target") else 1)
            self.run = None


class Trackers:
    """Several trackers as one (``logger=[tensorboard,mlflow]``, ``logger=many``)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers
        self.opened: list[Tracker] = []

    def open(self) -> None:
        """Open each; when one fails, close those already open and raise."""
        for tracker in self.trackers:
            try:
                tracker.open()
            except BaseException:
                self.close("failed")
                raise
            self.opened.append(tracker)

    def log_row(self, row: dict[str, Any]) -> None:
        for tracker in self.opened:
            tracker.log_row(row)

    def close(self, status: str = "completed") -> None:
        """Close every open tracker, then raise the first failure (if any)."""
        failure: BaseException | None = None
        for tracker in reversed(self.opened):
            try:
                tracker.close(status)
            except BaseException as exc:  # close the others first
                failure = failure or exc
        self.opened = []
        if failure is not None:
            raise failure


def package_available(module: str) -> bool:
    """Whether ``module`` (a top-level package) is installed."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. a None in sys.modules: found, but broken
        return True


def package_problem(logger: str) -> str | None:
    """Why ``logger``'s package cannot be imported (installing it, or leaving the logger out,
    helps), or None when it imports; imports it (MLflow's telemetry off unless set)."""
    if logger == "tensorboard":
        return tensorboard_import_error()
    module, extra, package = PACKAGES[logger]
    remedy = f"pip install 'samt[{extra}]' (or pip install {package}); or use logger=none"
    if not package_available(module):
        return f"needs the {module} package: {remedy}"
    if logger == "mlflow":
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline unless asked
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install: ImportError, or an error inside the import
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"{module} cannot be imported ({type(exc).__name__}: {detail}); {remedy}"
    return None


def logger_problem(name: str) -> str | None:
    """Why the logger ``name`` cannot run on this machine (its package), or None."""
    return package_problem(name) if name in PACKAGES else None


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboard`` package is installed."""
    return package_available("tensorboard")


def tensorboard_import_error() -> str | None:
    """Why TensorBoard's writer (``torch.utils.tensorboard``) cannot be imported, or None when
    it can (imports torch: call it only for ``logger=tensorboard``)."""
    if not tensorboard_available():
        return ("needs the tensorboard package: pip install 'samt[tensorboard]' (or pip "
                "install tensorboard); or use logger=none")
    try:
        import torch.utils.tensorboard  # noqa: F401
    except Exception as exc:  # a broken install: ImportError, or an error inside the import
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        return (f"torch.utils.tensorboard cannot be imported ({type(exc).__name__}: {detail}); "
                "reinstall tensorboard (pip install 'samt[tensorboard]'), or use logger=none")
    return None


def logger_settings(logger: Any) -> dict[str, dict[str, Any]]:
    """``logger`` as a run config holds it (``{name: settings}``), or as a name or list of
    names (``"tensorboard"``, ``["tensorboard", "mlflow"]``; ``"none"``, None: no logger), each
    logger's settings completed with its defaults (``samt.schema.LOGGER_SCHEMAS``)."""
    if logger is None or logger == "none":
        logger = {}
    elif isinstance(logger, str):
        logger = {logger: {}}
    elif isinstance(logger, list | tuple):
        logger = {name: {} for name in logger if name != "none"}
    for name in logger:
        if name not in LOGGER_SCHEMAS:
            raise TrackerError(f"logger={name!r} is invalid: allowed: none, {', '.join(LOGGERS)}")
    return {name: {**defaults(LOGGER_SCHEMAS[name]), **(settings or {})}
            for name, settings in logger.items()}


def make_tracker(logger: Any, run_dir: Path, tags: tuple[str, ...] = (),
                 config: Mapping[str, Any] | None = None, resume: bool = False) -> Tracker:
    """The tracker(s) for ``logger`` (``logger_settings``) recording the run's ``tags`` and
    ``config``, not yet open; ``resume``: the run continues (MLflow reopens the folder's run).
    ``TrackerError``: one cannot start."""
    trackers: list[Tracker] = []
    for name, settings in logger_settings(logger).items():
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir, tags))
        elif name == "mlflow":
            trackers.append(MlflowTracker(run_dir, settings, tags, config, resume))
        elif name == "wandb":
            trackers.append(WandbTracker(run_dir, settings, tags, config))
    if not trackers:
        return NoTracker()
    return trackers[0] if len(trackers) == 1 else Trackers(trackers)
