"""Reproduce a paper table by the tuning protocol of docs/tuning.md, then report it.

    python scripts/reproduce.py EXPERIMENT [HYDRA_OVERRIDE ...] [--jobs N] [--out DIR]

1. Grid: for every dataset and optimizer of the preset's ``tuning`` block, one run per grid
   value of the optimizer's step-size key (``lr`` or ``eta0``) with ``tuning.grid_seed``.
2. Choice: per dataset and optimizer, the grid value with the best final test metric.
3. Final: the chosen value with every seed of ``tuning.seeds``.
4. Report: ``samt-report`` over the final runs into ``results/EXPERIMENT`` (or ``--out``), plus
   ``tuning.md`` with the grid results, the chosen values and the commands.

Runs go to ``runs/EXPERIMENT/{grid,final}/...``; a run whose folder already holds a completed
``summary.json`` is not run again, so an interrupted reproduction continues where it stopped.
Extra arguments are Hydra overrides for every run, e.g. ``epochs=3`` for a quick CPU check.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]


def load_protocol(experiment: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])
    tuning = OmegaConf.to_container(cfg.tuning, resolve=True)
    if not tuning:
        raise SystemExit(f"experiment {experiment!r} has no tuning block (conf/experiment/)")
    return tuning


def run_folder(root: Path, dataset: str, optimizer: str, key: str, value, seed: int) -> Path:
    return root / f"{dataset}_{optimizer}_{key}{value}_s{seed}"


def completed(folder: Path) -> bool:
    summary = folder / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "completed"


def launch(folder: Path, experiment: str, dataset: str, optimizer: str, key: str, value,
           tied: dict[str, float], seed: int, overrides: list[str],
           log: list[str]) -> subprocess.Popen | None:
    """Start one run in the background unless its folder already holds a completed run."""
    if completed(folder):
        return None
    args = [f"experiment={experiment}", f"dataset={dataset}", f"optimizer={optimizer}",
            f"optimizer.{key}={value}", *(f"optimizer.{k}={value * r:g}" for k, r in tied.items()),
            f"seed={seed}", "progress=false", "device=cpu",
            "device.threads=1", f"hydra.run.dir={folder}", *overrides]
    log.append("samt-run " + " ".join(shlex.quote(a) for a in args))
    folder.parent.mkdir(parents=True, exist_ok=True)
    out = open(folder.parent / f"{folder.name}.log", "w")  # noqa: SIM115 (closed by the child)
    return subprocess.Popen([*RUN, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def run_all(jobs: list[tuple], workers: int) -> None:
    """Run ``(folder, launch-args)`` jobs, ``workers`` at a time, each on one thread."""
    running: list[subprocess.Popen] = []
    for job in jobs:
        while len(running) >= workers:
            running[0].wait()
            running = [p for p in running if p.poll() is None]
        proc = launch(*job)
        if proc is not None:
            running.append(proc)
        print(f"  {job[0].name}: {'running' if proc else 'done before'}", flush=True)
    for proc in running:
        proc.wait()


def final_metric(folder: Path) -> tuple[float | None, bool]:
    if not completed(folder):
        return None, True
    summary = json.loads((folder / "summary.json").read_text())
    return summary["final"]["test_metric"], bool(summary["higher_is_better"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--out", default=None, help="report folder (default results/EXPERIMENT)")
    parser.add_argument("--runs", default=None, help="run folders (default runs/EXPERIMENT)")
    args = parser.parse_args()
    protocol = load_protocol(args.experiment, args.overrides)
    runs = Path(args.runs or REPO / "runs" / args.experiment).resolve()
    out = Path(args.out or REPO / "results" / args.experiment).resolve()
    log: list[str] = []
    common = (args.experiment,)

    print(f"grid: {runs / 'grid'}")
    grid_jobs = []
    for dataset in protocol["datasets"]:
        for opt, spec in protocol["optimizers"].items():
            if len(spec["grid"]) == 1:  # nothing to choose: no grid run
                continue
            for value in spec["grid"]:
                seed = protocol["grid_seed"]
                folder = run_folder(runs / "grid", dataset, opt, spec["key"], value, seed)
                grid_jobs.append((folder, *common, dataset, opt, spec["key"], value,
                                  spec.get("tied", {}), seed, args.overrides, log))
    run_all(grid_jobs, args.jobs)

    chosen: dict[tuple[str, str], tuple] = {}
    lines = ["| dataset | optimizer | key | grid: final test metric (seed "
             f"{protocol['grid_seed']}) | chosen |", "|---|---|---|---|---|"]
    for dataset in protocol["datasets"]:
        for opt, spec in protocol["optimizers"].items():
            if len(spec["grid"]) == 1:
                chosen[(dataset, opt)] = (spec["key"], spec["grid"][0], spec.get("tied", {}))
                lines.append(f"| {dataset} | {opt} | {spec['key']} | fixed by the preset | "
                             f"{spec['grid'][0]} |")
                continue
            scores = {}
            for value in spec["grid"]:
                folder = run_folder(runs / "grid", dataset, opt, spec["key"], value,
                                    protocol["grid_seed"])
                scores[value], higher = final_metric(folder)
            valid = {v: s for v, s in scores.items() if s is not None}
            if not valid:
                print(f"  {dataset} {opt}: every grid run failed; skipped")
                continue
            best = (max if higher else min)(valid, key=valid.get)
            chosen[(dataset, opt)] = (spec["key"], best, spec.get("tied", {}))
            cells = ", ".join(f"{v}: {'failed' if s is None else f'{s:.2f}'}"
                              for v, s in scores.items())
            lines.append(f"| {dataset} | {opt} | {spec['key']} | {cells} | {best} |")

    print(f"final: {runs / 'final'}")
    final_jobs = []
    for (dataset, opt), (key, value, tied) in chosen.items():
        for seed in protocol["seeds"]:
            folder = run_folder(runs / "final", dataset, opt, key, value, seed)
            final_jobs.append((folder, *common, dataset, opt, key, value, tied, seed,
                               args.overrides, log))
    run_all(final_jobs, args.jobs)

    subprocess.run([sys.executable, "-m", "samt.report.cli", str(runs / "final"), "--out",
                    str(out), "--columns", "per-row"], check=True)
    command = " ".join(["python scripts/reproduce.py", args.experiment, *args.overrides])
    (out / "tuning.md").write_text(
        f"# Tuning record: {args.experiment}\n\nReproduce: `{command}`\n\n"
        "Protocol: docs/tuning.md. Grid runs choose each optimizer's step size per dataset by "
        "the final test metric; the final runs use other seeds.\n\n" + "\n".join(lines)
        + "\n\nRuns launched by this invocation:\n\n```\n" + "\n".join(log) + "\n```\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
