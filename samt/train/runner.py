"""The epoch loop: train, evaluate on train and test each epoch, hand the records to the run
folder (``samt.train.folder.RunFolder``, which owns its files and their formats).

Reliability (docs/reliability.md): a run checkpoints at the end of every epoch and resumes from
that checkpoint when started again in the same folder; a non-finite loss or gradient never
reaches the weights, and ``max_consecutive_skips`` of them in a row stop the run as
``diverged``; Ctrl-C/SIGTERM stop it as ``interrupted``; user errors found while setting up
leave no result files. A run with ``stop_at_target`` ends after the first epoch whose validation
metric reaches it, as ``reached_target`` (docs/tuning.md).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from samt.data import DataError, DatasetSplits, ImageFolderOptions, load_dataset
from samt.models import ModelConfigError
from samt.optim import MetaInitError, SAMTModelError
from samt.optim.fused import CompileWarning
from samt.optim.schedules import schedule_factor
from samt.run_folder import (
    CHECKPOINT,
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    RunFolderError,
)
from samt.targets import build_configured_model, load_target_dataset
from samt.tracking import TrackerError, make_tracker
from samt.train.augment import augmenter
from samt.train.build_optimizer import build_from_config
from samt.train.checkpoint import CheckpointError, load_checkpoint
from samt.train.evaluate import evaluate, loss_function
from samt.train.fits import check_fits
from samt.train.folder import Plan, RunFolder, Summary, read_meta_source
from samt.train.records import finite_number
from samt.train.seeding import (
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    synchronize,
)
from samt.train.stepper import Compiles, MetaStepper, Stepper
from samt.validation import ConfigError, validate_against_data

# Errors in what the user asked for (config, data, run folder): one message, no result files.
LOG = logging.getLogger("samt.run")  # Hydra writes it to <run folder>/cli.log
USER_ERRORS = (ConfigError, DataError, ModelConfigError, SAMTModelError, RunFolderError,
               CheckpointError, TrackerError)

__all__ = ["CHECKPOINT", "USER_ERRORS", "Diverged", "Interrupted", "Run", "load_checkpoint",
           "run_training"]


def show_progress(setting: str | bool) -> bool:
    """Whether to draw progress bars: ``progress=auto`` only when stderr is a terminal (a log
    file or a pipe would get a line per refresh), ``true``/``false`` always/never."""
    if setting == "auto":
        return sys.stderr.isatty()
    return bool(setting)


def base_summary(cfg: dict[str, Any]) -> Summary:
    """The summary fields known from the config alone (best effort for a broken config):
    ``Summary.start``."""
    return Summary.start(cfg)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or a termination signal; ``signal_name`` says which."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


class Diverged(RuntimeError):
    """Too many consecutive non-finite iterations."""


class Run:
    """One training run described by a plain (resolved) config dict, writing into ``run_dir``.

    ``execute()`` returns the summary; ``outcome`` then says what happened in this call:
    ``fresh`` (trained from scratch), ``resumed`` (continued from ``checkpoint.pt``) or
    ``done`` (the folder already held a finished run of this config: nothing was done).

    The run is the loop: set up, train epochs, evaluate; ``self.folder`` (``RunFolder``) writes
    what it hands over (rows, checkpoint state, summary, the optimizer's meta-parameters).
    """

    optimizer: Stepper  # built by ``setup``: the runner's contract (samt/train/stepper.py)

    def __init__(self, cfg: dict[str, Any], run_dir: Path,
                 log: Callable[[str], None] | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        printer = log or (lambda message: None)

        def say(message: str) -> None:  # the console (samt-run prints it) and the run's log
            printer(message)
            LOG.info("%s", message)

        self.log = say
        self.rows: list[dict] = []
        self.summary = Summary.start(cfg)
        self.outcome: str | None = None
        self.fresh = True  # False while resuming from a checkpoint (set by execute)
        self.start_epoch = 1
        self.wall_time, self.iterations, self.consecutive_skips = 0.0, 0, 0
        self.reached: dict | None = None  # the row whose val_metric reached stop_at_target

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Data, model, optimizer. Raises a ``USER_ERRORS`` error for what the user must fix.

        When resuming (``self.fresh`` false: the checkpoint restores the whole optimizer state)
        ``optimizer.meta_init`` is skipped; it only initializes a fresh start (``init_meta``).
        """
        cfg = self.cfg
        threads = cfg["device"].get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        seed_everything(int(cfg["seed"]))
        self.device = resolve_device(cfg["device"]["type"])
        loaded = self.load_data()
        validate_against_data(cfg, int(loaded.x_train.shape[0]), loaded.task)
        val_fraction = float(cfg["data"].get("val_fraction") or 0.0)
        val_seed = int(cfg["data"].get("val_seed") or 0)
        self.data = loaded.hold_out(val_fraction, val_seed)
        try:  # data.augment: drawn from batch_generator in train_epoch
            self.augment = augmenter(cfg["data"].get("augment", "none"), self.data.input_shape)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        check_fits(cfg, self.data.input_shape, self.data.num_outputs, self.device)  # or refuse
        self.model = build_configured_model(cfg["model"], self.data.input_shape,
                                            self.data.num_outputs).to(self.device)
        self.loss_fn = loss_function(self.data.task)
        try:  # the class of optimizer._target_ (samt/train/build_optimizer.py)
            self.optimizer = build_from_config(cfg["optimizer"], self.model, self.loss_fn)
        except (SAMTModelError, ConfigError):  # each names the key and what is allowed
            raise
        except (TypeError, ValueError) as exc:  # options the optimizer itself rejects
            raise ConfigError(f"optimizer={cfg['optimizer'].get('label')!r} is invalid: its "
                              f"options were rejected: {exc}") from None
        if self.fresh and cfg["optimizer"].get("meta_init"):
            self.init_meta(cfg["optimizer"]["meta_init"])
        self.batch_generator = torch.Generator().manual_seed(int(cfg["seed"]))
        self.summary.describe(
            task=self.data.task, device=str(self.device),
            num_params=sum(p.numel() for p in self.model.parameters()),
            train_size=int(self.data.x_train.shape[0]), test_size=int(self.data.x_test.shape[0]),
            val_size=int(self.data.x_val.shape[0]) if self.data.has_val else 0,
            split={"dataset_split": int(cfg["dataset"].get("split", 0)),
                   "val_fraction": val_fraction,
                   "val_seed": val_seed if self.data.has_val else None,
                   "train_size_before_hold_out": int(loaded.x_train.shape[0])})
        s = self.summary
        LOG.info("run folder %s", self.run_dir)
        LOG.info("config:\n%s", OmegaConf.to_yaml(OmegaConf.create(cfg)).rstrip())
        LOG.info("data %s: %d train / %d validation / %d test examples; model %s with %d "
                 "parameters; optimizer %s; device %s; seed %s", s["dataset"], s["train_size"],
                 s["val_size"], s["test_size"], s["model"], s["num_params"], s["label"],
                 s["device"], s["seed"])

    def load_data(self) -> DatasetSplits:
        """The dataset on the run's device: a shipped one from the registry (``load_dataset``),
        or a user's, whose ``dataset._target_`` function is called with the data root, the
        split and the config's other keys as options (``samt.targets.load_target_dataset``:
        anything but a ``DatasetSplits`` is a ``ConfigError``)."""
        cfg, split = self.cfg, int(self.cfg["dataset"].get("split", 0))
        if "_target_" in cfg["dataset"]:
            return load_target_dataset(cfg["dataset"], cfg["data"]["root"], split).to(
                self.device)
        return load_dataset(
            cfg["dataset"]["name"], cfg["data"]["root"], download=bool(cfg["data"]["download"]),
            split=split, device=self.device,
            images=ImageFolderOptions(path=cfg["dataset"].get("path"),
                                      cache_dir=cfg["data"].get("cache_dir"),
                                      progress=show_progress(cfg.get("progress", "auto"))))

    def init_meta(self, source: str) -> None:
        """Start the optimizer from the meta-parameters of ``optimizer.meta_init``: a run folder,
        its checkpoint.pt or a ``SAMT.save_meta`` file (``read_meta_source``). A source that
        cannot be read or does not fit is a ``ConfigError`` naming the key, the file and why."""
        where = f"optimizer.meta_init={str(source)!r}"
        try:
            saved = read_meta_source(source)
            if not isinstance(self.optimizer, MetaStepper):
                raise ConfigError(f"{where} cannot be used: optimizer "
                                  f"{self.cfg['optimizer'].get('label')!r} has no "
                                  "meta-parameters to initialize")
            file = self.optimizer.load_meta(saved)
        except MetaInitError as exc:  # its detail names the file and the mismatch
            raise ConfigError(f"{where}{exc.detail}") from None
        LOG.info("meta-parameters (eta models, theta) from %s", file)

    # --- checkpoints ---------------------------------------------------------------------------

    def checkpoint_state(self, epoch: int) -> dict:
        """Everything needed to continue after ``epoch`` exactly as an uninterrupted run would."""
        return {
            "epoch": epoch, "config": self.cfg, "device": self.device.type,
            "torch_version": str(torch.__version__),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(self.device, self.batch_generator),
            "rows": self.rows,
            "counters": {"wall_time": self.wall_time, "iterations": self.iterations,
                         "consecutive_skips": self.consecutive_skips},
            "resumed_from": self.summary["resumed_from"],
        }

    def save_checkpoint(self, epoch: int) -> None:
        self.folder.save_checkpoint(self.checkpoint_state(epoch))

    def restore(self, state: dict) -> None:
        """Load a checkpoint written by ``checkpoint_state`` (after ``setup``)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"], self.device, self.batch_generator)
            self.rows = [dict(r) for r in state["rows"]]
            counters = state["counters"]
            self.wall_time = float(counters["wall_time"])
            self.iterations = int(counters["iterations"])
            self.consecutive_skips = int(counters["consecutive_skips"])
            epoch = int(state["epoch"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise CheckpointError(
                f"{self.folder.checkpoint_path} does not fit this run ({type(exc).__name__}: "
                f"{detail[:600]}); delete it or pass resume=false") from None
        if len(self.rows) != epoch:
            raise CheckpointError(f"{self.folder.checkpoint_path}: {len(self.rows)} metric rows "
                                  f"for epoch {epoch}; delete it or pass resume=false")
        self.start_epoch = epoch + 1
        self.summary.resumed(list(state.get("resumed_from", [])), epoch)
        self.log(f"resuming {self.run_dir} from {CHECKPOINT} after epoch {epoch} of "
                 f"{self.cfg['epochs']}")

    # --- loop ----------------------------------------------------------------------------------

    def train_epoch(self, bar: tqdm) -> tuple[float, int]:
        """One pass over shuffled training batches; returns (training seconds, iterations)."""
        x, y = self.data.x_train, self.data.y_train
        batch = int(self.cfg["batch_size"])
        perm = torch.randperm(x.shape[0], generator=self.batch_generator).to(self.device)
        max_skips = int(self.cfg["max_consecutive_skips"])
        schedule = self.cfg["optimizer"].get("schedule", "constant")
        total = int(self.cfg["epochs"]) * -(-x.shape[0] // batch)
        self.optimizer.train_mode()  # schedule-free: back to the training weights
        self.model.train()
        synchronize(self.device)
        start = time.perf_counter()
        iterations = 0
        for i in range(0, x.shape[0], batch):
            idx = perm[i:i + batch]
            if schedule != "constant":
                self.optimizer.set_scale(schedule_factor(schedule, self.iterations + iterations,
                                                         total))
            skipped_before = self.optimizer.skipped_total
            inputs = x[idx] if self.augment is None else self.augment(x[idx],
                                                                      self.batch_generator)
            self.optimizer.step(inputs, y[idx])
            iterations += 1
            if self.optimizer.skipped_total > skipped_before:
                self.consecutive_skips += 1
                if self.consecutive_skips >= max_skips:
                    raise Diverged(f"{self.consecutive_skips} consecutive iterations had a "
                                   "non-finite loss or gradient (max_consecutive_skips="
                                   f"{max_skips}); the weights hold the last finite update")
            else:
                self.consecutive_skips = 0
            bar.update(1)
        synchronize(self.device)
        return time.perf_counter() - start, iterations

    def epoch_row(self, epoch: int, seconds: float, iterations: int) -> dict:
        bs = int(self.cfg["eval_batch_size"])
        d = self.data
        self.optimizer.eval_mode()  # schedule-free: evaluate the averaged weights
        train_loss, train_metric = evaluate(self.model, d.x_train, d.y_train, d, bs)
        test_loss, test_metric = evaluate(self.model, d.x_test, d.y_test, d, bs)
        val_loss, val_metric = (evaluate(self.model, d.x_val, d.y_val, d, bs) if d.has_val
                                else (None, None))  # empty cells: no validation split
        self.wall_time += seconds
        self.iterations += iterations
        stats = self.optimizer.epoch_stats()
        skipped = sum(v for k, v in stats.items() if k.endswith("skipped"))
        row = {"epoch": epoch, "train_loss": train_loss, "train_metric": train_metric,
               "test_loss": test_loss, "test_metric": test_metric, "epoch_time_s": seconds,
               "wall_time_s": self.wall_time, "iterations": self.iterations,
               "param_updates": self.optimizer.param_updates, "skipped": skipped,
               "val_loss": val_loss, "val_metric": val_metric}
        row.update({k: v for k, v in stats.items() if k != "skipped"})
        return row

    def execute(self) -> dict:
        """Run (or resume) all epochs; leaves metrics.csv, summary.json and checkpoint.pt.

        User errors (``USER_ERRORS``) found before training starts propagate with no result file
        written; any later failure is recorded in summary.json before it propagates.
        """
        self.folder.create()
        with self.folder.lock():
            device = resolve_device(self.cfg["device"]["type"])
            plan = self.folder.plan(self.cfg, device.type)
            if plan.kind == "done":
                self.outcome, self.summary = "done", plan.summary or self.summary
                self._restore_plots()
                return self.summary
            return self._train(plan)

    def _train(self, plan: Plan) -> dict:
        """Set up, then (only then: a refused or failed setup leaves the folder as it was)
        clear a previous run's results for a fresh start, and train."""
        self.outcome = "fresh" if plan.kind == "fresh" else "resumed"
        try:
            self.fresh = plan.checkpoint is None
            self.setup()
            if plan.checkpoint is not None:
                self.restore(plan.checkpoint)
            # Before anything is removed: a logger that cannot start is a TrackerError.
            self.tracker = make_tracker(self.cfg.get("logger"), self.run_dir,
                                        tuple(self.cfg.get("tags") or ()), self.cfg,
                                        resume=not self.fresh)
        except USER_ERRORS:
            raise
        except BaseException as exc:  # a crash (or Ctrl-C) while setting up
            if plan.kind == "fresh" and not self.folder.holds_results():
                self._record_stop(exc)
                self.folder.write_summary(self.summary)
            raise
        if plan.kind == "fresh":
            self.folder.start_fresh(self.cfg)
        LOG.info("%s after epoch %d", "resuming" if plan.kind != "fresh" else "starting",
                 self.start_epoch - 1)
        try:
            self.tracker.open()
            self.write()
            self._loop()
            if self.iterations and not self.optimizer.param_updates:  # not one applied
                raise Diverged(f"every one of the {self.iterations} iterations had a non-finite "
                               "loss or gradient: no update was applied")
            if self.reached is not None:
                self.summary.reach_target(self.reached)
            else:
                self.summary.stop(STATUS_COMPLETED)
        except Diverged as exc:
            self.summary.stop(STATUS_DIVERGED, str(exc))
        except BaseException as exc:
            self._record_stop(exc)
            LOG.error("run stopped: %s", self.summary.get("error"))
            try:
                self.write(final=True)
            except Exception as write_exc:  # e.g. the disk is still full: keep the real error
                _warn(f"the failure could not be recorded in {self.run_dir}: "
                      f"{type(write_exc).__name__}: {write_exc}")
            raise
        finally:
            self.tracker.close(str(self.summary.get("status") or "failed"))
        self.write(final=True)
        LOG.info("run %s after %s epochs (%.1f s of training)", self.summary["status"],
                 self.summary.get("epochs_completed"), self.wall_time)
        return self.summary

    def _record_stop(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
            how = "Ctrl-C" if name == "SIGINT" else name
            self.summary.stop(STATUS_INTERRUPTED, f"interrupted ({how})")
        else:
            self.summary.stop(STATUS_FAILED, f"{type(exc).__name__}: {exc}")

    def reaches_target(self, row: dict) -> bool:
        """Whether ``row``'s validation metric reaches ``stop_at_target`` (accuracy: >=, RMSE:
        <=); False without a target or a finite ``val_metric``."""
        target, value = self.cfg.get("stop_at_target"), row.get("val_metric")
        if target is None or not finite_number(value):
            return False
        return value >= target if self.summary.get("higher_is_better", True) else value <= target

    def _stop_at(self, row: dict) -> None:
        """End the loop after ``row``'s epoch: its validation metric reached the target."""
        self.reached = row
        LOG.info("target reached: val %s %.6g %s %s after epoch %d; the run stops",
                 self.summary.get("metric"), row["val_metric"],
                 ">=" if self.summary.get("higher_is_better", True) else "<=",
                 self.cfg["stop_at_target"], row["epoch"])

    def _loop(self) -> None:
        epochs = int(self.cfg["epochs"])
        if self.rows and self.reaches_target(self.rows[-1]):  # resumed after the target epoch
            self._stop_at(self.rows[-1])
            return
        per_epoch = -(-self.data.x_train.shape[0] // int(self.cfg["batch_size"]))
        with tqdm(total=epochs * per_epoch, initial=(self.start_epoch - 1) * per_epoch,
                  disable=not show_progress(self.cfg.get("progress", "auto")),
                  desc=f"{self.summary['label']} {self.summary['dataset']}",
                  unit="it", dynamic_ncols=True) as bar:
            compile_warned = False
            for epoch in range(self.start_epoch, epochs + 1):
                with warnings.catch_warnings():  # said below once, naming the config key
                    warnings.simplefilter("ignore", CompileWarning)
                    seconds, iterations = self.train_epoch(bar)
                error = self.optimizer.compile_error if isinstance(
                    self.optimizer, Compiles) else None
                if error and not compile_warned:
                    compile_warned = True
                    _warn(f"optimizer.compile=true: {error}; the run continues eager (the same "
                          "numbers up to float rounding; set optimizer.compile=false)")
                counters = self.wall_time, self.iterations
                self.rows.append(self.epoch_row(epoch, seconds, iterations))
                try:
                    self.save_checkpoint(epoch)
                except BaseException:
                    # No checkpoint for this epoch (e.g. the disk is full): its row must not
                    # reach metrics.csv or summary.json either, so that the three agree.
                    self.rows.pop()
                    self.wall_time, self.iterations = counters
                    raise
                self.write()
                last = self.rows[-1]
                self.tracker.log_row(last)
                LOG.info("%s", epoch_line(last, epochs, self.summary.get("metric")))
                bar.set_postfix(epoch=epoch, test=f"{last['test_metric']:.3f}",
                                loss=f"{last['train_loss']:.4f}")
                if self.reaches_target(last):
                    self._stop_at(last)
                    break

    # --- records -------------------------------------------------------------------------------

    def write(self, final: bool = False) -> None:
        """Hand the rows and the summary to the run folder (``RunFolder.record``): metrics.csv
        and summary.json; with ``final`` also the plots and, for a run that completed or
        diverged with an optimizer that has meta-parameters, ``samt_meta.pt``."""
        self.folder.record(self.rows, self.summary, final=final,
                           optimizer=getattr(self, "optimizer", None), warn=_warn)

    def _restore_plots(self) -> None:
        """A finished run whose plots are missing (killed while they were written) gets them
        again from metrics.csv; any failure is a warning."""
        try:
            if self.folder.restore_plots(self.summary):
                self.log(f"{self.run_dir}: plots were missing; written again from metrics.csv")
        except Exception as exc:
            _warn(f"plots not written: {type(exc).__name__}: {exc}")


def _warn(message: str) -> None:
    """A warning on the console (stderr) and in the run's log."""
    print(f"samt-run: warning: {message}", file=sys.stderr)
    LOG.warning("%s", message)


def epoch_line(row: dict[str, Any], epochs: int, metric: str | None) -> str:
    """``epoch 3/20: train loss 0.1234, test accuracy 97.12, val accuracy 97.40, 4.1 s``."""
    name = metric or "metric"
    parts = [f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4g}",
             f"test {name} {row['test_metric']:.4g}"]
    if finite_number(row.get("val_metric")):
        parts.append(f"val {name} {row['val_metric']:.4g}")
    parts.append(f"{row['epoch_time_s']:.1f} s")
    if row.get("skipped"):
        parts.append(f"{int(row['skipped'])} skipped iterations")
    return ", ".join(parts)


def run_training(cfg: dict[str, Any], run_dir: Path) -> dict:
    """Train (or resume, or skip when finished) as ``cfg`` says in ``run_dir``; the summary."""
    return Run(cfg, run_dir).execute()
