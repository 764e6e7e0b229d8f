"""Reproduce a paper table by the tuning protocol of docs/tuning.md, then report it.

    python scripts/reproduce.py EXPERIMENT [HYDRA_OVERRIDE ...] [--jobs N] [--out DIR]

0. Source (only when the preset's ``tuning`` block has a ``source``): one run whose folder the
   variants' overrides can name as ``{source}``, e.g. ``optimizer.meta_init={source}`` for
   eta-model transfer (``conf/experiment/transfer.yaml``).
1. Grid: for every dataset and optimizer of the preset's ``tuning`` block, one run per grid
   value of the optimizer's step-size key (``lr``; ``eta_max`` for SAMT, with ``eta0`` tied
   below it) with ``tuning.grid_seed``, on the first of ``tuning.splits`` when there are any.
2. Choice: per dataset and optimizer, the grid value with the best final **validation** metric
   (``final.val_metric`` of the grid run's ``summary.json``; the preset must hold out a
   validation split, ``data.val_fraction`` > 0). Nothing of the test set is read for it. A
   choice at an edge of the grid adds the next value on that side (same ratio) and chooses
   again, at most ``tuning.max_extensions`` times.
3. Final: the chosen value with every seed of ``tuning.seeds`` (and every split of
   ``tuning.splits``).
4. Report: ``samt-report`` over the final runs into ``results/EXPERIMENT`` (or ``--out``), plus
   ``tuning.md`` with the validation scores of the grid, the chosen values, the final runs'
   significance table (the first place the test set is looked at) and the commands.

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
import math
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]
SOURCE = "{source}"   # placeholder in a variant's overrides: the source run's folder
MAX_EXTENSIONS = 3    # default of tuning.max_extensions: edge extensions per dataset and variant


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
    """The preset's ``tuning`` block (with the overrides applied), checked by
    ``check_protocol`` against the composed config's ``data.val_fraction``."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])
    tuning = OmegaConf.to_container(cfg.tuning, resolve=True)
    if not tuning:
        raise SystemExit(f"experiment {experiment!r} has no tuning block (conf/experiment/)")
    check_protocol(experiment, tuning, float(cfg.data.get("val_fraction") or 0.0))
    return tuning


def check_protocol(experiment: str, protocol: dict, val_fraction: float) -> None:
    """Refuse a protocol that could not be followed: a tuned grid without a validation split,
    tuned grids of different sizes (unfair), a grid that is not increasing and positive, or
    final seeds that include the grid seed."""
    tuned = [v for v in variants(protocol) if len(v.grid) > 1]
    where = f"experiment {experiment!r}: tuning"
    if tuned and not val_fraction > 0:
        raise SystemExit(f"{where}: grids choose on the validation metric, but data.val_fraction "
                         "is 0; set data.val_fraction in the preset (docs/tuning.md)")
    if len({len(v.grid) for v in tuned}) > 1:
        sizes = ", ".join(f"{v.name}: {len(v.grid)}" for v in tuned)
        raise SystemExit(f"{where}.optimizers: every tuned optimizer needs a grid of the same "
                         f"size (fair tuning budget); got {sizes}")
    for v in tuned:
        if any(not isinstance(x, int | float) or x <= 0 for x in v.grid) or list(v.grid) != \
                sorted(set(v.grid)):
            raise SystemExit(f"{where}.optimizers.{v.name}.grid: expected increasing positive "
                             f"values, got {list(v.grid)}")
    if protocol["grid_seed"] in protocol["seeds"]:
        raise SystemExit(f"{where}.seeds: the final runs must not reuse grid_seed "
                         f"{protocol['grid_seed']}")


def variants(protocol: dict) -> list[Variant]:
    out = []
    for name, spec in protocol["optimizers"].items():
        is_variant = "optimizer" in spec or "overrides" in spec
        out.append(Variant(name=name, optimizer=spec.get("optimizer", name), key=spec["key"],
                           grid=tuple(spec["grid"]), tied=dict(spec.get("tied") or {}),
                           overrides=tuple(spec.get("overrides") or ()),
                           is_variant=is_variant))
    return out


def run_folder(root: Path, dataset: str, optimizer: str, key: str, value, seed: int,
               split: int | None = None) -> Path:
    """``{dataset}_{optimizer}_{key}{value}[_split{split}]_s{seed}`` under ``root``."""
    part = "" if split is None else f"_split{split}"
    return root / f"{dataset}_{optimizer}_{key}{value}{part}_s{seed}"


def grid_split(protocol: dict) -> int | None:
    """The dataset split the grid runs on: the first of ``tuning.splits`` (None: no splits)."""
    splits = protocol.get("splits")
    return int(splits[0]) if splits else None


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
        overrides: list[str], source: Path | None, split: int | None = None) -> Job:
    """The run of ``variant`` at grid ``value`` and ``seed`` on ``dataset`` (its standard split
    ``split`` when given), in ``root``."""
    folder = run_folder(root, dataset, variant.name, variant.key, value, seed, split)
    extra = [f"optimizer.label={variant.name}"] if variant.is_variant else []
    if split is not None:
        extra.append(f"dataset.split={split}")
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


def grid_job(experiment: str, protocol: dict, runs: Path, overrides: list[str], dataset: str,
             variant: Variant, value) -> Job:
    """The grid run of ``variant`` at ``value`` on ``dataset`` (seed ``grid_seed``)."""
    return job(runs / "grid", experiment, dataset, variant, value, protocol["grid_seed"],
               overrides, source_folder(runs, protocol), grid_split(protocol))


def grid_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str]) -> list[Job]:
    """Stage 1: every grid value of every variant with more than one, per dataset."""
    return [grid_job(experiment, protocol, runs, overrides, dataset, v, value)
            for dataset in protocol["datasets"] for v in variants(protocol)
            if len(v.grid) > 1 for value in v.grid]


def final_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str],
               chosen: dict[tuple[str, str], object] | None = None) -> list[Job]:
    """Stage 3: every seed (and split of ``tuning.splits``) at the chosen value per (dataset,
    variant name); by default (for planning) a single-value grid's value and a grid's first."""
    source = source_folder(runs, protocol)
    by_name = {v.name: v for v in variants(protocol)}
    if chosen is None:
        chosen = {(d, v.name): v.grid[0] for d in protocol["datasets"] for v in by_name.values()}
    splits = protocol.get("splits") or [None]
    return [job(runs / "final", experiment, dataset, by_name[name], value, seed, overrides,
                source, split)
            for (dataset, name), value in chosen.items() for split in splits
            for seed in protocol["seeds"]]


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


def grid_score(folder: Path) -> tuple[float | None, bool | None]:
    """(final validation metric, higher is better) of a grid run; (None, None) unless it
    completed with a finite validation metric. Reads ``summary.json``'s ``status``,
    ``higher_is_better`` and ``final.val_metric`` only: the test set plays no part."""
    if not completed(folder):
        return None, None
    summary = json.loads((folder / "summary.json").read_text())
    score = (summary.get("final") or {}).get("val_metric")
    if not isinstance(score, int | float) or not math.isfinite(score):
        if summary.get("val_size") == 0:
            raise SystemExit(f"{folder}: the grid run has no validation split "
                             "(data.val_fraction=0); it cannot take part in the choice")
        return None, None
    return float(score), bool(summary.get("higher_is_better", True))


def choose(scores: dict, higher: bool) -> object | None:
    """The value with the best score (None scores left out; ties: the smaller value)."""
    valid = [(value, score) for value, score in sorted(scores.items()) if score is not None]
    if not valid:
        return None
    sign = 1.0 if higher else -1.0
    return max(valid, key=lambda vs: (sign * vs[1], -vs[0]))[0]


def _nice(value: float) -> float:
    """3 significant digits; on the half-decade ladder (1, 3.16, 10, ...) when within 0.5 %."""
    exponent = 2 * math.log10(value)
    if abs(exponent - round(exponent)) < 0.0043:  # 10**(0.0043/2) - 1 ~ 0.5 %
        value = 10 ** (round(exponent) / 2)
    return float(f"{value:.3g}")


def extend(grid: list, side: str) -> float:
    """The next value beyond the grid's ``low`` or ``high`` edge, one mean grid ratio away."""
    ratio = (grid[-1] / grid[0]) ** (1 / (len(grid) - 1))
    return _nice(grid[0] / ratio if side == "low" else grid[-1] * ratio)


def edge(grid: list, best) -> str | None:
    """``"low"``/``"high"`` when ``best`` is the grid's first/last value, else None."""
    return "low" if best == grid[0] else "high" if best == grid[-1] else None


@dataclass
class Tuning:
    """The choice for one dataset and variant: the grid as run (extensions included), the
    validation score of each value (None: failed or diverged), the chosen value."""

    dataset: str
    variant: Variant
    grid: list
    scores: dict = field(default_factory=dict)
    higher: bool = True
    chosen: object | None = None
    extensions: list = field(default_factory=list)

    @property
    def at_edge(self) -> str | None:
        return edge(self.grid, self.chosen) if self.chosen is not None else None


def tune(experiment: str, protocol: dict, runs: Path, overrides: list[str],
         run_jobs: Callable[[list[Job]], None]) -> list[Tuning]:
    """Stages 1-2: run the grids (``run_jobs`` runs a batch of jobs), choose on the validation
    metric, extend a grid whose choice sits at an edge (one value per round, every tuned
    dataset and variant in the same round) until the choice is interior or the grid was
    extended ``tuning.max_extensions`` times."""
    cap = int(protocol.get("max_extensions", MAX_EXTENSIONS))
    tunings = [Tuning(d, v, list(v.grid)) for d in protocol["datasets"]
               for v in variants(protocol) if len(v.grid) > 1]
    pending = grid_jobs(experiment, protocol, runs, overrides)
    while pending:
        run_jobs(pending)
        pending = []
        for t in tunings:
            t.scores = {}
            for value in t.grid:
                folder = grid_job(experiment, protocol, runs, overrides, t.dataset, t.variant,
                                  value).folder
                t.scores[value], higher = grid_score(folder)
                t.higher = t.higher if higher is None else higher
            t.chosen = choose(t.scores, t.higher)
            side = t.at_edge
            if side is not None and len(t.extensions) < cap:
                value = extend(t.grid, side)
                t.grid = [value, *t.grid] if side == "low" else [*t.grid, value]
                t.extensions.append(value)
                pending.append(grid_job(experiment, protocol, runs, overrides, t.dataset,
                                        t.variant, value))
    return tunings


def tuning_lines(protocol: dict, tunings: list[Tuning], epochs: object) -> list[str]:
    """The grid table of tuning.md: validation scores only."""
    split = grid_split(protocol)
    where = f"seed {protocol['grid_seed']}" + ("" if split is None else f", split {split}")
    lines = [f"| dataset | optimizer | key (tied) | grid runs x epochs | validation metric "
             f"per value ({where}) | chosen | edge extensions |", "|---|---|---|---|---|---|---|"]
    by_key = {(t.dataset, t.variant.name): t for t in tunings}
    cap = int(protocol.get("max_extensions", MAX_EXTENSIONS))
    for dataset in protocol["datasets"]:
        for v in variants(protocol):
            tied = ", ".join(f"{k} = {r:g} x {v.key}" for k, r in v.tied.items())
            key = f"{v.key} ({tied})" if tied else v.key
            t = by_key.get((dataset, v.name))
            if t is None:
                lines.append(f"| {dataset} | {v.name} | {key} | 0 | fixed by the preset | "
                             f"{v.grid[0]} | - |")
                continue
            cells = ", ".join(f"{value:g}: {'failed' if s is None else f'{s:.4g}'}"
                              for value, s in t.scores.items())
            if t.extensions:
                note = "added " + ", ".join(f"{x:g}" for x in t.extensions)
                if t.at_edge:
                    note += f"; still at the {t.at_edge} edge after the cap ({cap})"
            else:
                note = "none" if not t.at_edge else f"at the {t.at_edge} edge; cap {cap} is 0"
            chosen = "every run failed" if t.chosen is None else f"{t.chosen:g}"
            lines.append(f"| {dataset} | {v.name} | {key} | {len(t.grid)} x {epochs} | "
                         f"{cells} | {chosen} | {note} |")
    return lines


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
    tunings = tune(experiment, protocol, runs, overrides,
                   lambda jobs: run_all(jobs, args.jobs, log))
    chosen: dict[tuple[str, str], object] = {
        (d, v.name): v.grid[0] for d in protocol["datasets"] for v in variants(protocol)
        if len(v.grid) == 1}
    for t in tunings:
        if t.chosen is None:
            print(f"  {t.dataset} {t.variant.name}: every grid run failed; skipped")
        else:
            chosen[(t.dataset, t.variant.name)] = t.chosen
    epochs = next((a.split("=", 1)[1] for a in reversed(overrides) if a.startswith("epochs=")),
                  "the preset's")
    lines += tuning_lines(protocol, tunings, epochs)

    print(f"final: {runs / 'final'}")
    run_all(final_jobs(experiment, protocol, runs, overrides, chosen), args.jobs, log)

    subprocess.run([sys.executable, "-m", "samt.report.cli", str(runs / "final"), "--out",
                    str(out), "--columns", "per-row"], check=True)
    command = " ".join(["python scripts/reproduce.py", args.experiment, *args.overrides])
    splits = protocol.get("splits")
    finals = (f"seeds {protocol['seeds']}" + (f" on splits {splits}" if splits else ""))
    table = out / "significance.md"  # written by samt-report after the choice
    (out / "tuning.md").write_text(
        f"# Tuning record: {args.experiment}\n\nReproduce: `{command}`\n\n"
        "Protocol: docs/tuning.md. Grid runs choose each optimizer's step size per dataset by "
        "the final **validation** metric (a held-out part of the training set, "
        "`data.val_fraction`); the test set is read only for the final runs, which use other "
        f"seeds ({finals}).\n\n## Grid (validation)\n\n" + "\n".join(lines)
        + "\n\n## Final runs (test)\n\n"
        + (table.read_text() if table.is_file() else "See report.md (fewer than two final "
           "runs per optimizer: no significance table).\n")
        + "\nRuns launched by this invocation:\n\n```\n" + "\n".join(log) + "\n```\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
