"""Runner overhead: an Adam epoch through ``samt.train.Run`` vs a bare hand-written loop.

Same preloaded tensors, same model and optimizer settings, one process, interleaved rounds after
a warm-up; prints the median epoch time of each and their ratio (target: runner <= 1.15x).

    python scripts/bench_runner.py [--dataset mnist] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from torch import nn
from tqdm import tqdm

from samt.models import mlp
from samt.train import Run


def bare_epoch(x: torch.Tensor, y: torch.Tensor, batch: int, gen: torch.Generator) -> float:
    """The loop a researcher would write by hand: shuffle, slice, forward, backward, Adam."""
    model = mlp(x.shape[1:], 10, [400])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(x.shape[0], generator=gen)
    start = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        idx = perm[i:i + batch]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - start


def runner_epoch(cfg: dict, folder: Path, progress: bool) -> float:
    run = Run(cfg, folder)
    run.setup()
    run.consecutive_skips = 0
    with open(os.devnull, "w") as sink, tqdm(total=len(range(0, run.data.x_train.shape[0],
                                                              cfg["batch_size"])),
                                              disable=not progress, file=sink) as bar:
        seconds, _ = run.train_epoch(bar)
    return seconds


def measure(dataset: str, rounds: int, threads: int, data_root: str) -> dict[str, float]:
    """Median epoch seconds of the bare loop, the runner, and the runner with its progress bar."""
    torch.set_num_threads(threads)
    cfg = {"dataset": {"name": dataset}, "model": {"name": "mlp", "hidden": [400]},
           "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "name": "adam",
                         "label": "adam", "lr": 1e-3}, "seed": 0, "epochs": 1,
           "batch_size": 128, "eval_batch_size": 4096, "progress": False,
           "max_consecutive_skips": 50, "device": {"type": "cpu", "threads": threads},
           "data": {"root": data_root, "download": False}}
    with TemporaryDirectory() as tmp:
        probe = Run(cfg, Path(tmp))
        probe.setup()
        x, y = probe.data.x_train, probe.data.y_train
        gen = torch.Generator().manual_seed(0)
        times: dict[str, list[float]] = {"bare loop": [], "runner": [], "runner + tqdm": []}
        for round_ in range(rounds + 1):  # round 0 is the warm-up
            sample = {"bare loop": bare_epoch(x, y, 128, gen),
                      "runner": runner_epoch(cfg, Path(tmp), progress=False),
                      "runner + tqdm": runner_epoch(cfg, Path(tmp), progress=True)}
            if round_:
                for key, value in sample.items():
                    times[key].append(value)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=os.environ.get("SAMT_DATA_ROOT", "data"))
    args = parser.parse_args()
    medians = measure(args.dataset, args.rounds, args.threads, args.data_root)
    base = medians["bare loop"]
    print(f"{'loop':<16}{'median epoch s':>16}{'ratio':>8}   (Adam, {args.dataset} MLP-400, "
          f"batch 128, {args.threads} threads, {args.rounds} interleaved rounds)")
    for key, median in medians.items():
        print(f"{key:<16}{median:>16.3f}{median / base:>8.3f}")
    print("target: runner <= 1.15x the bare loop")


if __name__ == "__main__":
    main()
