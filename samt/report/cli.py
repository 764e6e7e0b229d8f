"""``samt-report PATH... [--out DIR] [--target [DATASET=]VALUE]... [--val-target
[DATASET=]VALUE]... [--formats md,tex,csv]``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from samt.report.aggregate import (
    DEFAULT_TARGETS,
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
from samt.report.collect import NoRunsError, load_runs
from samt.report.plots import palette, plot_all, plot_performance_profiles, unique_slugs
from samt.report.sensitivity import plot_tuneability
from samt.report.significance import significance_table
from samt.report.tables import (
    FORMATS,
    Table,
    build_tables,
    to_markdown,
    val_target_table,
    write_tables,
)


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


def per_dataset(targets: dict[str, float], groups: list[Group]) -> dict[str, float]:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samt-report",
        description="Aggregate SAMT/Adam/SGD run folders (single runs and multirun sweeps) "
                    "over seeds into paper tables and plots.")
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run folders or folders to search for them (any folder holding "
                             "a summary.json)")
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
    parser.add_argument("--margin", action="append", default=[], metavar="[DATASET=]VALUE",
                        help="equivalence margin of the significance table, in the metric's "
                             "units, repeatable (e.g. mnist=0.1 fashion_mnist=0.3): a difference "
                             "to the row's best shown within it by the two one-sided tests is "
                             "'equivalent'; state it before looking at the results. Default: "
                             "none (verdicts 'better', 'worse' or 'inconclusive')")
    parser.add_argument("--columns", choices=("global", "per-row"), default="global",
                        help="split optimizer columns by knobs that differ anywhere (global) or "
                             "only within a row (per-row: step sizes tuned per dataset share "
                             "one column; the chosen values are in all_runs.csv)")
    parser.add_argument("--profiles-only", action="store_true",
                        help="write only the validation time-to-target table and the "
                             "performance profiles, e.g. across the runs of several tables "
                             "(make profiles)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``samt-report``; returns the exit code (2: bad arguments, ``--out`` not a
    folder, or no runs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        targets = parse_targets(args.target)
        given_val = parse_targets(args.val_target, defaults={}, option="--val-target")
        given_margins = parse_targets(args.margin, defaults={}, option="--margin")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.out is None:
        args.out = args.paths[0] / "report"
    if args.out.exists() and not args.out.is_dir():
        print(f"samt-report: error: --out {args.out} is a file; pass a folder (created if "
              "needed)", file=sys.stderr)
        return 2
    try:
        runs, problems = load_runs(args.paths)
    except NoRunsError as exc:
        print(f"samt-report: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"samt-report: warning: skipped unreadable run folder: {problem}", file=sys.stderr)
    if not runs:
        names = ", ".join(str(p) for p in args.paths)
        print(f"samt-report: error: no readable run folders under: {names}", file=sys.stderr)
        return 2

    groups = build_groups(runs, per_row_columns=args.columns == "per-row")
    rows, columns = rows_and_columns(groups)
    targets = per_dataset(targets, groups)
    agg = aggregate(groups)
    ttt = time_to_target(groups, targets)
    val_costs = val_target_costs(groups, val_targets(groups, per_dataset(given_val, groups)))
    profiled, not_everywhere = on_every_workload(val_costs)
    if args.profiles_only:
        tables = [val_target_table(val_costs)] if not val_costs.empty else []
    else:
        tables = build_tables(agg, ttt, rows, columns)
        margins = per_dataset(given_margins, groups)
        bad = {k: v for k, v in margins.items() if not v > 0}
        if bad:
            parser.error(f"--margin {', '.join(f'{k}={v:g}' for k, v in bad.items())}: a "
                         "margin must be a positive number in the metric's units")
        significance = significance_table(groups, rows, margins)
        if significance is not None:
            tables.append(significance)
        if not val_costs.empty:
            tables.append(val_target_table(val_costs))

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"samt-report: error: --out {out} cannot be created as a folder: {exc}",
              file=sys.stderr)
        return 2
    written = write_tables(tables, out, args.formats)
    if "csv" in args.formats and not args.profiles_only:
        for name, frame in (("aggregates", agg), ("all_runs", run_table(runs))):
            frame.convert_dtypes().to_csv(out / f"{name}.csv", index=False)
            written.append(out / f"{name}.csv")
        if not ttt.empty:
            ttt.convert_dtypes().to_csv(out / "time_to_target_long.csv", index=False)
            written.append(out / "time_to_target_long.csv")
        if not val_costs.empty:
            val_costs.to_csv(out / "val_time_to_target_long.csv", index=False)
            written.append(out / "val_time_to_target_long.csv")
    sweeps = lr_sweeps(groups)
    plots = [] if args.profiles_only else plot_all(groups, sweeps, columns, out / "plots")
    if not args.profiles_only:
        rows_named = unique_slugs(list(dict.fromkeys(g.row for g in groups)))
        plots += plot_tuneability(sweeps, palette(columns), out / "plots", rows_named)
    plots += plot_performance_profiles(profiled, palette(columns), out / "plots")
    if "md" in args.formats:
        written.append(write_index(tables, plots, out))

    failed = sum(r.failed for r in runs)
    running = sum(r.status == "running" for r in runs)
    print(f"samt-report: {len(runs)} runs in {len(groups)} groups ({len(rows)} dataset/model "
          f"rows x {len(columns)} optimizer variants); {failed} failed/diverged/interrupted, "
          f"{running} running" + (f", {len(problems)} unreadable" if problems else ""))
    print(f"  tables ({','.join(args.formats)}): {len(written)} files in {out}/")
    print(f"  plots (png, pdf): {len(plots)} files in {out / 'plots'}/")
    no_target = sorted({g.dataset for g in groups} - set(targets))
    if args.profiles_only:
        pass  # no test-metric tables: time to target is not written
    elif ttt.empty:
        print("  time to target: no targets for these datasets (use --target DATASET=VALUE)")
    elif no_target:
        print(f"  time to target: none for {', '.join(no_target)} (use --target DATASET=VALUE)")
    if val_costs.empty:
        print("  performance profiles: no run has a validation metric (data.val_fraction=0)")
    else:
        print(f"  performance profiles: {val_costs['row'].nunique()} workload(s) with a "
              "validation target (val_time_to_target.md, plots/performance_profile.png)")
    if not_everywhere:
        print(f"  performance profiles leave out {', '.join(not_everywhere)}: not run on "
              "every workload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
