"""Paper tables (rows = dataset / model, columns = optimizer variant) in Markdown, LaTeX, CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from samt.report.aggregate import METRICS, Metric

FORMATS = ("md", "tex", "csv")
PM = "±"


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False


@dataclass
class Table:
    """A rectangular table: ``header`` names every column, each row has as many cells."""

    name: str
    title: str
    header: list[str]
    rows: list[list[Cell]]


# --- numbers -----------------------------------------------------------------------------------

def decimals(values: list[float], integer: bool = False) -> int:
    """Decimals that show the largest |value| with 4 significant digits (0 to 6)."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    if integer or not finite:
        return 0
    largest = max(finite)
    if largest == 0:
        return 2
    return min(6, max(0, 3 - math.floor(math.log10(largest))))


def mean_pm_std(mean: float, std: float, places: int) -> str:
    """``"93.59 ± 0.12"``; just the mean when the std is undefined (a single run)."""
    if not math.isfinite(mean):
        return "–"
    text = f"{mean:.{places}f}"
    return f"{text} {PM} {std:.{places}f}" if math.isfinite(std) else text


def status_note(rec: pd.Series) -> str:
    """``""``, ``" (1/3 failed)"`` or ``" (1/3 failed, 1/3 running)"`` for a group's record."""
    total = int(rec["runs"])
    parts = [f"{int(rec[k])}/{total} {k}" for k in ("failed", "running") if int(rec[k])]
    return f" ({', '.join(parts)})" if parts else ""


def _no_value(rec: pd.Series) -> str:
    """Cell text for a group without a completed run: ``failed (3/3)`` / ``running (1/2)``."""
    total = int(rec["runs"])
    for kind in ("failed", "running"):
        if int(rec[kind]):
            return f"{kind} ({int(rec[kind])}/{total})"
    return f"no result (0/{total})"


# --- building ----------------------------------------------------------------------------------

def _lower_is_better(metric: Metric, recs: list[pd.Series]) -> bool | None:
    if metric.lower_is_better is not None:
        return metric.lower_is_better
    flags = {rec["higher_is_better"] for rec in recs if rec["higher_is_better"] is not None}
    return None if len(flags) != 1 else not flags.pop()


def metric_table(agg: pd.DataFrame, metric: Metric, rows: list[str],
                 columns: list[str]) -> Table:
    """``mean ± std`` over completed seeds; the best mean per row (compared as shown, ties all
    marked) is marked unless every value in the row is the same."""
    task_metric = metric.lower_is_better is None
    header = ["dataset / model", *(["metric"] if task_metric else []), *columns]
    body = []
    for row in rows:
        recs = {rec["column"]: rec for _, rec in agg[agg["row"] == row].iterrows()}
        means = {c: rec[f"{metric.name}_mean"] for c, rec in recs.items()}
        places = decimals(list(means.values()), integer=metric.name == "param_updates")
        shown = {c: round(m, places) for c, m in means.items() if math.isfinite(m)}
        lower = _lower_is_better(metric, list(recs.values()))
        best = None
        if lower is not None and len(set(shown.values())) >= 2:
            best = min(shown.values()) if lower else max(shown.values())
        cells = [Cell(row)]
        if task_metric:
            cells.append(Cell(next((str(r["metric"]) for r in recs.values()
                                    if isinstance(r["metric"], str)), "")))
        for column in columns:
            rec = recs.get(column)
            if rec is None:
                cells.append(Cell(""))
            elif int(rec["completed"]) == 0 or column not in shown:
                cells.append(Cell(_no_value(rec) if int(rec["completed"]) == 0 else "–"))
            else:
                text = mean_pm_std(means[column], rec[f"{metric.name}_std"], places)
                cells.append(Cell(text + status_note(rec), best=shown[column] == best))
        body.append(cells)
    title = f"{metric.title}: mean {PM} std over seeds (n in run_counts); best per row in bold."
    return Table(metric.name, title, header, body)


def counts_table(agg: pd.DataFrame, rows: list[str], columns: list[str]) -> Table:
    """Completed / total runs per cell, plus failed (failed, diverged, interrupted) and running."""
    body = []
    for row in rows:
        recs = {rec["column"]: rec for _, rec in agg[agg["row"] == row].iterrows()}
        cells = [Cell(row)]
        for column in columns:
            rec = recs.get(column)
            cells.append(Cell("" if rec is None else
                              f"{int(rec['completed'])}/{int(rec['runs'])}" + status_note(rec)))
        body.append(cells)
    return Table("run_counts", "Completed runs / all runs per variant (failed = failed, "
                 "diverged or interrupted)", ["dataset / model", *columns], body)


def target_table(ttt: pd.DataFrame) -> Table:
    """Time to target: runs that reached it and the mean epochs, updates, seconds over those."""
    header = ["dataset / model", "target", "optimizer", "reached", "epochs", "param updates",
              "seconds"]
    body = []
    for _, rec in ttt.iterrows():
        reached = f"{int(rec['reached'])}/{int(rec['runs'])}"
        if int(rec["reached"]):
            values = [f"{round(rec['epochs_mean'], 2):g}",
                      f"{rec['param_updates_mean']:.0f}",
                      f"{rec['seconds_mean']:.{decimals([rec['seconds_mean']])}f}"]
        else:
            values = ["not reached"] * 3
        body.append([Cell(rec["row"]), Cell(f"{rec['direction']} {rec['target']:g}"),
                     Cell(rec["column"]), Cell(reached), *map(Cell, values)])
    title = ("Time to target (first epoch whose test metric reaches the target): mean over the "
             "runs that reached it")
    return Table("time_to_target", title, header, body)


def val_target_table(costs: pd.DataFrame) -> Table:
    """Per workload and optimizer: the validation target, runs that reached it and the median
    seconds and parameter updates to it (the numbers behind the performance profiles)."""
    header = ["dataset / model", "validation target", "optimizer", "reached",
              "seconds (median)", "param updates (median)", "target rule"]
    body = []
    for _, rec in costs.iterrows():
        values = [f"{rec[name]:.{places}f}" if math.isfinite(rec[name]) else "not reached"
                  for name, places in (("seconds", decimals([rec["seconds"]])),
                                       ("param_updates", 0))]
        target = f"{rec['direction']} {rec['target']:.{decimals([rec['target']])}f}"
        body.append([Cell(rec["row"]), Cell(target), Cell(rec["column"]),
                     Cell(f"{int(rec['reached'])}/{int(rec['runs'])}"), *map(Cell, values),
                     Cell(rec["rule"])])
    title = ("Time to the validation target (first epoch whose validation metric reaches it): "
             "median over runs, not reached unless more than half of them reached it")
    return Table("val_time_to_target", title, header, body)


def build_tables(agg: pd.DataFrame, ttt: pd.DataFrame, rows: list[str],
                 columns: list[str]) -> list[Table]:
    """All wide tables: one per metric (an optional one only when some run has a value), the
    run counts, and time to target (if any target)."""
    tables = [metric_table(agg, m, rows, columns) for m in METRICS
              if not m.optional or (agg[f"{m.name}_n"] > 0).any()]
    tables.append(counts_table(agg, rows, columns))
    if not ttt.empty:
        tables.append(target_table(ttt))
    return tables


# --- rendering ---------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"**{table.title}**", "",
             "| " + " | ".join(esc(h) for h in table.header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|"]
    for row in table.rows:
        texts = [f"**{esc(c.text)}**" if c.best else esc(c.text) for c in row]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", PM: r"$\pm$", "–": "--", ">=": r"$\geq$",
                "<=": r"$\leq$", "<": r"$<$", ">": r"$>$"}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; ``±`` becomes ``$\\pm$``."""
    out, i = [], 0
    while i < len(text):
        two = text[i:i + 2]
        if two in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[two])
            i += 2
        else:
            out.append(_TEX_SPECIAL.get(text[i], text[i]))
            i += 1
    return "".join(out)


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` to ``\\input`` into a paper (needs ``\\usepackage{booktabs}``)."""
    spec = "l" + "c" * (len(table.header) - 1)

    def cell(c: Cell) -> str:
        return f"\\textbf{{{tex_escape(c.text)}}}" if c.best else tex_escape(c.text)

    lines = [f"% {tex_escape(table.title)}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(tex_escape(h) for h in table.header) + r" \\", "\\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in table.rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Cells as shown; the best entry per row ends in `` *``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows([[c.text + (" *" if c.best else "") for c in row] for row in table.rows])
    return buf.getvalue()


RENDERERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv}


def write_tables(tables: list[Table], out: Path, formats: tuple[str, ...]) -> list[Path]:
    """Write ``{name}.{fmt}`` per table and format; returns the paths written."""
    written = []
    for table in tables:
        for fmt in formats:
            path = out / f"{table.name}.{fmt}"
            path.write_text(RENDERERS[fmt](table), encoding="utf-8")
            written.append(path)
    return written
