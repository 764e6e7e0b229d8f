"""``samt-report PATH... [--out DIR] [--target [DATASET=]VALUE]... [--val-target
[DATASET=]VALUE]... [--margin [DATASET=]VALUE[%]]... [--only NAME,...] [--self-tuning]
[--formats md,tex,csv]``; a PATH is a run folder, a folder holding run folders, or an
``all_runs.csv`` that samt-report wrote (re-analysis without the run folders)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd

from samt.report.aggregate import (
    DEFAULT_TARGETS,
    METRICS,
    Group,
    aggregate,
    build_groups,
    lr_sweeps,
    on_every_workload,
    rows_and_columns,
    run_table,
    time_to_target,
    val_target_costs,
    val_targets,
)
from samt.report.collect import NoRunsError, is_run_table, load_runs
from samt.report.forest import forest_table, plot_forest
from samt.report.plots import palette, plot_all, plot_performance_profiles, unique_slugs
from samt.report.self_tuning import plot_self_tuning_profile, self_tuning, self_tuning_table
from samt.report.sensitivity import plot_tuneability
from samt.report.significance import Margin, significance_table
from samt.report.tables import (
    FORMATS,
    Table,
    build_tables,
    to_markdown,
    val_target_table,
    write_tables,
)

T = TypeVar("T")
# What --only can name: tables (with their long CSVs), CSVs, figure kinds, report.md.
OUTPUTS = (*(m.name for m in METRICS), "run_counts", "time_to_target", "significance",
           "val_time_to_target", "forest", "self_tuning", "aggregates", "all_runs", "curves",
           "samt_steps", "lr_sensitivity", "sensitivity", "tuning_budget",
           "performance_profile", "report")
# Outputs that read per-epoch curves (metrics.csv): not written from an all_runs.csv.
CURVE_OUTPUTS = frozenset(("time_to_target", "val_time_to_target", "performance_profile",
                           "curves", "samt_steps"))


def parse_targets(values: Sequence[str], defaults: dict[str, float] | None = None,
                  option: str = "--target") -> dict[str, float]:
    """``["digits=95", "mnist=98.5"]`` -> targets per dataset over ``defaults``
    (``DEFAULT_TARGETS`` when None); ``option`` names the option in error messages.

    A bare ``VALUE`` is the target for every dataset that no ``DATASET=VALUE`` names
    (it replaces the defaults); it is kept under the key ``"*"``.
    """
    targets = dict(DEFAULT_TARGETS if defaults is None else defaults)
    named: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            parsed = float(number)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} {value!r}: expected VALUE or DATASET=VALUE") from None
        if not math.isfinite(parsed):
            raise argparse.ArgumentTypeError(
                f"{option} {value!r}: expected a finite number as VALUE (a metric to reach)")
        if name:
            named[name] = parsed
        else:
            targets = {"*": parsed}
    return {**targets, **named}


def parse_margins(values: Sequence[str]) -> dict[str, Margin]:
    """``["mnist=0.1", "uci_boston=2%"]`` -> margins per dataset: in the metric's units, or
    with ``%`` relative to the row's best mean; a bare ``VALUE`` (key ``"*"``) is the margin of
    every dataset that no ``DATASET=VALUE`` names. A margin must be a positive number."""
    margins: dict[str, Margin] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        relative = number.endswith("%")
        try:
            parsed = float(number.removesuffix("%"))
        except ValueError:
            parsed = math.nan
        if not (math.isfinite(parsed) and parsed > 0):
            raise argparse.ArgumentTypeError(
                f"--margin {value!r}: expected [DATASET=]VALUE or [DATASET=]VALUE% with a "
                "positive number (in the metric's units, or % of the row's best mean)")
        margins[name or "*"] = Margin(parsed, relative)
    return margins


def per_dataset(targets: dict[str, T], groups: list[Group]) -> dict[str, T]:
    """``parse_targets``' result with the bare value (``"*"``) given to every other dataset."""
    targets = dict(targets)
    if "*" in targets:
        default = targets.pop("*")
        targets = {**{g.dataset: default for g in groups}, **targets}
    return targets


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {','.join(FORMATS)}")
    return chosen


def _only(text: str) -> frozenset[str]:
    chosen = frozenset(o.strip() for o in text.split(",") if o.strip())
    unknown = sorted(chosen - set(OUTPUTS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown output(s) {', '.join(unknown) or '(none)'}; choose from "
            f"{','.join(OUTPUTS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samt-report",
        description="Aggregate SAMT/Adam/SGD run folders (single runs and multirun sweeps) "
                    "over seeds into paper tables and plots.")
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run folders or folders to search for them (any folder holding "
                             "a summary.json), or all_runs.csv files of earlier reports")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: report/ inside the first PATH, beside "
                             "the runs it reports)")
    parser.add_argument("--target", action="append", default=[], metavar="[DATASET=]VALUE",
                        help="time-to-target threshold on the test metric, repeatable; "
                             "defaults: mnist=98.0 fashion_mnist=89.0; a bare VALUE applies to "
                             "every dataset not named")
    parser.add_argument("--val-target", action="append", default=[], metavar="[DATASET=]VALUE",
                        help="validation target of the performance profiles, repeatable; "
                             "default per workload: the median over its optimizers of their "
                             "mean best validation metric; a bare VALUE applies to every "
                             "dataset not named")
    parser.add_argument("--margin", action="append", default=[], metavar="[DATASET=]VALUE[%]",
                        help="equivalence margin of the significance table and the forest "
                             "plot, in the metric's units or, with %%, in percent of the row's "
                             "best mean, repeatable (e.g. mnist=0.1 fashion_mnist=0.3 2%%): a "
                             "difference to the row's best shown within it by the two "
                             "one-sided tests is 'equivalent'; state it before looking at the "
                             "results. Default: none (verdicts 'better', 'worse' or "
                             "'inconclusive')")
    parser.add_argument("--columns", choices=("global", "per-row"), default="global",
                        help="split optimizer columns by knobs that differ anywhere (global) or "
                             "only within a row (per-row: step sizes tuned per dataset share "
                             "one column; the chosen values are in all_runs.csv)")
    parser.add_argument("--profiles-only", action="store_true",
                        help="write only the validation time-to-target table and the "
                             "performance profiles, e.g. across the runs of several tables "
                             "(make profiles)")
    parser.add_argument("--only", type=_only, default=None, metavar="NAME,...",
                        help="write only these outputs (e.g. significance,forest to refresh a "
                             "committed report without touching its other files); names: "
                             + ",".join(OUTPUTS))
    parser.add_argument("--self-tuning", action="store_true",
                        help="add the self-tuning track (self_tuning.*, plots/"
                             "self_tuning_profile.*) from grid runs: one step size per "
                             "optimizer for all workloads, chosen leave-one-workload-out")
    parser.add_argument("--formats", type=_formats, default=FORMATS, metavar="md,tex,csv",
                        help="table formats to write (default: md,tex,csv)")
    return parser


def write_index(tables: list[Table], plots: list[Path], out: Path) -> Path:
    """``report.md``: every table in Markdown, then links to the figures."""
    parts = ["# SAMT report", ""]
    parts += [f"## {t.name}\n\n{to_markdown(t)}" for t in tables]
    pngs = [p for p in plots if p.suffix == ".png"]
    if pngs:
        parts += ["## Figures", ""]
        parts += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in pngs]
    path = out / "report.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _error(message: str) -> int:
    print(f"samt-report: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``samt-report``; returns the exit code (2: bad arguments, ``--out`` not a
    folder, or no runs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        targets = parse_targets(args.target)
        given_val = parse_targets(args.val_target, defaults={}, option="--val-target")
        given_margins = parse_margins(args.margin)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.out is None:
        first: Path = args.paths[0]
        args.out = (first.parent if is_run_table(first) else first) / "report"
    if args.out.exists() and not args.out.is_dir():
        return _error(f"--out {args.out} is a file; pass a folder (created if needed)")
    try:
        runs, problems = load_runs(args.paths)
    except NoRunsError as exc:
        return _error(str(exc))
    for problem in problems:
        print(f"samt-report: warning: skipped unreadable run folder: {problem}", file=sys.stderr)
    if not runs:
        names = ", ".join(str(p) for p in args.paths)
        return _error(f"no readable run folders under: {names}")

    if args.profiles_only:
        only = frozenset(("val_time_to_target", "performance_profile", "report"))
    else:
        only = args.only or frozenset(o for o in OUTPUTS if o != "self_tuning")
    if args.self_tuning:
        only = only | {"self_tuning"}
    curves = not any(r.from_table for r in runs)  # all_runs.csv holds no per-epoch curves
    skipped = sorted(only & CURVE_OUTPUTS) if not curves else []
    only = only - CURVE_OUTPUTS if not curves else only

    groups = build_groups(runs, per_row_columns=args.columns == "per-row")
    rows, columns = rows_and_columns(groups)
    targets = per_dataset(targets, groups)
    margins = per_dataset(given_margins, groups)
    agg = aggregate(groups)
    ttt = time_to_target(groups, targets) if "time_to_target" in only else pd.DataFrame()
    val_costs = pd.DataFrame()
    if {"val_time_to_target", "performance_profile"} & only:
        val_costs = val_target_costs(groups, val_targets(groups, per_dataset(given_val, groups)))
    profiled, not_everywhere = on_every_workload(val_costs)
    tables = [t for t in build_tables(agg, ttt, rows, columns) if t.name in only]
    if "significance" in only:
        significance = significance_table(groups, rows, margins)
        if significance is not None:
            tables.append(significance)
    if not val_costs.empty and "val_time_to_target" in only:
        tables.append(val_target_table(val_costs))
    sweeps = lr_sweeps(groups)
    tuning, tuning_notes = (self_tuning(sweeps, margins) if "self_tuning" in only
                            else (pd.DataFrame(), []))
    if not tuning.empty:
        tables.append(self_tuning_table(tuning))
    forest = forest_table(groups, rows, margins) if "forest" in only else pd.DataFrame()

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _error(f"--out {out} cannot be created as a folder: {exc}")
    written = write_tables(tables, out, args.formats)
    long_csvs = [("aggregates", agg), ("all_runs", run_table(runs)),
                 ("time_to_target_long", ttt), ("forest", forest), ("self_tuning_long", tuning)]
    if not args.profiles_only:
        long_csvs.append(("val_time_to_target_long", val_costs))
    for name, frame in long_csvs if "csv" in args.formats else []:
        if name.removesuffix("_long") in only and not frame.empty:
            if name == "val_time_to_target_long":
                frame.to_csv(out / f"{name}.csv", index=False)
            else:
                frame.convert_dtypes().to_csv(out / f"{name}.csv", index=False)
            written.append(out / f"{name}.csv")
    plots = plot_all(groups, sweeps, columns, out / "plots", kinds=only)
    rows_named = unique_slugs(list(dict.fromkeys(g.row for g in groups)))
    plots += plot_tuneability(sweeps, palette(columns), out / "plots", rows_named, kinds=only)
    if "performance_profile" in only:
        plots += plot_performance_profiles(profiled, palette(columns), out / "plots")
    if "forest" in only:
        plots += plot_forest(forest, out / "plots")
    if not tuning.empty:
        names = list(dict.fromkeys(tuning["optimizer"]))
        plots += plot_self_tuning_profile(tuning, palette(names), out / "plots")
    if "md" in args.formats and "report" in only:
        written.append(write_index(tables, plots, out))

    failed = sum(r.failed for r in runs)
    running = sum(r.status == "running" for r in runs)
    print(f"samt-report: {len(runs)} runs in {len(groups)} groups ({len(rows)} dataset/model "
          f"rows x {len(columns)} optimizer variants); {failed} failed/diverged/interrupted, "
          f"{running} running" + (f", {len(problems)} unreadable" if problems else ""))
    print(f"  tables ({','.join(args.formats)}): {len(written)} files in {out}/")
    print(f"  plots (png, pdf): {len(plots)} files in {out / 'plots'}/")
    if skipped:
        print(f"  runs read from all_runs.csv have no per-epoch curves (metrics.csv): skipped "
              f"{', '.join(skipped)}")
    no_target = sorted({g.dataset for g in groups} - set(targets))
    if "time_to_target" not in only:
        pass  # not asked for (or skipped): nothing to say about targets
    elif ttt.empty:
        print("  time to target: no targets for these datasets (use --target DATASET=VALUE)")
    elif no_target:
        print(f"  time to target: none for {', '.join(no_target)} (use --target DATASET=VALUE)")
    if not {"val_time_to_target", "performance_profile"} & only:
        pass
    elif val_costs.empty:
        print("  performance profiles: no run has a validation metric (data.val_fraction=0)")
    else:
        print(f"  performance profiles: {val_costs['row'].nunique()} workload(s) with a "
              "validation target (val_time_to_target.md, plots/performance_profile.png)")
    if not_everywhere:
        print(f"  performance profiles leave out {', '.join(not_everywhere)}: not run on "
              "every workload")
    if "forest" in only and forest.empty:
        print("  forest plot: no row with a completed SAMT column and a completed peer")
    if "self_tuning" in only:
        if tuning.empty:
            print("  self-tuning: no optimizer with a step-size grid on two or more workloads")
        else:
            print(f"  self-tuning: {tuning['optimizer'].nunique()} optimizer(s) on "
                  f"{tuning['row'].nunique()} workload(s) (self_tuning.md, "
                  "plots/self_tuning_profile.png)")
        for note in tuning_notes:
            print(f"  self-tuning leaves out {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
