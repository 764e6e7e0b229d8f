"""The run folder and its contract (docs/outputs.md): ``RunFolder`` owns the files and their
formats, ``Summary`` builds ``summary.json``.

The runner (``samt.train.runner.Run``) is the loop: it hands the folder its metric rows, its
checkpoint state, its summary and its optimizer, and the folder decides what is written where,
in which format and in which order (every file atomically; ``summary.json`` last). The folder
also decides what a (re)run in it does (``RunFolder.plan``: fresh, resume or done; see
docs/reliability.md), and reads the meta-parameters that another run's
``optimizer.meta_init`` names (``read_meta_source``): ``samt.optim`` reads only the file
``SAMT.save_meta`` writes and knows nothing of run folders.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf

from samt.optim import SAMT, MetaInitError, SavedMeta
from samt.optim.samt import META_FORMAT, load_tensors, unpack_meta
from samt.run_folder import (
    CHECKPOINT,
    CONFIG,
    FINAL_STATUSES,
    LEARNING_CURVES,
    METRICS,
    SAMT_META,
    SAMT_STEPS,
    STATUS_REACHED_TARGET,
    STATUS_RUNNING,
    SUMMARY,
    FolderLock,
    RunFolderError,
)
from samt.tracking import TENSORBOARD_DIR, TENSORBOARD_EVENTS
from samt.train.checkpoint import (
    FORMAT,
    check_checksum,
    check_complete,
    config_differences,
    load_checkpoint,
    save_checkpoint,
)
from samt.train.plots import plot_learning_curves, plot_samt_steps
from samt.train.records import (
    finite_number,
    read_metrics,
    write_atomic,
    write_json,
    write_metrics,
)
from samt.train.stepper import MetaStepper, Stepper

__all__ = ["Plan", "RunFolder", "Summary", "block_count", "read_meta_source"]


class Summary(dict):
    """The fields of ``summary.json`` (docs/outputs.md), built here and nowhere else.

    ``start`` sets what the config alone says, ``describe`` what setting up the data, model and
    device says, ``resumed`` the resumption history, ``record_rows`` the fields that follow from
    the metric rows (``RunFolder.record`` calls it before every write, so the summary always
    agrees with ``metrics.csv``), ``stop`` the status and error, ``reach_target`` a stop at
    ``stop_at_target``.
    """

    @classmethod
    def start(cls, cfg: dict[str, Any]) -> Summary:
        """The fields known from the config alone (best effort for a broken config)."""
        def get(section: str, key: str) -> Any:
            node = cfg.get(section)
            return node.get(key) if isinstance(node, dict) else None

        return cls(status=STATUS_RUNNING, dataset=get("dataset", "name"),
                   model=get("model", "name"), optimizer=get("optimizer", "name"),
                   label=get("optimizer", "label") or get("optimizer", "name"),
                   seed=cfg.get("seed"), epochs=cfg.get("epochs"), epochs_completed=0,
                   error=None, stop_at_target=cfg.get("stop_at_target"), reached_target=None,
                   tags=list(cfg.get("tags") or []))

    def describe(self, *, task: str, device: str, num_params: int, train_size: int,
                 test_size: int, val_size: int, split: dict[str, Any]) -> None:
        """What the run trains on and with; ``metric`` and ``higher_is_better`` follow from
        ``task`` (accuracy for classification, RMSE for regression)."""
        metric = "accuracy" if task == "classification" else "rmse"
        self.update(task=task, metric=metric, higher_is_better=metric == "accuracy",
                    device=device, num_params=int(num_params), train_size=int(train_size),
                    test_size=int(test_size), val_size=int(val_size), split=split,
                    resumed_from=[])

    def resumed(self, before: list[int], epoch: int) -> None:
        """This run continues after ``epoch``; ``before``: the epochs of earlier resumptions."""
        self["resumed_from"] = [*before, int(epoch)]

    def record_rows(self, rows: list[dict]) -> None:
        """``epochs_completed``, ``final``, the best test and validation metrics and the
        counters, from the metric rows (nothing without rows)."""
        if not rows:
            return
        pick = max if self.get("higher_is_better", True) else min
        finite = [r for r in rows if finite_number(r["test_metric"])] or rows
        best = pick(finite, key=lambda r: r["test_metric"])
        vals = [r for r in rows if finite_number(r.get("val_metric"))]
        best_val = pick(vals, key=lambda r: r["val_metric"]) if vals else {}
        last = rows[-1]
        self.update(
            epochs_completed=last["epoch"],
            final={k: last.get(k) for k in ("train_loss", "train_metric", "test_loss",
                                            "test_metric", "val_loss", "val_metric")},
            best_test_metric=best["test_metric"], best_epoch=best["epoch"],
            best_val_metric=best_val.get("val_metric"), best_val_epoch=best_val.get("epoch"),
            wall_time_s=last["wall_time_s"], iterations=last["iterations"],
            param_updates=last["param_updates"])

    def reach_target(self, row: dict) -> None:
        """The run stopped at its target (``stop_at_target``) after ``row``'s epoch: what it
        took (status ``reached_target``)."""
        self["reached_target"] = {k: row.get(k) for k in ("epoch", "val_metric", "wall_time_s",
                                                          "param_updates", "iterations")}
        self.stop(STATUS_REACHED_TARGET)

    def stop(self, status: str, error: str | None = None) -> None:
        """How the run ended (or, for ``running``, that it goes on)."""
        self.update(status=status, error=error)


@dataclass
class Plan:
    """What a run in a folder does: ``fresh``, ``resume`` (from ``checkpoint``) or ``done``."""

    kind: str
    checkpoint: dict | None = None
    summary: Summary | None = None


def block_count(rows: list[dict]) -> int:
    """The number of SAMT blocks whose statistics the rows hold (``b{k}_eta_mean`` columns)."""
    return sum(1 for key in (rows[0] if rows else {})
               if key.startswith("b") and key.endswith("_eta_mean"))


class _File:
    """A run folder's file as a read-only attribute: ``folder.metrics_path`` and so on."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, folder: RunFolder, owner: type | None = None) -> Path:
        return folder.path / self.name


class RunFolder:
    """A run folder: the files of docs/outputs.md, their formats, and one writer at a time.

    Paths: ``metrics_path``, ``summary_path``, ``config_path``, ``checkpoint_path``,
    ``meta_path`` (``samt_meta.pt``), ``learning_curves_path``, ``samt_steps_path``.
    """

    # What a run writes into its folder; a fresh start removes them first (``clear_results``).
    RESULT_FILES = (METRICS, SUMMARY, CHECKPOINT, LEARNING_CURVES, SAMT_STEPS, CONFIG, SAMT_META)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    metrics_path = _File(METRICS)
    summary_path = _File(SUMMARY)
    config_path = _File(CONFIG)
    checkpoint_path = _File(CHECKPOINT)
    meta_path = _File(SAMT_META)
    learning_curves_path = _File(LEARNING_CURVES)
    samt_steps_path = _File(SAMT_STEPS)

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def lock(self) -> FolderLock:
        """The folder's lock (``with folder.lock(): ...``): ``RunFolderError`` while another
        process holds it."""
        return FolderLock(self.path)

    # --- metrics.csv, summary.json, config.yaml --------------------------------------------------

    def read_rows(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def write_rows(self, rows: list[dict]) -> None:
        """All epoch rows (nothing while there are none)."""
        write_metrics(self.metrics_path, rows)

    def read_summary(self) -> Summary | None:
        """The summary written before, or None (none, or unreadable)."""
        try:
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Summary(summary) if isinstance(summary, dict) else None

    def write_summary(self, summary: dict) -> None:
        """``summary.json``; non-finite numbers, nested ones too, become null."""
        write_json(self.summary_path, summary)

    def read_config(self) -> dict | None:
        """The config recorded in ``config.yaml``, or None (none, or unreadable)."""
        try:
            cfg = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def write_config(self, cfg: dict) -> None:
        write_atomic(self.config_path, OmegaConf.to_yaml(OmegaConf.create(cfg)))

    # --- checkpoint.pt -------------------------------------------------------------------------

    def save_checkpoint(self, state: dict) -> None:
        """``state`` (``Run.checkpoint_state``) as ``checkpoint.pt`` of format ``FORMAT``."""
        save_checkpoint(self.checkpoint_path, {"format": FORMAT, **state})

    def load_checkpoint(self) -> dict:
        """The checkpoint, checked for every key a resumption needs (``CheckpointError``)."""
        state = load_checkpoint(self.checkpoint_path)
        check_complete(self.checkpoint_path, state)
        return state

    # --- samt_meta.pt --------------------------------------------------------------------------

    def save_meta(self, optimizer: Stepper | None) -> bool:
        """``samt_meta.pt`` from an optimizer with meta-parameters (``has_meta``: SAMT unless
        ``combine: fixed``), written by the optimizer itself (``save_meta``); whether it was."""
        if not isinstance(optimizer, MetaStepper) or not optimizer.has_meta:
            return False
        optimizer.save_meta(self.meta_path)
        return True

    def read_meta(self) -> SavedMeta:
        """The meta-parameters of the run in this folder, for another run's ``meta_init``:
        from ``checkpoint.pt`` (after its last finished epoch), else ``samt_meta.pt``.
        ``MetaInitError`` when there is neither, or it holds none."""
        for path in (self.checkpoint_path, self.meta_path):
            if path.is_file():
                return _read_meta_file(path)
        raise MetaInitError(self.path, f": the folder holds neither {CHECKPOINT} nor {SAMT_META} "
                                       "(a SAMT run folder has both once it finished)")

    # --- plots ---------------------------------------------------------------------------------

    def write_plots(self, rows: list[dict], summary: dict) -> None:
        """``learning_curves.png`` and, when the rows hold SAMT's block statistics,
        ``samt_steps.png``."""
        title = (f"{summary.get('label')} on {summary.get('dataset')} / "
                 f"{summary.get('model')}, seed {summary.get('seed')}")
        plot_learning_curves(rows, summary.get("metric") or "test metric",
                             self.learning_curves_path, title)
        blocks = block_count(rows)
        if blocks:
            plot_samt_steps(rows, blocks, self.samt_steps_path, title)

    def restore_plots(self, summary: dict) -> bool:
        """Write the plots of a finished run again from ``metrics.csv`` when any is missing
        (a run killed while they were written); whether it did."""
        if not self.metrics_path.is_file():
            return False
        rows = self.read_rows()
        wanted = [self.learning_curves_path] + ([self.samt_steps_path] if block_count(rows)
                                                else [])
        if not rows or all(path.is_file() for path in wanted):
            return False
        self.write_plots(rows, summary)
        return True

    # --- a run's records -----------------------------------------------------------------------

    def record(self, rows: list[dict], summary: Summary, *, final: bool = False,
               optimizer: Stepper | None = None, warn: Callable[[str], None] | None = None
               ) -> None:
        """``metrics.csv``, then ``summary`` updated from ``rows`` (``Summary.record_rows``) as
        ``summary.json``.

        With ``final`` (the run ended), first ``samt_meta.pt`` when the run completed or
        diverged and ``optimizer`` has meta-parameters, and the plots after the rows. Neither
        may change a run's status: a failure is passed to ``warn``. ``summary.json`` comes
        last: once it says ``completed``, every other file is in place.
        """
        warn = warn or (lambda message: None)
        if final and summary.get("status") in FINAL_STATUSES:
            try:
                self.save_meta(optimizer)
            except Exception as exc:  # checkpoint.pt holds the same meta-parameters
                warn(f"{SAMT_META} not written: {type(exc).__name__}: {exc}")
        self.write_rows(rows)
        summary.record_rows(rows)
        if final and rows:
            try:
                self.write_plots(rows, summary)
            except Exception as exc:  # a plot must never change a run's status
                warn(f"plots not written: {type(exc).__name__}: {exc}")
        self.write_summary(summary)

    # --- what a run in this folder does --------------------------------------------------------

    def plan(self, cfg: dict, device: str) -> Plan:
        """Decide from the folder's files and ``cfg['resume']`` (auto | true | false) what to do.

        ``device`` is the resolved device type; a checkpoint from another device type is
        refused. Raises ``RunFolderError`` (other config, nothing to resume) or
        ``CheckpointError``.
        """
        mode = cfg.get("resume", "auto")
        self.check_no_foreign_files(cfg)
        if mode is False:
            return Plan("fresh")
        summary = self.read_summary()
        checkpoint = self.load_checkpoint() if self.checkpoint_path.is_file() else None
        # A summary alone (a run that failed or stopped before its first epoch ended) holds
        # nothing to protect or resume.
        has_results = checkpoint is not None or self.metrics_path.is_file() or (
            summary is not None and summary.get("status") in FINAL_STATUSES)
        if not has_results:
            if mode is True:
                raise RunFolderError(f"resume=true but {self.path} holds no {CHECKPOINT} to "
                                     "resume from; pass hydra.run.dir=<the run folder> (or "
                                     "resume=auto)")
            return Plan("fresh")
        recorded = checkpoint["config"] if checkpoint is not None else self.read_config()
        if recorded is None:
            raise RunFolderError(
                f"{self.path} already holds results but no record of their config ({CONFIG}); "
                "use another hydra.run.dir, or resume=false to overwrite them")
        diffs = config_differences(recorded, cfg)
        if diffs:
            raise RunFolderError(
                f"{self.path} holds a run of a different config ({'; '.join(diffs)}); use "
                "another hydra.run.dir (or hydra.sweep.dir), or resume=false to overwrite it")
        if checkpoint is not None and checkpoint.get("device") != device:
            raise RunFolderError(
                f"{self.checkpoint_path} was written on device {checkpoint.get('device')}, this "
                f"run would use {device}: resuming would not reproduce the run; pass "
                f"device={checkpoint.get('device')}, or resume=false to start over")
        if summary is not None and summary.get("status") in FINAL_STATUSES and (
                checkpoint is None or checkpoint["epoch"] == summary.get("epochs_completed")):
            return Plan("done", summary=summary)
        if checkpoint is not None:
            return Plan("resume", checkpoint=checkpoint, summary=summary)
        if mode is True:
            raise RunFolderError(f"resume=true but {self.path} holds no {CHECKPOINT} (the run "
                                 "stopped before its first epoch ended); pass resume=auto to "
                                 "start it over")
        return Plan("fresh")

    def holds_run_record(self) -> bool:
        """Whether a samt-run wrote here: a ``summary.json`` of a run (with its ``status`` and
        ``epochs_completed``), ``metrics.csv`` or ``checkpoint.pt``."""
        summary = self.read_summary()
        return (self.checkpoint_path.is_file() or self.metrics_path.is_file()
                or (summary is not None and isinstance(summary.get("status"), str)
                    and "epochs_completed" in summary))

    def foreign_files(self, cfg: dict) -> list[str]:
        """The files a run would overwrite or remove although no samt-run wrote them: with no
        run record in the folder (``holds_run_record``), any of ``RESULT_FILES`` except a
        ``config.yaml`` that records ``cfg`` itself (a run killed just after writing it)."""
        if self.holds_run_record():
            return []
        found = []
        for name in self.RESULT_FILES:
            if not (self.path / name).exists():
                continue
            if name == CONFIG:
                recorded = self.read_config()
                if recorded is not None and not config_differences(recorded, cfg):
                    continue
            found.append(name)
        return found

    def check_no_foreign_files(self, cfg: dict) -> None:
        """``RunFolderError`` when the folder holds files a run would overwrite that no
        samt-run wrote (``foreign_files``, e.g. a ``config.yaml`` of your own): nothing of
        yours is ever replaced; ``resume=false`` does not change that."""
        found = self.foreign_files(cfg)
        if found:
            raise RunFolderError(
                f"{self.path} holds {', '.join(found)} but no run of samt-run ({SUMMARY}, "
                f"{METRICS} or {CHECKPOINT}); a run writes files of these names: move them "
                "away or use another hydra.run.dir")

    def holds_results(self) -> bool:
        """Whether the folder holds a run's results: rows, a checkpoint or a final summary."""
        summary = self.read_summary()
        return (self.checkpoint_path.is_file() or self.metrics_path.is_file()
                or (summary is not None and summary.get("status") in FINAL_STATUSES))

    def clear_results(self) -> None:
        """Remove a previous run's result files (and their temporary files) and the event
        files TensorBoard wrote into ``tensorboard/``; anything else there stays (the folder
        goes only when that leaves it empty)."""
        for name in self.RESULT_FILES:
            (self.path / name).unlink(missing_ok=True)
            (self.path / f".{name}.tmp").unlink(missing_ok=True)
        events = self.path / TENSORBOARD_DIR
        if events.is_dir() and not events.is_symlink():
            for file in events.glob(f"{TENSORBOARD_EVENTS}*"):
                if file.is_file():
                    file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                events.rmdir()

    def start_fresh(self, cfg: dict) -> None:
        """A fresh start: a previous run's results removed, ``config.yaml`` written."""
        self.clear_results()
        self.write_config(cfg)


# --- eta-model transfer: reading another run's meta-parameters ----------------------------------


def read_meta_source(source: str | Path) -> SavedMeta:
    """The meta-parameters that ``source`` holds: a run folder (``RunFolder.read_meta``), a
    ``checkpoint.pt`` of a SAMT run, or a file written by ``SAMT.save_meta``.

    Raises ``MetaInitError`` whose ``detail`` names the file and the problem; the caller names
    ``source`` (``Run.setup`` as ``optimizer.meta_init=<source>``).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return RunFolder(path).read_meta()
    if not path.is_file():
        raise MetaInitError(source, f": no such file or folder (give a SAMT run folder, its "
                                    f"{CHECKPOINT}, or a file written by SAMT.save_meta)")
    return _read_meta_file(path)


def _read_meta_file(path: Path) -> SavedMeta:
    """The meta-parameters in ``path``: a ``save_meta`` file or a SAMT run's checkpoint."""
    state = load_tensors(path, path)
    if isinstance(state, dict) and state.get("format") == META_FORMAT:
        return unpack_meta(state, path)
    if isinstance(state, dict) and isinstance(state.get("config"), dict) and isinstance(
            state.get("optimizer"), dict):
        if not check_checksum(path, state):
            raise MetaInitError(path, f": {path} is corrupt: its content does not match the "
                                      "checksum stored in it")
        return _checkpoint_meta(state, path)
    raise MetaInitError(path, f": {path} is neither a samt-run {CHECKPOINT} nor a file written "
                              "by SAMT.save_meta")


def _checkpoint_meta(state: dict, path: Path) -> SavedMeta:
    """The meta-parameters in a run's checkpoint: its optimizer state's ``meta`` (SAMT's
    ``state_dict``), with the signature of the optimizer its config describes."""
    opt_cfg = state["config"].get("optimizer")
    opt_cfg = opt_cfg if isinstance(opt_cfg, dict) else {}
    meta = state["optimizer"].get("meta")
    if meta is None:
        raise MetaInitError(path, f": {path} is the checkpoint of a run of optimizer "
                                  f"{opt_cfg.get('label') or opt_cfg.get('name')!r}, not of SAMT")
    if not isinstance(meta, dict) or not all(isinstance(v, torch.Tensor) for v in meta.values()):
        raise MetaInitError(path, f": {path} has no readable meta-parameters")
    if not meta:
        raise MetaInitError(path, f": {path} holds no meta-parameters (its run used "
                                  "combine=fixed, which learns no step sizes)")
    return SavedMeta(path, meta, _run_signature(opt_cfg, meta))


def _run_signature(opt_cfg: dict, meta: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``SAMT.meta_signature`` of the run that wrote a checkpoint, from its optimizer config
    (SAMT's keyword options; a missing one has SAMT's default) and its meta state."""
    default = {k: p.default for k, p in inspect.signature(SAMT).parameters.items()}

    def get(key: str) -> Any:
        return opt_cfg.get(key, default[key])

    n = sum(1 for k in meta if k.startswith("theta."))
    size = n if int(get("group_size")) == 0 else int(get("group_size"))
    return {
        "step_type": get("step_type"), "projection": get("projection"),
        "features": list(get("features")),
        "features_per_group": bool(get("features_per_group")),
        "eta_shared": bool(get("eta_shared")), "eta_hidden": int(get("eta_hidden")),
        "block_sizes": [min(size, n - i) for i in range(0, n, max(size, 1))],
        "theta_shapes": [list(meta[f"theta.{i}"].shape) for i in range(n)],
    }
