"""SAMT's cost on real architectures: ResNet-20 and ResNet-18 (CIFAR input) against Adam.

Per-iteration time (median of interleaved rounds in one process, as scripts/bench.py) and peak
memory (tensor bytes allocated while building the optimizer and stepping) of SAMT-S and SAMT-E,
exact and hypergradient, with three block layouts:

- ``per layer``: one block per conv (with its BatchNorm) and the head (SAMT's default);
- ``per stage``: ``group_by`` each stage, the stem conv with the first stage (whose maps it
  works on; He et al. count it there), the head a block of its own;
- ``one block``: ``group_size 0``, the whole network.

Each layout also has SAMT's *skeleton* (``combine=fixed``: the same block alternation with a
fixed step, no eta model, no meta-gradient): the Gauss-Seidel floor of that layout. The share of
the eta model's meta-learning in a row is ``(row - skeleton) / row``. Targets, as ratios to
Adam in the same process: per stage <= 2.0x, one block <= 1.3x, peak memory <= 2.0x; per layer:
within 1.3x of its skeleton.

    python scripts/bench_resnet.py                          # ResNet-20, batch 128, 1 thread
    python scripts/bench_resnet.py --cases resnet20,resnet18 --rounds 2 --iters 1
    python scripts/bench_resnet.py --device cuda --cases resnet20,resnet18
Writes OUT/bench_resnet.csv.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import add_timing_arguments, profiled_peak, sync, time_case  # noqa: E402  (scripts/bench.py: the shared timing loop)

from samt.models import resnet, resnet18  # noqa: E402
from samt.optim import build_optimizer  # noqa: E402

SHAPE = (3, 32, 32)
CLASSES = 10
MODELS: dict[str, tuple[Callable[[], nn.Module], list[str]]] = {
    # name -> (factory, the per-stage layout's group_by: the stem joins the first stage)
    "resnet20": (lambda: resnet(SHAPE, CLASSES, depth=20), [["conv", "stage1"], "stage2",
                                                            "stage3"]),
    "resnet18": (lambda: resnet18(SHAPE, CLASSES), [["conv", "stage1"], "stage2", "stage3",
                                                    "stage4"]),
}
SKELETON = "skeleton"
SAMT_ROWS = {  # label -> SAMT options
    SKELETON: {"combine": "fixed", "meta_mode": "hypergradient"},
    "samt_s exact": {"step_type": "scalar", "meta_mode": "exact"},
    "samt_s hypergradient": {"step_type": "scalar", "meta_mode": "hypergradient"},
    "samt_e exact": {"step_type": "element", "meta_mode": "exact"},
    "samt_e hypergradient": {"step_type": "element", "meta_mode": "hypergradient"},
}
TIME_TARGETS = {"per stage": 2.0, "one block": 1.3}  # ratio to Adam
SKELETON_TARGET = 1.3   # per layer: ratio to the layout's skeleton
MEMORY_TARGET = 2.0     # peak memory, ratio to Adam's
FIELDS = ("model", "layout", "optimizer", "ms_per_iter", "ratio_to_adam", "ratio_to_skeleton",
          "meta_share", "peak_mib", "memory_ratio", "target", "met")


def layouts(stages: list[str]) -> dict[str, dict]:
    """Layout name -> the SAMT options that make it."""
    return {"per layer": {}, "per stage": {"group_by": stages}, "one block": {"group_size": 0}}


def grid(stages: list[str], layout_names: list[str]) -> dict[str, dict]:
    """Label (``<layout>: <row>``) -> ``build_optimizer`` options, Adam first."""
    out: dict[str, dict] = {"adam": {"name": "adam", "lr": 1e-3}}
    for layout, extra in layouts(stages).items():
        if layout in layout_names:
            for row, options in SAMT_ROWS.items():
                out[f"{layout}: {row}"] = {"name": "samt", **options, **extra}
    return out


def peak_memory(factory: Callable[[], nn.Module], options: dict, batch: int,
                device: torch.device, steps: int = 2) -> int:
    """Peak tensor bytes allocated while building the optimizer and running ``steps`` steps,
    on top of the model and the batch (CPU: torch.profiler's memory events in time order;
    CUDA: ``max_memory_allocated``)."""
    opts = dict(options)
    name = opts.pop("name")
    torch.manual_seed(0)
    x = torch.randn(batch, *SHAPE, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    model = factory().to(device)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        opt = build_optimizer(name, model, nn.functional.cross_entropy, **opts)
        for _ in range(steps):
            opt.step(x, y)
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    return profiled_peak(lambda: build_optimizer(name, model, nn.functional.cross_entropy,
                                                 **opts), x, y, steps)


def verdict(layout: str, row: str, ratio: float, to_skeleton: float | None
            ) -> tuple[str, bool | str]:
    """(target text, met) of a time row.

    A missed target in x Adam that the layout's skeleton misses too is unreachable by this
    block layout whatever the meta-learning costs; the text says so and gives the floor.
    """
    if row == SKELETON:
        return "", ""
    if layout == "per layer":
        return f"<= {SKELETON_TARGET}x skeleton", bool(to_skeleton is not None
                                                        and to_skeleton <= SKELETON_TARGET)
    target = TIME_TARGETS[layout]
    text = f"<= {target}x Adam"
    if to_skeleton:
        floor = ratio / to_skeleton
        if floor > target and ratio > target:
            text += f" (below the skeleton floor {floor:.2f}x: unreachable)"
    return text, ratio <= target


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every row of one model: time, ratios, meta share, memory, verdicts (printed as well)."""
    factory, stages = MODELS[name]
    labels = grid(stages, args.layouts.split(","))
    times, _ = time_case(factory, SHAPE, CLASSES, {}, labels, device, args.rounds, args.iters,
                         args.batch)
    memory = {label: peak_memory(factory, options, args.batch, device)
              for label, options in labels.items()} if not args.no_memory else {}
    rows = []
    for label, seconds in times.items():
        layout, _, row = label.partition(": ")
        skeleton = times.get(f"{layout}: {SKELETON}")
        to_skeleton = seconds / skeleton if skeleton and row else None
        target, met = verdict(layout, row, seconds / times["adam"], to_skeleton) if row \
            else ("", "")
        mem = memory.get(label)
        mem_ratio = mem / max(memory["adam"], 1) if mem is not None else None
        if mem_ratio is not None and row and row != SKELETON:
            met = bool(met) and mem_ratio <= MEMORY_TARGET
            target += f"; memory <= {MEMORY_TARGET}x Adam"
        rows.append({
            "model": name, "layout": layout if row else "", "optimizer": row or label,
            "ms_per_iter": 1e3 * seconds, "ratio_to_adam": seconds / times["adam"],
            "ratio_to_skeleton": to_skeleton if to_skeleton is not None else "",
            "meta_share": (seconds - skeleton) / seconds if skeleton and row
            and row != SKELETON else "",
            "peak_mib": mem / 2**20 if mem is not None else "",
            "memory_ratio": mem_ratio if mem_ratio is not None else "",
            "target": target, "met": met})
    return rows


def show(row: dict) -> str:
    """One printed line of a row."""
    def num(key: str, fmt: str) -> str:
        value = row[key]
        return format(value, fmt) if isinstance(value, float) else ""
    met = {True: "ok", False: "MISSED"}.get(row["met"], "")  # type: ignore[call-overload]
    return (f"{row['model']:<10}{row['layout']:<11}{row['optimizer']:<22}"
            f"{num('ms_per_iter', '9.1f'):>9}{num('ratio_to_adam', '8.2f'):>8}"
            f"{num('ratio_to_skeleton', '8.2f'):>8}{num('meta_share', '7.0%'):>7}"
            f"{num('peak_mib', '9.1f'):>9}{num('memory_ratio', '7.2f'):>7}  "
            f"{row['target']} {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="resnet20",
                        help="comma list of: resnet20, resnet18")
    parser.add_argument("--layouts", default="per layer,per stage,one block",
                        help="comma list of: per layer, per stage, one block")
    add_timing_arguments(parser, threads=1, rounds=3, iters=2)
    parser.add_argument("--no-memory", action="store_true", help="time only")
    args = parser.parse_args()
    unknown = set(args.cases.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {args.threads} thread(s)")
    print(f"per-iteration time, median of {args.rounds} interleaved rounds x {args.iters} "
          f"iterations, batch {args.batch}, input {SHAPE}; {where}")
    print(f"{'model':<10}{'layout':<11}{'optimizer':<22}{'ms/iter':>9}{'x Adam':>8}"
          f"{'x skel':>8}{'meta':>7}{'peak MiB':>9}{'x Adam':>7}  target")
    rows = []
    for name in args.cases.split(","):
        for row in bench_model(name, args, device):
            print(show(row), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_resnet.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out / 'bench_resnet.csv'}")


if __name__ == "__main__":
    main()
