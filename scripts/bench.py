"""Benchmark harness: per-iteration time and peak memory of SAMT variants vs Adam and SGD.

One process, synthetic tensors in the real shapes, warm-up, then interleaved rounds (every
optimizer runs a few iterations per round, in turn); the median over rounds is reported as a
ratio to Adam measured in the same rounds. Peak memory is the peak of tensor bytes allocated
while building the optimizer and stepping (torch.profiler memory events on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA).

    python scripts/bench.py                      # all cases, CPU, 2 threads
    python scripts/bench.py --cases mnist --rounds 5 --device cuda
    python scripts/bench.py --before results/bench/before/bench.csv   # plot "before" too
    python scripts/bench.py --cases mnist --no-compile       # without the compiled SAMT rows
The MNIST case also times SAMT with ``compile=True`` (rows ``... compiled``): their compile time
(the first steps' time beyond the steady state; inductor's on-disk cache, TORCHINDUCTOR_CACHE_DIR,
makes it shorter on a later run) is reported apart, in column ``compile_s``.
Writes OUT/bench.csv and OUT/depth.png (ratio vs depth; with ``--before``, dashed lines from an
earlier bench.csv, e.g. one written by this script run on an older checkout via PYTHONPATH).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from samt.models import cnn, mlp
from samt.optim import build_optimizer

TARGETS = {  # (case, optimizer label) -> target ratio to Adam
    ("mnist_mlp400", "samt_e hypergradient"): 1.25,
    ("mnist_mlp400", "samt_e exact"): 2.0,
    ("mnist_mlp400", "samt_s exact"): 1.8,
    ("mnist_mlp400", "samt_e hypergradient compiled"): 1.25,
    ("mnist_mlp400", "samt_e exact compiled"): 2.0,
    ("mnist_mlp400", "samt_s exact compiled"): 1.8,
    ("depth16_gs4", "samt_e hypergradient"): 2.5,
    ("depth16_gs1", "samt_e hypergradient"): 3.0,
    **{("cnn_32x32x3", f"samt_{t} hypergradient"): 1.2 for t in "serc"},
}
MEMORY_CASES = {  # label -> (build_optimizer options, target peak memory / Adam's), MLP-400
    "adam": ({"name": "adam", "lr": 1e-3}, None),
    "samt_e exact": ({"name": "samt", "step_type": "element", "meta_mode": "exact"}, 2.0),
    "samt_e hypergradient": ({"name": "samt", "step_type": "element",
                              "meta_mode": "hypergradient"}, 2.0),
    "samt_e hypergradient, sgd meta": ({"name": "samt", "step_type": "element",
                                        "meta_mode": "hypergradient", "meta_optimizer": "sgd"},
                                       1.5),
}
COMPILED = ("samt_e exact", "samt_e hypergradient", "samt_s exact")  # also with compile=True
PASS = "one weight pass"  # one in-place pass over the largest weight: the unit of element-wise work
SKELETON = "samt skeleton"  # SAMT with combine=fixed (see optimizer_grid)
FIRST_STEPS = 3  # timed one by one before the rounds: the compiled rows compile in these
FIELDS = ("case", "optimizer", "ms_per_iter", "ratio_to_adam", "target", "met", "compile_s")
DEPTHS = (2, 4, 8, 16, 32)
GROUPS = (1, 4, 0)  # group_size 0: the whole model is one block


def optimizer_grid(depth_case: bool, compiled: bool = False) -> dict[str, dict]:
    """Label -> build_optimizer options; ``compiled``: the ``COMPILED`` ones with
    ``compile=True`` too (``<label> compiled``)."""
    grid: dict[str, dict] = {"adam": {"name": "adam", "lr": 1e-3}}
    if not depth_case:
        grid["sgd"] = {"name": "sgd", "lr": 0.1}
        grid[PASS] = {"name": "pass"}
    # SAMT's skeleton: the same block alternation (passes, features, one sync per block) with a
    # fixed step, no eta model and no meta-update; what every SAMT row pays before meta-learning
    grid[SKELETON] = {"name": "samt", "combine": "fixed", "meta_mode": "hypergradient"}
    types = ("element",) if depth_case else ("scalar", "element", "row", "column")
    for step_type in types:
        for mode in ("exact", "hypergradient"):
            grid[f"samt_{step_type[0]} {mode}"] = {"name": "samt", "step_type": step_type,
                                                   "meta_mode": mode}
    if not depth_case:  # our variants (not in the paper): per-layer hypergradient, SGD meta
        hd = {"name": "samt", "step_type": "scalar", "meta_mode": "hypergradient",
              "meta_optimizer": "sgd", "meta_lr": 0.1, "eta0": 0.3, "eta_max": 1.0}
        grid["samt_s_hd"] = hd
    if compiled:
        grid.update({f"{label} compiled": {**grid[label], "compile": True} for label in COMPILED})
    return grid


def cases(selected: set[str]) -> list[tuple[str, Callable[[], nn.Module], tuple, int, dict]]:
    """(name, model factory, input shape, classes, extra optimizer options)."""
    out = []
    if "mnist" in selected:
        out.append(("mnist_mlp400", lambda: mlp((1, 28, 28), 10, [400]), (1, 28, 28), 10, {}))
    if "cnn" in selected:
        out.append(("cnn_32x32x3", lambda: cnn((3, 32, 32), 10), (3, 32, 32), 10, {}))
    if "depth" in selected:
        for depth in DEPTHS:
            for group in GROUPS:
                out.append((f"depth{depth}_gs{group}",
                            lambda d=depth: mlp((256,), 10, [256] * d), (256,), 10,
                            {"group_size": group}))
    return out


class WeightPass:
    """Stand-in stepper timed in the same rounds: one in-place element-wise pass
    (``w += 1e-12 g``) over a copy of the model's largest weight, the unit in which
    docs/performance.md counts SAMT-E's element-wise work."""

    def __init__(self, model: nn.Module):
        weight = max(model.parameters(), key=lambda p: p.numel())
        self.w = weight.detach().clone()
        self.g = torch.randn_like(self.w)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.w.add_(self.g, alpha=1e-12)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_case(factory, shape, classes, extra, grid, device, rounds, iters, batch):
    """Median seconds per iteration of every optimizer in ``grid``, interleaved rounds, and the
    time of its first ``FIRST_STEPS`` steps beyond that many steady-state ones (compile time)."""
    torch.manual_seed(0)
    x = torch.randn(batch * iters, *shape, device=device)
    y = torch.randint(0, classes, (batch * iters,), device=device)
    steppers = {}
    for label, options in grid.items():
        opts = dict(options)
        name = opts.pop("name")
        if name == "pass":
            steppers[label] = WeightPass(factory().to(device))
            continue
        if name == "samt":
            opts.update(extra)
        steppers[label] = build_optimizer(name, factory().to(device),
                                          nn.functional.cross_entropy, **opts)
    samples: dict[str, list[float]] = {label: [] for label in grid}
    first: dict[str, float] = {}
    for label, stepper in steppers.items():  # compile (the compiled rows), before any round
        sync(device)
        start = time.perf_counter()
        for i in range(FIRST_STEPS):
            stepper.step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
        sync(device)
        first[label] = time.perf_counter() - start
    for round_ in range(rounds + 1):  # round 0 warms up
        for label, stepper in steppers.items():
            sync(device)
            start = time.perf_counter()
            for i in range(iters):
                stepper.step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            sync(device)
            if round_:
                samples[label].append((time.perf_counter() - start) / iters)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    return medians, {label: max(0.0, first[label] - FIRST_STEPS * medians[label])
                     for label in grid}


def peak_memory_cpu(options: dict, threads: int) -> int:
    """Peak tensor bytes allocated while building the optimizer and running 5 steps.

    From ``torch.profiler`` memory events in time order (on top of the model and the batch,
    which exist before): optimizer state, gradients, graphs and temporaries.
    """
    opts = dict(options)
    name = opts.pop("name")
    torch.manual_seed(0)
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))
    model = mlp((1, 28, 28), 10, [400])
    return profiled_peak(lambda: build_optimizer(name, model, nn.functional.cross_entropy,
                                                 **opts), x, y, 5)


def profiled_peak(build: Callable[[], object], x: torch.Tensor, y: torch.Tensor,
                  steps: int) -> int:
    """Peak tensor bytes allocated on the CPU while ``build()`` makes an optimizer and it takes
    ``steps`` steps on ``(x, y)``: ``torch.profiler``'s memory events summed in time order."""
    from torch.profiler import profile

    with profile(profile_memory=True) as prof:
        opt = build()
        for _ in range(steps):
            opt.step(x, y)
    current = peak = 0
    for _, size in sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()):
        current += size
        peak = max(peak, current)
    return peak


def peak_memory_cuda(options: dict, device: torch.device) -> int:
    """As ``peak_memory_cpu``: peak bytes on top of the model and the batch, 5 steps."""
    opts = dict(options)
    name = opts.pop("name")
    torch.manual_seed(0)
    x = torch.randn(128, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    model = mlp((1, 28, 28), 10, [400]).to(device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    opt = build_optimizer(name, model, nn.functional.cross_entropy, **opts)
    for _ in range(5):
        opt.step(x, y)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def depth_points(rows: list[dict], group: int, label: str) -> list[tuple[int, float]]:
    """(hidden layers, ratio to Adam) of optimizer ``label`` with ``group_size=group``."""
    return sorted((int(r["case"][5:].split("_")[0]), float(r["ratio_to_adam"])) for r in rows
                  if r["case"].startswith("depth") and r["case"].endswith(f"_gs{group}")
                  and r["optimizer"] == label)


def plot_depth(rows: list[dict], path: Path, before: list[dict] | None = None) -> None:
    """Ratio to Adam vs depth, one panel per meta mode: colour = ``group_size``, line style =
    ``before`` rows (dashed), these rows (solid), SAMT's skeleton (``combine=fixed``, no
    meta-learning; dotted). One legend below the panels; plain-number ticks on both log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True, layout="constrained")
    colors = {1: "tab:red", 4: "tab:blue", 0: "tab:green"}
    styles = {"before": "--", "after": "-", "skeleton": ":"}
    ratios: list[float] = []
    for ax, mode in zip(axes, ("hypergradient", "exact"), strict=True):
        for group in GROUPS:
            for data, tag, label in ((before, "before", f"samt_e {mode}"),
                                     (rows, "after", f"samt_e {mode}"),
                                     (rows, "skeleton", SKELETON)):
                pts = depth_points(data or [], group, label)
                if pts:
                    ratios += [r for _, r in pts]
                    ax.plot(*zip(*pts, strict=True), styles[tag], marker="o",
                            color=colors[group], alpha=1.0 if tag == "after" else 0.5)
        ax.set(xlabel="hidden layers (width 256)", title=f"SAMT-E {mode}", xscale="log",
               yscale="log")
        ax.set_xticks(list(DEPTHS), labels=[str(d) for d in DEPTHS])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3, which="major")
    ticks = [t for t in (0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 50)
             if ratios and min(ratios) / 1.2 <= t <= max(ratios) * 1.2]
    axes[0].yaxis.set_major_locator(FixedLocator(ticks))
    axes[0].yaxis.set_major_formatter(lambda v, _: f"{v:g}x")
    axes[0].yaxis.set_minor_locator(NullLocator())
    axes[0].set_ylabel("time per iteration / Adam (same process)")
    handles = [Line2D([], [], color=c, marker="o", label=f"group_size {g}"
                      + (" (one block)" if g == 0 else ""))
               for g, c in colors.items() if g in GROUPS]
    handles += [Line2D([], [], color="black", linestyle=styles[t], label=text)
                for t, text in (("after", "this code"), ("before", "before the batched meta "
                                "step (--before)"), ("skeleton", "skeleton: no meta-learning"))
                if t != "before" or before]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def runner_overhead(threads: int) -> list[dict]:
    """Adam epoch through the runner vs a bare loop (scripts/bench_runner.py), MNIST MLP-400."""
    spec = importlib.util.spec_from_file_location(
        "bench_runner", Path(__file__).with_name("bench_runner.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    medians = module.measure("mnist", 3, threads, os.environ.get("SAMT_DATA_ROOT", "data"))
    base = medians["bare loop"]
    rows = []
    for label, seconds in medians.items():
        ratio = seconds / base
        target = 1.15 if label == "runner" else None
        print(f"runner epoch  {label:<24}{seconds:>8.2f}s{ratio:>8.2f}"
              + ("" if target is None else f"{target:>7.2f}" + (" ok" if ratio <= target
                                                               else " MISSED")))
        rows.append({"case": "runner_epoch_vs_bare_loop", "optimizer": label,
                     "ms_per_iter": "", "ratio_to_adam": ratio, "target": target or "",
                     "met": "" if target is None else ratio <= target, "compile_s": ""})
    return rows


def add_timing_arguments(parser: argparse.ArgumentParser, threads: int, rounds: int,
                         iters: int) -> None:
    """The options every bench script takes: device, threads, rounds, iterations, batch, out."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--iters", type=int, default=iters, help="iterations per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", default="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="mnist,cnn,depth,runner",
                        help="comma list of: mnist, cnn, depth, runner (needs MNIST data)")
    add_timing_arguments(parser, threads=2, rounds=7, iters=10)
    parser.add_argument("--before", default=None,
                        help="an earlier bench.csv: its depth rows are drawn dashed in depth.png")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the compiled SAMT rows of the mnist case (compile=True; "
                             "they cost about 20 s of compilation with a cold inductor cache)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {args.threads} threads")
    print(f"per-iteration time, median of {args.rounds} interleaved rounds x {args.iters} "
          f"iterations, batch {args.batch}; {where}")
    print(f"{'case':<14}{'optimizer':<30}{'ms/iter':>9}{'x Adam':>8}{'target':>8}"
          f"{'compile s':>11}")
    for name, factory, shape, classes, extra in cases(set(args.cases.split(","))):
        grid = optimizer_grid(name.startswith("depth"),
                              compiled=name == "mnist_mlp400" and not args.no_compile)
        times, compile_s = time_case(factory, shape, classes, extra, grid, device, args.rounds,
                                     args.iters, args.batch)
        for label, seconds in times.items():
            ratio = seconds / times["adam"]
            target = TARGETS.get((name, label))
            compiled = grid[label].get("compile", False)
            rows.append({"case": name, "optimizer": label, "ms_per_iter": 1e3 * seconds,
                         "ratio_to_adam": ratio, "target": target or "",
                         "met": "" if target is None else ratio <= target,
                         "compile_s": compile_s[label] if compiled else ""})
            mark = "" if target is None else f"{target:>7.2f}" + (" ok" if ratio <= target
                                                                 else " MISSED")
            print(f"{name:<14}{label:<30}{1e3 * seconds:>9.2f}{ratio:>8.2f}{mark:>8}"
                  + (f"{compile_s[label]:>11.1f}" if compiled else ""))
    if "mnist" in args.cases:
        memory = {label: (peak_memory_cuda(opts, device) if device.type == "cuda"
                          else peak_memory_cpu(opts, args.threads))
                  for label, (opts, _) in MEMORY_CASES.items()}
        for label, peak in memory.items():
            ratio = peak / max(memory["adam"], 1)
            target = MEMORY_CASES[label][1]
            print(f"memory {label:<32} peak +{peak / 2**20:6.2f} MiB {ratio:5.2f}x Adam"
                  + ("" if target is None else f"  target {target}"
                     + (" ok" if ratio <= target else " MISSED")))
            rows.append({"case": "mnist_mlp400_memory", "optimizer": label,
                         "ms_per_iter": "", "ratio_to_adam": ratio, "target": target or "",
                         "met": "" if target is None else ratio <= target, "compile_s": ""})
    if "runner" in args.cases:
        rows += runner_overhead(args.threads)
    with open(out / "bench.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    if "depth" in args.cases:
        before = None
        if args.before and Path(args.before).is_file():
            with open(args.before, newline="") as fh:
                before = list(csv.DictReader(fh))
        plot_depth(rows, out / "depth.png", before)
    print(f"wrote {out / 'bench.csv'}" + (f" and {out / 'depth.png'}" if "depth" in args.cases
                                          else ""))


if __name__ == "__main__":
    main()
