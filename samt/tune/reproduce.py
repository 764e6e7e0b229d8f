"""``samt-reproduce``: a paper table by the tuning protocol of docs/tuning.md, then its report.

    samt-reproduce EXPERIMENT [OVERRIDE ...] [--launcher NAME] [--jobs N]
                   [--out DIR] [--runs DIR] [--dry-run]

``--runs`` (default ``runs/EXPERIMENT``) and ``--out`` (default ``results/EXPERIMENT``) are taken
from the current folder, where every stage runs, so that the commands it records are relative to
it (from a checkout's root: ``runs/...``, ``results/...``).

0. Source (only when the preset's ``tuning`` block has a ``source``): one run whose folder the
   variants' overrides can name as ``{source}``, e.g. ``optimizer.meta_init={source}`` for
   eta-model transfer (``conf/experiment/transfer.yaml``).
1. Grid: for every dataset and optimizer of the preset's ``tuning`` block, runs per grid
   value of the optimizer's step-size key (``lr``; ``eta_max`` for SAMT, with ``eta0`` tied
   below it). ``tuning.choice: one_seed`` (default): one run with ``tuning.grid_seed``, on the
   first of ``tuning.splits`` when there are any. ``tuning.choice: seed_mean``: one run per
   seed of ``tuning.seeds`` and split of ``tuning.splits``.
2. Choice: per dataset and optimizer, the grid value with the best final **validation** metric
   (``final.val_metric`` of the grid runs' ``summary.json``; with ``seed_mean`` its mean over
   the value's runs, and a value scores only when every one of its runs completed; the preset
   must hold out a validation split, ``data.val_fraction`` > 0). Nothing of the test set is
   read for it. A choice at an edge of the grid adds the next value on that side (same ratio)
   and chooses again, at most ``tuning.max_extensions`` times (the ``tuning`` block's keys:
   ``samt.schema.TuningConfig``).
3. Final: the chosen value with every seed of ``tuning.seeds`` (and every split of
   ``tuning.splits``); with ``seed_mean`` these are the chosen value's grid runs (nothing new
   runs, except for an optimizer whose grid has one value).
4. Report: ``samt-report`` over the final runs into ``results/EXPERIMENT`` (or ``--out``), plus
   ``tuning.md`` with the validation scores of the grid, the chosen values, the final runs'
   significance table (the first place the test set is looked at) and the commands.

An entry of ``tuning.optimizers`` is named after an optimizer config (``adam: {key: lr, grid:
[...]}``), or is a *variant* with its own name: ``optimizer:`` names the config, ``overrides:``
adds Hydra overrides, and the run's ``optimizer.label`` is the variant's name, e.g.
``samt_e_no_norm: {optimizer: samt_e, key: eta0, grid: [0.1], overrides:
["optimizer.features=[mean,var,max,min]"]}``. A grid of one value means no grid runs.

Each stage (the source, the grid, each round of edge extensions, the finals) is **one Hydra
multirun** (``samt-run -m hydra/sweeper=job_list ...``: the stage's jobs, listed in
``runs/EXPERIMENT/stages/<stage>.yaml``, go to the launcher as one batch) through
``hydra/launcher=<--launcher>``: ``local_parallel`` (default: joblib, ``--jobs`` at a time),
``submitit_local``, ``slurm`` (one array job per stage), ``basic`` (one after the other, in
one process). The choice between stages reads run folders only. Runs go to
``runs/EXPERIMENT/{source,grid,final}/<run name>`` (``hydra.sweep.dir`` is the stage folder,
``hydra.sweep.subdir`` the run's name); a run whose folder already holds a finished
``summary.json`` is not launched again, so an interrupted reproduction continues where it
stopped (and ``samt-run``'s ``resume=auto`` skips or resumes any run launched twice). Each
stage's command is appended to ``runs/EXPERIMENT/stages/<stage>.command`` and its output to
``<stage>.log``.

Extra arguments are Hydra overrides for every run, e.g. ``epochs=3`` for a quick CPU check;
``device=cuda`` runs every job on the GPU (default ``device=cpu device.threads=1``: one thread
per job). Overrides of ``hydra.*`` (``hydra.launcher.partition=gpu``) go to every stage's
multirun command only. ``--dry-run`` prints each stage's command, its jobs and the launcher's
config (for SLURM: the sbatch parameters) and runs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from samt.cli import CONF_DIR  # imports samt.schema: registers the defaults conf/ builds on
from samt.run_folder import COMPLETED_STATUSES, FINAL_STATUSES
from samt.schema import TuningConfig

RUN = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]  # samt-run, here
LAUNCHER = "local_parallel"   # conf/hydra/launcher/local_parallel.yaml (joblib)
JOBLIB_LAUNCHERS = ("local_parallel", "joblib")   # take --jobs as hydra.launcher.n_jobs
SOURCE = "{source}"   # placeholder in a variant's overrides: the source run's folder
# default of tuning.max_extensions: edge extensions per dataset and variant
MAX_EXTENSIONS = next(f.default for f in dataclasses.fields(TuningConfig)
                      if f.name == "max_extensions")
# tuning.choice: how a grid value is scored (one run, or the mean over every final seed)
CHOICES = next(f.metadata["choices"] for f in dataclasses.fields(TuningConfig)
               if f.name == "choice")
# The keys of one entry of tuning.optimizers (samt.schema.TuningConfig.optimizers).
VARIANT_KEYS = ("key", "grid", "tied", "optimizer", "overrides")


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
    """One run of a stage: its folder, its own overrides (``args``: one entry of the stage's
    job list) and the overrides every job of the stage shares (``common``: the multirun's
    command line)."""

    folder: Path
    args: tuple[str, ...]
    common: tuple[str, ...] = ()

    @property
    def overrides(self) -> tuple[str, ...]:
        """Everything the run composes with, in the order the job-list sweeper applies it."""
        return (*self.args, *self.common)


def is_hydra_override(override: str) -> bool:
    """Whether ``override`` sets Hydra's own config (``hydra.launcher.partition=gpu``,
    ``hydra/launcher=slurm``): it goes to the stages' multirun commands, not to the runs."""
    return override.lstrip("+~").startswith(("hydra.", "hydra/"))


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(run overrides, Hydra overrides) of the command line."""
    return ([o for o in overrides if not is_hydra_override(o)],
            [o for o in overrides if is_hydra_override(o)])


def device_args(overrides: list[str]) -> list[str]:
    """The device the runs get: the user's ``device=...`` when given, else ``device=cpu``;
    ``device.threads=1`` (one thread per job) only for ``cpu`` and ``auto`` and only when the
    user set no ``device.threads``. ``device=cuda`` is left as it is (its config has no
    ``threads``)."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("device=")]
    out = [] if chosen else ["device=cpu"]
    device = chosen[-1] if chosen else "cpu"
    if device in ("cpu", "auto") and not any(
            o.lstrip("+").startswith("device.threads=") for o in overrides):
        out.append("device.threads=1")
    return out


def load_protocol(experiment: str, overrides: list[str]) -> dict:
    """The preset's ``tuning`` block (with the overrides applied), checked by
    ``check_protocol`` against the composed config's ``data.val_fraction``."""
    overrides, _ = split_overrides(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])
    tuning = OmegaConf.to_container(cfg.tuning, resolve=True)
    if not tuning:
        raise SystemExit(f"experiment {experiment!r} has no tuning block (conf/experiment/)")
    check_tuning_keys(experiment, tuning)
    check_protocol(experiment, tuning, float(cfg.data.get("val_fraction") or 0.0))
    return tuning


def _unknown(where: str, key: str, known: list[str]) -> SystemExit:
    close = difflib.get_close_matches(key, known, n=1)
    return SystemExit(f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)"
                                                        if close else "")
                      + f"; known keys: {', '.join(known)}")


def check_tuning_keys(experiment: str, tuning: dict) -> None:
    """The ``tuning`` block against its schema (``samt.schema.TuningConfig``): no unknown key,
    every required key present, lists and mappings where the schema says so; each entry of
    ``optimizers`` with a ``key`` and a ``grid`` and only ``VARIANT_KEYS``."""
    where = f"experiment {experiment!r}: tuning"
    fields = {f.name: f for f in dataclasses.fields(TuningConfig)}
    for key in tuning:
        if key not in fields:
            raise _unknown(where, str(key), list(fields))
    for name, f in fields.items():
        value = tuning.get(name)
        if value is None:
            if not f.metadata.get("optional"):
                raise SystemExit(f"{where}.{name} is missing (samt.schema.TuningConfig)")
            continue
        if name in ("datasets", "seeds", "splits") and not (
                isinstance(value, list) and value and all(
                    isinstance(v, str if name == "datasets" else int) for v in value)):
            kind = "dataset names" if name == "datasets" else "integers"
            raise SystemExit(f"{where}.{name}: expected a non-empty list of {kind}, "
                             f"got {value!r}")
        if name in ("grid_seed", "max_extensions") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise SystemExit(f"{where}.{name}: expected an integer >= 0, got {value!r}")
    if tuning.get("choice", "one_seed") not in CHOICES:
        raise SystemExit(f"{where}.choice: expected one of {', '.join(CHOICES)}, got "
                         f"{tuning['choice']!r}")
    margins = tuning.get("margins")
    if margins is not None and not (isinstance(margins, dict) and all(
            k in tuning["datasets"] and isinstance(v, int | float) and not isinstance(v, bool)
            and v > 0 for k, v in margins.items())):
        raise SystemExit(f"{where}.margins: expected a mapping from datasets of the table to "
                         f"positive numbers (the metric's units), got {margins!r}")
    optimizers = tuning["optimizers"]
    if not isinstance(optimizers, dict) or not optimizers:
        raise SystemExit(f"{where}.optimizers: expected a mapping name -> {{key, grid, ...}}")
    for name, spec in optimizers.items():
        if not isinstance(spec, dict):
            raise SystemExit(f"{where}.optimizers.{name}: expected a mapping with key and grid")
        for key in spec:
            if key not in VARIANT_KEYS:
                raise _unknown(f"{where}.optimizers.{name}", str(key), list(VARIANT_KEYS))
        for key in ("key", "grid"):
            if key not in spec:
                raise SystemExit(f"{where}.optimizers.{name}.{key} is missing")


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
    if not seed_mean(protocol) and protocol["grid_seed"] in protocol["seeds"]:
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


def seed_mean(protocol: dict) -> bool:
    """Whether each grid value runs on every final seed and split and is scored by the mean
    (``tuning.choice: seed_mean``); else one run with ``grid_seed`` (``one_seed``)."""
    return protocol.get("choice", "one_seed") == "seed_mean"


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


def _common(experiment: str, overrides: list[str]) -> tuple[str, ...]:
    """The overrides every run of a reproduction shares (a stage's multirun command line)."""
    overrides, _ = split_overrides(overrides)
    return (f"experiment={experiment}", "progress=false", *device_args(overrides), *overrides)


def source_job(experiment: str, protocol: dict, runs: Path, overrides: list[str]) -> Job | None:
    """The source run (stage 0): ``tuning.source`` = dataset, optimizer, seed, [overrides]."""
    folder = source_folder(runs, protocol)
    if folder is None:
        return None
    src = protocol["source"]
    args = [f"dataset={src['dataset']}", f"optimizer={src['optimizer']}", f"seed={src['seed']}",
            *(src.get("overrides") or ())]
    return Job(folder, tuple(args), _common(experiment, overrides))


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
    args = [f"dataset={dataset}", f"optimizer={variant.optimizer}",
            f"optimizer.{variant.key}={value}",
            *(f"optimizer.{k}={value * r:g}" for k, r in variant.tied.items()),
            *extra, f"seed={seed}"]
    return Job(folder, tuple(args), _common(experiment, overrides))


def grid_runs(experiment: str, protocol: dict, runs: Path, overrides: list[str], dataset: str,
              variant: Variant, value) -> list[Job]:
    """The grid runs of ``variant`` at ``value`` on ``dataset``: one with ``grid_seed`` on the
    first split, or (``seed_mean``) one per seed of ``tuning.seeds`` and split."""
    source = source_folder(runs, protocol)
    if seed_mean(protocol):
        return [job(runs / "grid", experiment, dataset, variant, value, seed, overrides, source,
                    split)
                for split in protocol.get("splits") or [None] for seed in protocol["seeds"]]
    return [job(runs / "grid", experiment, dataset, variant, value, protocol["grid_seed"],
                overrides, source, grid_split(protocol))]


def grid_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str]) -> list[Job]:
    """Stage 1: every grid value of every variant with more than one, per dataset."""
    return [j for dataset in protocol["datasets"] for v in variants(protocol)
            if len(v.grid) > 1 for value in v.grid
            for j in grid_runs(experiment, protocol, runs, overrides, dataset, v, value)]


def final_jobs(experiment: str, protocol: dict, runs: Path, overrides: list[str],
               chosen: dict[tuple[str, str], object] | None = None) -> list[Job]:
    """Stage 3: every seed (and split of ``tuning.splits``) at the chosen value per (dataset,
    variant name); by default (for planning) a single-value grid's value and a grid's first."""
    source = source_folder(runs, protocol)
    by_name = {v.name: v for v in variants(protocol)}
    if chosen is None:
        chosen = {(d, v.name): v.grid[0] for d in protocol["datasets"] for v in by_name.values()}
    if seed_mean(protocol):
        return [j for (dataset, name), value in chosen.items()
                for j in grid_runs(experiment, protocol, runs, overrides, dataset,
                                   by_name[name], value)]
    splits = protocol.get("splits") or [None]
    return [job(runs / "final", experiment, dataset, by_name[name], value, seed, overrides,
                source, split)
            for (dataset, name), value in chosen.items() for split in splits
            for seed in protocol["seeds"]]


def planned_jobs(experiment: str, protocol: dict, runs: Path,
                 overrides: list[str]) -> list[Job]:
    """Every run a reproduction would start (finals at the default choice), each once (with
    ``seed_mean`` the finals are grid runs): for checks."""
    src = source_job(experiment, protocol, runs, overrides)
    jobs = ([src] if src else []) + grid_jobs(experiment, protocol, runs, overrides) + \
        final_jobs(experiment, protocol, runs, overrides)
    first: dict[Path, Job] = {}
    for job_ in jobs:
        first.setdefault(job_.folder, job_)
    return list(first.values())


def read_summary(folder: Path) -> dict:
    """The folder's ``summary.json``; empty when it is missing or unreadable (an interrupted
    write, an empty file): such a run counts as not finished and is launched again."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def completed(folder: Path) -> bool:
    """Whether ``folder``'s run ended as asked: all its epochs, or its target reached."""
    return read_summary(folder).get("status") in COMPLETED_STATUSES


def shown(folder: Path) -> Path:
    """``folder`` relative to the current folder when it lies inside it (recorded commands
    name no path of the machine), else as it is."""
    path = Path(os.path.abspath(folder))
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else folder


def run_commands(folders: list[Path]) -> list[str]:
    """The command of each run, read back from its folder's ``.hydra/overrides.yaml``: the
    single ``samt-run`` that reproduces (or, finished, skips) it."""
    lines = []
    for folder in folders:
        where = shown(folder)
        record = folder / ".hydra" / "overrides.yaml"
        if not record.is_file():
            lines.append(f"# {where}: no .hydra/overrides.yaml (not run)")
            continue
        overrides = [str(o) for o in OmegaConf.load(record)]
        lines.append("samt-run " + " ".join(shlex.quote(o) for o in overrides)
                     + f" hydra.run.dir={shlex.quote(_override_value(where))}")
    return lines


def finished(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run (completed, reached_target or diverged): not
    launched again."""
    return read_summary(folder).get("status") in FINAL_STATUSES


@dataclass
class Stages:
    """How the stages run: one Hydra multirun each, through ``launcher``; records (job lists,
    commands, logs) in ``records``."""

    launcher: str = LAUNCHER
    jobs: int = 2                   # --jobs: joblib's n_jobs
    hydra: tuple[str, ...] = ()     # the user's hydra.* overrides, for every stage
    records: Path = Path("stages")
    dry_run: bool = False

    def jobs_file(self, name: str) -> Path:
        return self.records / f"{name}.yaml"

    def argv(self, name: str, jobs: list[Job]) -> list[str]:
        """The stage's ``samt-run -m`` arguments (after ``samt-run``): every job's folder is
        ``hydra.sweep.dir`` (the stage folder) / ``hydra.sweep.subdir`` (set per job)."""
        (sweep_dir,) = {j.folder.parent for j in jobs}
        (common,) = {j.common for j in jobs}
        n_jobs = [f"hydra.launcher.n_jobs={self.jobs}"] if self.launcher in JOBLIB_LAUNCHERS \
            else []
        return ["-m", "hydra/sweeper=job_list",
                f"hydra.sweeper.jobs={_override_value(self.jobs_file(name))}",
                f"hydra/launcher={self.launcher}", *n_jobs,
                f"hydra.sweep.dir={_override_value(sweep_dir)}", *self.hydra, *common]

    @staticmethod
    def job_list(jobs: list[Job]) -> list[list[str]]:
        """The sweeper's job list: each job's own overrides and its folder name."""
        return [[*j.args, f"hydra.sweep.subdir={j.folder.name}"] for j in jobs]

    def run(self, name: str, jobs: list[Job]) -> None:
        """Run the stage's unfinished jobs as one multirun (nothing when all are finished)."""
        pending = [j for j in jobs if not finished(j.folder)]
        print(f"{name}: {len(jobs)} run(s), {len(jobs) - len(pending)} finished before",
              flush=True)
        if not pending:
            return
        argv = self.argv(name, pending)
        command = "samt-run " + " ".join(shlex.quote(a) for a in argv)
        if self.dry_run:
            print(f"  {command}\n  {self.jobs_file(name)}:\n"
                  + textwrap.indent(OmegaConf.to_yaml(self.job_list(pending)), "    "),
                  end="", flush=True)
            return
        self.records.mkdir(parents=True, exist_ok=True)
        self.jobs_file(name).write_text(OmegaConf.to_yaml(self.job_list(pending)))
        with open(self.records / f"{name}.command", "a") as out:
            out.write(command + "\n")
        log = self.records / f"{name}.log"
        print(f"  {command}\n  log: {log}", flush=True)
        with open(log, "w") as out:
            rc = subprocess.run([*RUN, *argv], stdout=out, stderr=subprocess.STDOUT).returncode
        wrote = [j for j in pending if (j.folder / "summary.json").is_file()]
        if not wrote:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SystemExit(f"{name}: the multirun (exit {rc}) left no summary.json in any of "
                             f"its {len(pending)} run folder(s); end of {log}:\n{tail}")
        if rc != 0:
            print(f"  {name}: samt-run exited {rc} ({len(pending) - len(wrote)} run(s) without "
                  f"a summary); see {log}", flush=True)


def launcher_config(stages: Stages, job: Job) -> str:
    """The launcher's config as a stage composes it (``--dry-run``): for SLURM, the sbatch
    parameters (partition, time, GPUs, array parallelism)."""
    argv = stages.argv("final", [job])[1:]  # without -m
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*job.args, *argv],
                      return_hydra_config=True)
    return OmegaConf.to_yaml(cfg.hydra.launcher)


def grid_score(folder: Path) -> tuple[float | None, bool | None]:
    """(final validation metric, higher is better) of a grid run; (None, None) unless it
    completed with a finite validation metric. Reads ``summary.json``'s ``status``,
    ``higher_is_better`` and ``final.val_metric`` only: the test set plays no part."""
    if not completed(folder):
        return None, None
    summary = read_summary(folder)
    score = (summary.get("final") or {}).get("val_metric")
    if not isinstance(score, int | float) or not math.isfinite(score):
        if summary.get("val_size") == 0:
            raise SystemExit(f"{folder}: the grid run has no validation split "
                             "(data.val_fraction=0); it cannot take part in the choice")
        return None, None
    return float(score), bool(summary.get("higher_is_better", True))


@dataclass(frozen=True)
class ValueScore:
    """A grid value's validation score: the mean over its runs (None unless every run
    completed with a finite validation metric), its standard error, runs scored / run."""

    mean: float | None
    se: float | None
    scored: int
    runs: int
    higher: bool | None

    def cell(self) -> str:
        """tuning.md's cell: ``0.9812``, or ``0.9812 ± 0.0004`` over several runs."""
        if self.mean is None:
            return "failed" if self.runs == 1 else f"failed ({self.runs - self.scored} of " \
                                                   f"{self.runs} runs)"
        if self.runs == 1:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.se:.2g}"


def value_score(folders: list[Path]) -> ValueScore:
    """The mean final validation metric over ``folders`` (``grid_score`` of each) and its
    standard error (sample std / sqrt(n)); no mean when any run failed."""
    scored = [grid_score(f) for f in folders]
    values = [s for s, _ in scored if s is not None]
    higher = next((h for _, h in scored if h is not None), None)
    if len(values) < len(folders) or not values:
        return ValueScore(None, None, len(values), len(folders), higher)
    mean = sum(values) / len(values)
    se = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
          if len(values) > 1 else 0.0)
    return ValueScore(mean, se, len(values), len(folders), higher)


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
    scores: dict = field(default_factory=dict)    # value -> mean validation score or None
    details: dict = field(default_factory=dict)   # value -> ValueScore
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
            for value in t.grid:
                jobs = grid_runs(experiment, protocol, runs, overrides, t.dataset, t.variant,
                                 value)
                t.details[value] = value_score([j.folder for j in jobs])
                t.scores[value] = t.details[value].mean
                t.higher = t.higher if t.details[value].higher is None else \
                    t.details[value].higher
            t.chosen = choose(t.scores, t.higher)
            side = t.at_edge
            if side is not None and len(t.extensions) < cap:
                value = extend(t.grid, side)
                t.grid = [value, *t.grid] if side == "low" else [*t.grid, value]
                t.extensions.append(value)
                pending += grid_runs(experiment, protocol, runs, overrides, t.dataset,
                                     t.variant, value)
    return tunings


def tuning_lines(protocol: dict, tunings: list[Tuning], epochs: object) -> list[str]:
    """The grid table of tuning.md: validation scores only."""
    split = grid_split(protocol)
    where = f"seed {protocol['grid_seed']}" + ("" if split is None else f", split {split}")
    if seed_mean(protocol):
        splits = protocol.get("splits")
        where = (f"mean ± standard error over seeds {protocol['seeds']}"
                 + (f" x splits {splits}" if splits else ""))
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
            cells = ", ".join(f"{value:g}: {t.details[value].cell()}" for value in t.grid)
            if t.extensions:
                note = "added " + ", ".join(f"{x:g}" for x in t.extensions)
                if t.at_edge:
                    note += f"; still at the {t.at_edge} edge after the cap ({cap})"
            else:
                note = "none" if not t.at_edge else f"at the {t.at_edge} edge; cap {cap} is 0"
            chosen = "every run failed" if t.chosen is None else f"{t.chosen:g}"
            runs = sum(d.runs for d in t.details.values())
            lines.append(f"| {dataset} | {v.name} | {key} | {runs} x {epochs} | "
                         f"{cells} | {chosen} | {note} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """``samt-reproduce``: the entry point; Ctrl-C ends it with one line (exit 130)."""
    try:
        reproduce(argv)
    except KeyboardInterrupt:
        print("samt-reproduce: interrupted; the runs finished so far are kept: rerun the same "
              "command to continue", file=sys.stderr)
        sys.exit(130)


def reproduce(argv: list[str] | None = None) -> None:
    """Parse the command line, run the stages, write the report and ``tuning.md``."""
    parser = argparse.ArgumentParser(
        prog="samt-reproduce",
        description="Reproduce a paper table by the tuning protocol of docs/tuning.md (grid, "
                    "choice on the validation metric, final seeds), then report it. Runs and "
                    "results go under the current folder.")
    parser.add_argument("experiment")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every run (hydra.* ones: for every stage)")
    parser.add_argument("--launcher", default=LAUNCHER,
                        help="hydra/launcher of every stage: local_parallel (default, joblib), "
                             "submitit_local, slurm, basic")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs at a time with local_parallel (one thread each on the CPU)")
    parser.add_argument("--out", default=None,
                        help="report folder (default: results/EXPERIMENT in the current folder)")
    parser.add_argument("--runs", default=None,
                        help="run folders (default: runs/EXPERIMENT in the current folder)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each stage's multirun command, its jobs and the launcher's "
                             "config; run nothing")
    args = parser.parse_intermixed_args(argv)
    protocol = load_protocol(args.experiment, args.overrides)
    runs = shown(Path(args.runs or Path("runs") / args.experiment))
    out = shown(Path(args.out or Path("results") / args.experiment))
    experiment, overrides = args.experiment, args.overrides
    stages = Stages(launcher=args.launcher, jobs=args.jobs,
                    hydra=tuple(split_overrides(overrides)[1]), records=runs / "stages",
                    dry_run=args.dry_run)
    lines: list[str] = []
    folders: dict[str, list[Path]] = {"source": [], "grid": [], "final": []}

    source = source_job(experiment, protocol, runs, overrides)
    if source is not None:
        stages.run("source", [source])
        if not completed(source.folder) and not args.dry_run:
            raise SystemExit(f"the source run did not complete; see {source.folder}/summary.json "
                             f"and {stages.records / 'source.log'}")
        folders["source"].append(source.folder)
        lines += [f"Source run (its folder is `{SOURCE}` in the variants' overrides): "
                  f"`{source.folder.name}`", ""]

    rounds = itertools.count()
    tunings = tune(experiment, protocol, runs, overrides,
                   lambda jobs: stages.run(f"grid_{next(rounds)}", jobs))
    chosen: dict[tuple[str, str], object] = {
        (d, v.name): v.grid[0] for d in protocol["datasets"] for v in variants(protocol)
        if len(v.grid) == 1}
    for t in tunings:
        folders["grid"] += [j.folder for value in t.grid for j in grid_runs(
            experiment, protocol, runs, overrides, t.dataset, t.variant, value)]
        if t.chosen is None:
            if args.dry_run:  # nothing ran: plan the finals at the grid's first value
                chosen[(t.dataset, t.variant.name)] = t.grid[0]
            else:
                print(f"  {t.dataset} {t.variant.name}: every grid run failed; skipped")
        else:
            chosen[(t.dataset, t.variant.name)] = t.chosen
    epochs = next((a.split("=", 1)[1] for a in reversed(overrides) if a.startswith("epochs=")),
                  "the preset's")
    lines += tuning_lines(protocol, tunings, epochs)

    finals = final_jobs(experiment, protocol, runs, overrides, chosen)
    in_grid = set(folders["grid"])
    folders["final"] = [j.folder for j in finals if j.folder not in in_grid]
    stages.run("final", finals)
    if args.dry_run:
        print(f"(dry run: finals at the first grid value; the choice needs the grid runs)\n"
              f"hydra.launcher of every stage ({args.launcher}):\n"
              + launcher_config(stages, finals[0]))
        return

    margins = [f"--margin={d}={m:g}" for d, m in (protocol.get("margins") or {}).items()]
    reported = ([str(j.folder) for j in finals if (j.folder / "summary.json").is_file()]
                if seed_mean(protocol) else [str(runs / "final")])
    subprocess.run([sys.executable, "-m", "samt.report.cli", *reported, "--out",
                    str(out), "--columns", "per-row", *margins], check=True)
    where = [*(["--runs", str(runs)] if args.runs else []),
             *(["--out", str(out)] if args.out else [])]  # where this table's runs went
    command = " ".join(["samt-reproduce", *(shlex.quote(a) for a in (
        args.experiment, *args.overrides, *where))])
    splits = protocol.get("splits")
    seeds = (f"seeds {protocol['seeds']}" + (f" on splits {splits}" if splits else ""))
    table = out / "significance.md"  # written by samt-report after the choice
    if seed_mean(protocol):
        protocol_text = (
            "Protocol: docs/tuning.md (`tuning.choice: seed_mean`). Every grid value runs on "
            f"{seeds}; each optimizer's step size per dataset is the value with the best **mean "
            "final validation metric** over those runs (a held-out part of the training set, "
            "`data.val_fraction`; a value scores only when all its runs completed). The final "
            "runs are the chosen value's runs; the test set is read only for them.")
    else:
        protocol_text = (
            "Protocol: docs/tuning.md. Grid runs choose each optimizer's step size per dataset "
            "by the final **validation** metric (a held-out part of the training set, "
            "`data.val_fraction`); the test set is read only for the final runs, which use "
            f"other seeds ({seeds}).")
    (out / "tuning.md").write_text(
        f"# Tuning record: {args.experiment}\n\nReproduce: `{command}`\n\n"
        + protocol_text + "\n\n## Grid (validation)\n\n" + "\n".join(lines)
        + "\n\n## Final runs (test)\n\n"
        + (table.read_text() if table.is_file() else "See report.md (fewer than two final "
           "runs per optimizer: no significance table).\n")
        + commands_section(stages, folders))
    print(f"report: {out}")


def _stage_order(name: str) -> tuple[int, int]:
    """source, grid_0, grid_1, ..., final."""
    if name.startswith("grid_") and name[5:].isdigit():
        return 1, int(name[5:])
    return {"source": 0, "final": 2}.get(name, 3), 0


def commands_section(stages: Stages, folders: dict[str, list[Path]]) -> str:
    """tuning.md's record of how every run of the table was launched: each stage's multirun
    command (every invocation's, from ``stages/<stage>.command``) and each run's own command
    (from its ``.hydra/overrides.yaml``), whichever invocation ran it."""
    text = ("\n## Commands\n\nEach stage is one Hydra multirun over the jobs listed in its "
            f"`{stages.records.name}/<stage>.yaml` (docs/tuning.md). Stage commands, as "
            "launched:\n\n```\n")
    recorded = sorted(stages.records.glob("*.command"), key=lambda f: _stage_order(f.stem))
    text += "".join(f"# {f.stem}\n{f.read_text()}" for f in recorded) or "(none recorded)\n"
    total = sum(len(v) for v in folders.values())
    text += (f"```\n\nEvery run of the table ({total}), as the single `samt-run` that "
             "reproduces it (read from its folder's `.hydra/overrides.yaml`; a finished run "
             "is skipped):\n")
    for stage, paths in folders.items():
        if paths:
            text += f"\n{stage} ({len(paths)}):\n\n```\n" + "\n".join(run_commands(paths)) \
                + "\n```\n"
    return text


if __name__ == "__main__":
    main()
