"""The epoch loop: train, evaluate on train and test each epoch, record into the run folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from samt.data import DatasetSplits, load_dataset
from samt.models import build_model
from samt.optim import SAMT, build_optimizer
from samt.optim.schedules import schedule_factor
from samt.train.evaluate import evaluate, loss_function
from samt.train.plots import plot_learning_curves, plot_samt_steps
from samt.train.records import write_json, write_metrics
from samt.train.seeding import resolve_device, seed_everything, synchronize

RUNNER_KEYS = ("name", "label", "schedule")  # optimizer-group keys the runner itself handles
STATUS_RUNNING, STATUS_COMPLETED, STATUS_FAILED = "running", "completed", "failed"
STATUS_DIVERGED, STATUS_INTERRUPTED = "diverged", "interrupted"


def optimizer_options(opt_cfg: dict) -> dict:
    """Keyword options of the optimizer: its config without the ``name`` and ``label`` keys."""
    return {k: v for k, v in opt_cfg.items() if k not in RUNNER_KEYS}


class Run:
    """One training run described by a plain (resolved) config dict, writing into ``run_dir``."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.rows: list[dict] = []
        self.summary: dict[str, Any] = {
            "status": STATUS_RUNNING, "dataset": cfg["dataset"]["name"],
            "model": cfg["model"]["name"], "optimizer": cfg["optimizer"]["name"],
            "label": cfg["optimizer"].get("label", cfg["optimizer"]["name"]),
            "seed": cfg["seed"], "epochs": cfg["epochs"], "epochs_completed": 0, "error": None,
        }

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        threads = cfg["device"].get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        seed_everything(int(cfg["seed"]))
        self.device = resolve_device(cfg["device"]["type"])
        self.data: DatasetSplits = load_dataset(
            cfg["dataset"]["name"], cfg["data"]["root"], download=bool(cfg["data"]["download"]),
            split=int(cfg["dataset"].get("split", 0)), device=self.device)
        model_opts = {k: v for k, v in cfg["model"].items() if k != "name"}
        self.model = build_model(cfg["model"]["name"], self.data.input_shape,
                                 self.data.num_outputs, **model_opts).to(self.device)
        self.loss_fn = loss_function(self.data.task)
        self.optimizer = build_optimizer(cfg["optimizer"]["name"], self.model, self.loss_fn,
                                         **optimizer_options(cfg["optimizer"]))
        self.batch_generator = torch.Generator().manual_seed(int(cfg["seed"]))
        metric = "accuracy" if self.data.task == "classification" else "rmse"
        self.summary.update(task=self.data.task, metric=metric,
                            higher_is_better=metric == "accuracy", device=str(self.device),
                            num_params=sum(p.numel() for p in self.model.parameters()),
                            train_size=int(self.data.x_train.shape[0]),
                            test_size=int(self.data.x_test.shape[0]))

    # --- loop ----------------------------------------------------------------------------------

    def train_epoch(self, bar: tqdm) -> tuple[float, int]:
        """One pass over shuffled training batches; returns (training seconds, iterations)."""
        x, y = self.data.x_train, self.data.y_train
        batch = int(self.cfg["batch_size"])
        perm = torch.randperm(x.shape[0], generator=self.batch_generator).to(self.device)
        max_skips = int(self.cfg["max_consecutive_skips"])
        schedule = self.cfg["optimizer"].get("schedule", "constant")
        total = int(self.cfg["epochs"]) * -(-x.shape[0] // batch)
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
            self.optimizer.step(x[idx], y[idx])
            iterations += 1
            if self.optimizer.skipped_total > skipped_before:
                self.consecutive_skips += 1
                if self.consecutive_skips >= max_skips:
                    raise Diverged(f"{self.consecutive_skips} consecutive iterations had a "
                                   "non-finite loss or gradient")
            else:
                self.consecutive_skips = 0
            bar.update(1)
        synchronize(self.device)
        return time.perf_counter() - start, iterations

    def epoch_row(self, epoch: int, seconds: float, iterations: int) -> dict:
        bs = int(self.cfg["eval_batch_size"])
        d = self.data
        train_loss, train_metric = evaluate(self.model, d.x_train, d.y_train, d, bs)
        test_loss, test_metric = evaluate(self.model, d.x_test, d.y_test, d, bs)
        self.wall_time += seconds
        self.iterations += iterations
        stats = self.optimizer.epoch_stats()
        skipped = sum(v for k, v in stats.items() if k.endswith("skipped"))
        row = {"epoch": epoch, "train_loss": train_loss, "train_metric": train_metric,
               "test_loss": test_loss, "test_metric": test_metric, "epoch_time_s": seconds,
               "wall_time_s": self.wall_time, "iterations": self.iterations,
               "param_updates": self.optimizer.param_updates, "skipped": skipped}
        row.update({k: v for k, v in stats.items() if k != "skipped"})
        return row

    def execute(self) -> dict:
        """Run all epochs; always leaves metrics.csv (rows so far) and summary.json behind."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.wall_time, self.iterations, self.consecutive_skips = 0.0, 0, 0
        try:
            self.setup()
            self.write()
            epochs = int(self.cfg["epochs"])
            per_epoch = -(-self.data.x_train.shape[0] // int(self.cfg["batch_size"]))
            with tqdm(total=epochs * per_epoch, disable=not self.cfg["progress"],
                      desc=f"{self.summary['label']} {self.summary['dataset']}",
                      unit="it", dynamic_ncols=True) as bar:
                for epoch in range(1, epochs + 1):
                    seconds, iterations = self.train_epoch(bar)
                    self.rows.append(self.epoch_row(epoch, seconds, iterations))
                    self.write()
                    last = self.rows[-1]
                    bar.set_postfix(epoch=epoch, test=f"{last['test_metric']:.3f}",
                                    loss=f"{last['train_loss']:.4f}")
            self.summary["status"] = STATUS_COMPLETED
        except Diverged as exc:
            self.summary.update(status=STATUS_DIVERGED, error=str(exc))
        except KeyboardInterrupt:
            self.summary.update(status=STATUS_INTERRUPTED, error="interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            self.summary.update(status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.write(final=True)
        return self.summary

    # --- records -------------------------------------------------------------------------------

    def write(self, final: bool = False) -> None:
        write_metrics(self.run_dir / "metrics.csv", self.rows)
        if self.rows:
            higher = self.summary.get("higher_is_better", True)
            pick = max if higher else min
            best = pick(self.rows, key=lambda r: r["test_metric"])
            last = self.rows[-1]
            self.summary.update(
                epochs_completed=last["epoch"],
                final={k: last[k] for k in ("train_loss", "train_metric", "test_loss",
                                            "test_metric")},
                best_test_metric=best["test_metric"], best_epoch=best["epoch"],
                wall_time_s=last["wall_time_s"], iterations=last["iterations"],
                param_updates=last["param_updates"])
            if final:
                self.plot()
        write_json(self.run_dir / "summary.json", self.summary)

    def plot(self) -> None:
        title = (f"{self.summary['label']} on {self.summary['dataset']} / "
                 f"{self.summary['model']}, seed {self.summary['seed']}")
        plot_learning_curves(self.rows, self.summary["metric"],
                             self.run_dir / "learning_curves.png", title)
        if isinstance(getattr(self, "optimizer", None), SAMT):
            plot_samt_steps(self.rows, len(self.optimizer.blocks),
                            self.run_dir / "samt_steps.png", title)


class Diverged(RuntimeError):
    """Too many consecutive non-finite iterations."""


def run_training(cfg: dict[str, Any], run_dir: Path) -> dict:
    """Train as ``cfg`` says and write the run folder; returns the summary."""
    return Run(cfg, run_dir).execute()
