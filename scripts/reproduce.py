"""Reproduce a paper table by the tuning protocol of docs/tuning.md, then report it.

    python scripts/reproduce.py EXPERIMENT [HYDRA_OVERRIDE ...] [--jobs N] [--out DIR]

0. Source (only when the preset's ``tuning`` block has a ``source``): one run whose folder the
   variants' overrides can name as ``{source}``, e.g. ``optimizer.meta_init={source}`` for
   eta-model transfer (``conf/experiment/transfer.yaml``).
1. Grid: for every dataset and optimizer of the preset's ``tuning`` block, one run per grid
   value of the optimizer's step-size key (``lr`` or ``eta0``) with ``tuning.grid_seed``.
2. Choice: per dataset and optimizer, the grid value with the best final test metric.
3. Final: the chosen value with every seed of ``tuning.seeds``.
4. Report: ``samt-report`` over the final runs into ``results/EXPERIMENT`` (or ``--out``), plus
   ``tuning.md`` with the grid results, the chosen values and the commands.

An entry of ``tuning.optimizers`` is named after an optimizer config (``adam: {key: lr, grid:
[...]}``), or is a *variant* with its own name: ``optimizer:`` names the config, ``overrides:``
adds Hydra overrides, and the run's ``optimizer.label`` is the variant's name, e.g.
``samt_e_no_norm: {optimizer: samt_e, key: eta0, grid: [0.1], overrides:
["optimizer.features=[mean,var,max,min]"]}``. A grid of one value means no grid runs.

Runs go to ``runs/EXPERIMENT/{source,grid,final}/...``; a run whose folder already holds a
completed ``summary.json`` is not run again, so an interrupted reproduction continues where it
stopped. Extra arguments are Hydra overrides for every run, e.g. ``epochs=3`` for a quick CPU
check.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]
SOURCE = "{source}"   # placeholder in a variant's overrides: the source run's folder


@dataclass(frozen=True)
class Variant:
    """One entry of ``tuning.optimizers``."""

    name: str                      # folder names; the label too when ``is_variant``
    optimizer: str                 # the optimizer config (conf/optimizer/)
    key: str                       # the step-size key of the grid
    grid: tuple
    tied: dict = field(default_factory=dict, hash=False)
    overrides: tuple[str, ...] = ()
    is_variant: bool = False       # has its own name: sets optimizer.label=<name>


@dataclass(frozen=True)
class Job:
    """One ``samt-run`` invocation: its run folder and its overrides."""

    folder: Path
    args: tuple[str, ...]


def load_protocol(experiment: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])
    tuning = OmegaConf.to_container(cfg.tuning, resolve=True)
    if not tuning:
        raise SystemExit(f"experiment {experiment!r} has no tuning block (conf/experiment/)")
    return tuning


def variants(protocol: dict) -> list[Variant]:
    out = []
    for name, spec in protocol["optimizers"].items():
        is_variant = "optimizer" in spec or "overrides" in spec
        out.append(Variant(name=name, optimizer=spec.get("optimizer", name), key=spec["key"],
                           grid=tuple(spec["grid"]), tied=dict(spec.get("tied") or {}),
                           overrides=tuple(spec.get("overrides") or ()),
                           is_variant=is_variant))
    return out


def run_folder(root: Path, dataset: str, optimizer: str, key: str, value, seed: int) -> Path:
    return root / f"{dataset}_{optimizer}_{key}{value}_s{seed}"


def source_folder(runs: Path, protocol: dict) -> Path | None:
    src = protocol.get("source")
    if not src:
        return None
    return runs / "source" / f"{src['dataset']}_{src['optimizer']}_s{src['seed']}"


def _override_value(path: Path) -> str:
    """A path as a Hydra override value (quoted when it holds characters the grammar reserves)."""
    text = str(path)
    if re.fullmatch(r"[\w/.\-+:~]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _common(folder: Path, overrides: list[str]) -> list[str]:
    return ["progress=false", "device=cpu", "device.threads=1", f"hydra.run.dir={folder}",
            *overrides]


def source_job(experiment: str, protocol: dict, runs: Path, overrides: list[str]) -> Job | None:
    """The source run (stage 0): ``tuning.source`` = dataset, optimizer, seed, [overrides]."""
    folder = source_folder(runs, protocol)
    if folder is None:
        return None
    src = protocol["source"]
    args = [f"experiment={experiment}", f"dataset={src['dataset']}",
            f"optimizer={src['optimizer']}", f"seed={src['seed']}",
            *_common(folder, overrides), *(src.get("overrides") or ())]
    return Job(folder, tuple(args))


def job(root: Path, experiment: str, dataset: str, variant: Variant, value, seed: int,
        overrides: list[str], source: Path | None) -> Job:
    """The run of ``variant`` at grid ``value`` and ``seed`` on ``dataset``, in ``root``."""
    folder = run_folder(root, dataset, variant.name, variant.key, value, seed)
    extra = [f"optimizer.label={variant.name}"] if variant.is_variant else []
    for override in variant.overrides:
        if SOURCE in override:
            if source is None:
                raise SystemExit(f"tuning.optimizers.{variant.name}: {override!r} names "
                                 f"{SOURCE} but the preset has no tuning.source")
            override = override.replace(SOURCE, _override_value(source))
        extra.append(override)
    args = [f"experiment={experiment}", f"dataset={dataset}", f"optimizer={variant.optimizer}",
            f"optimizer.{variant.key}={value}",
            *(f"optimizer.{k}={value * r:g}" for k, r in variant.tied.items()),
            *extra, f"seed={seed}", *_common(folder, overrides)]
    return Job(folder, tuple(args))


def grid_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str]) -> list[Job]:
    """Stage 1: every grid value of every variant with more than one, per dataset."""
    source = source_folder(runs, protocol)
    return [job(runs / "grid", experiment, dataset, v, value, protocol["grid_seed"], overrides,
                source)
            for dataset in protocol["datasets"] for v in variants(protocol)
            if len(v.grid) > 1 for value in v.grid]


def final_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str],
               chosen: dict[tuple[str, str], object] | None = None) -> list[Job]:
    """Stage 3: every seed at the chosen value per (dataset, variant name); by default (for
    planning) a single-value grid's value and a grid's first value."""
    source = source_folder(runs, protocol)
    by_name = {v.name: v for v in variants(protocol)}
    if chosen is None:
        chosen = {(d, v.name): v.grid[0] for d in protocol["datasets"] for v in by_name.values()}
    return [job(runs / "final", experiment, dataset, by_name[name], value, seed, overrides,
                source)
            for (dataset, name), value in chosen.items() for seed in protocol["seeds"]]


def planned_jobs(experiment: str, protocol: dict, runs: Path,
                 overrides: list[str]) -> list[Job]:
    """Every run a reproduction would start (finals at the default choice): for checks."""
    src = source_job(experiment, protocol, runs, overrides)
    return ([src] if src else []) + grid_jobs(experiment, protocol, runs, overrides) + \
        final_jobs(experiment, protocol, runs, overrides)


def completed(folder: Path) -> bool:
    summary = folder / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "completed"


def launch(job: Job, log: list[str]) -> subprocess.Popen | None:
    """Start one run in the background unless its folder already holds a completed run."""
    if completed(job.folder):
        return None
    log.append("samt-run " + " ".join(shlex.quote(a) for a in job.args))
    job.folder.parent.mkdir(parents=True, exist_ok=True)
    out = open(job.folder.parent / f"{job.folder.name}.log", "w")  # noqa: SIM115 (child closes)
    return subprocess.Popen([*RUN, *job.args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def run_all(jobs: list[Job], workers: int, log: list[str]) -> None:
    """Run the jobs, ``workers`` at a time, each on one thread."""
    running: list[subprocess.Popen] = []
    for job in jobs:
        while len(running) >= workers:
            running[0].wait()
            running = [p for p in running if p.poll() is None]
        proc = launch(job, log)
        if proc is not None:
            running.append(proc)
        print(f"  {job.folder.name}: {'running' if proc else 'done before'}", flush=True)
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
    experiment, overrides = args.experiment, args.overrides
    lines: list[str] = []

    source = source_job(experiment, protocol, runs, overrides)
    if source is not None:
        print(f"source: {source.folder}")
        run_all([source], 1, log)
        if not completed(source.folder):
            raise SystemExit(f"the source run did not complete; see {source.folder}.log and "
                             f"{source.folder}/summary.json")
        lines += [f"Source run (its folder is `{SOURCE}` in the variants' overrides): "
                  f"`{source.folder.name}`", ""]

    print(f"grid: {runs / 'grid'}")
    run_all(grid_jobs(experiment, protocol, runs, overrides), args.jobs, log)

    chosen: dict[tuple[str, str], object] = {}
    lines += ["| dataset | optimizer | key | grid: final test metric (seed "
              f"{protocol['grid_seed']}) | chosen |", "|---|---|---|---|---|"]
    for dataset in protocol["datasets"]:
        for v in variants(protocol):
            if len(v.grid) == 1:
                chosen[(dataset, v.name)] = v.grid[0]
                lines.append(f"| {dataset} | {v.name} | {v.key} | fixed by the preset | "
                             f"{v.grid[0]} |")
                continue
            scores = {}
            for value in v.grid:
                folder = run_folder(runs / "grid", dataset, v.name, v.key, value,
                                    protocol["grid_seed"])
                scores[value], higher = final_metric(folder)
            valid = {value: s for value, s in scores.items() if s is not None}
            if not valid:
                print(f"  {dataset} {v.name}: every grid run failed; skipped")
                continue
            best = (max if higher else min)(valid, key=valid.get)
            chosen[(dataset, v.name)] = best
            cells = ", ".join(f"{value}: {'failed' if s is None else f'{s:.2f}'}"
                              for value, s in scores.items())
            lines.append(f"| {dataset} | {v.name} | {v.key} | {cells} | {best} |")

    print(f"final: {runs / 'final'}")
    run_all(final_jobs(experiment, protocol, runs, overrides, chosen), args.jobs, log)

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
