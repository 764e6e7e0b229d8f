"""Find run folders under some paths and load them (config, summary, per-epoch metrics)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from samt.run_folder import ADDED_DEFAULTS, COMPLETED_STATUSES

FAILED_STATUSES = ("failed", "diverged", "interrupted")
REQUIRED_CONFIG_KEYS = ("dataset.name", "model.name", "optimizer.name")
# summary.json fields the report reads, with the JSON types each may have (null always may).
NUMBER_FIELDS = ("epochs_completed", "best_test_metric", "best_val_metric", "wall_time_s",
                 "param_updates")
TEXT_FIELDS = ("status", "metric")
FINAL_FIELDS = ("train_loss", "train_metric", "test_loss", "test_metric", "val_loss",
                "val_metric")
# all_runs.csv (aggregate.run_table): the columns before the flattened config, and the per-run
# numbers (aggregate.METRICS, in that order).
RUN_TABLE_FIELDS = ("path", "status", "error", "epochs_completed", "metric", "higher_is_better")
RUN_TABLE_VALUES = ("final_test_metric", "best_test_metric", "final_train_loss", "epoch_time_s",
                    "param_updates", "final_val_metric")


@dataclass
class Run:
    """One run folder: its flattened config, ``summary.json`` and ``metrics.csv``."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: pd.DataFrame
    from_table: bool = False  # rebuilt from a row of an all_runs.csv: no per-epoch curves

    @property
    def status(self) -> str:
        return str(self.summary.get("status") or "unknown")

    @property
    def completed(self) -> bool:
        """Ended as asked: all its epochs, or stopped at its target (``reached_target``)."""
        return self.status in COMPLETED_STATUSES

    @property
    def failed(self) -> bool:
        """Stopped early without finishing: failed, diverged or interrupted."""
        return self.status in FAILED_STATUSES


class NoRunsError(Exception):
    """No run folder (a folder holding ``summary.json``) was found under the given paths."""


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder at or below ``paths`` that holds a ``summary.json``, sorted, no duplicates."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise NoRunsError(f"no such path: {', '.join(missing)}")
    found: set[Path] = set()
    for path in paths:
        if path.is_file():
            path = path.parent if path.name == "summary.json" else path
        found.update(p.parent.resolve() for p in path.rglob("summary.json"))
        if (path / "summary.json").is_file():
            found.add(path.resolve())
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise NoRunsError(f"no run folders (folders with a summary.json) found under: {names}")
    return sorted(found)


def _freeze(value: Any) -> Any:
    """Lists (also nested, also holding dicts) as tuples, so that a config value is hashable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), _freeze(v)) for k, v in value.items())
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"optimizer.lr": 0.1, "model.hidden": (400,)}`` (lists become tuples)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = _freeze(value)
    return flat


def _read_config(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``config.yaml`` (or Hydra's copy); else the little that ``summary.json`` records.

    Raises ``ValueError`` when the file is empty, not a mapping or names no dataset, model
    and optimizer.
    """
    for candidate in (path / "config.yaml", path / ".hydra" / "config.yaml"):
        if candidate.is_file():
            with open(candidate, encoding="utf-8") as fh:
                tree = yaml.safe_load(fh)
            if not isinstance(tree, dict):
                what = "empty" if tree is None else f"a {type(tree).__name__}, not a mapping"
                raise ValueError(f"{candidate}: {what}")
            flat = flatten(tree)
            for key in REQUIRED_CONFIG_KEYS:
                if not isinstance(flat.get(key), str):
                    raise ValueError(f"{candidate}: {key} is {flat.get(key)!r}, expected a name")
            return flat
    return {"dataset.name": summary.get("dataset"), "model.name": summary.get("model"),
            "optimizer.name": summary.get("optimizer"), "optimizer.label": summary.get("label"),
            "seed": summary.get("seed"), "epochs": summary.get("epochs")}


def _read_metrics(path: Path) -> pd.DataFrame:
    file = path / "metrics.csv"
    if not file.is_file() or file.stat().st_size == 0:
        return pd.DataFrame()
    frame = pd.read_csv(file)
    if not frame.empty and ("epoch" not in frame.columns
                            or pd.to_numeric(frame["epoch"], errors="coerce").isna().any()):
        raise ValueError(f"{file}: no numeric epoch column")
    return frame


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def check_summary(file: Path, summary: Any) -> None:
    """Raise ``ValueError`` naming ``file`` and the field when ``summary`` is not the
    documented JSON object (wrong types of the fields the report reads)."""
    if not isinstance(summary, dict):
        what = "null" if summary is None else f"a JSON {type(summary).__name__}"
        raise ValueError(f"{file}: {what}, expected an object")
    final = summary.get("final")
    problems = [f"{key}={summary[key]!r} (expected a number)" for key in NUMBER_FIELDS
                if not _is_number(summary.get(key))]
    problems += [f"{key}={summary[key]!r} (expected text)" for key in TEXT_FIELDS
                 if not isinstance(summary.get(key), str | None)]
    if not isinstance(summary.get("higher_is_better"), bool | None):
        problems.append(f"higher_is_better={summary['higher_is_better']!r} (expected a boolean)")
    if not isinstance(final, dict | None):
        problems.append(f"final={final!r} (expected an object)")
    elif final is not None:
        problems += [f"final.{key}={final[key]!r} (expected a number)" for key in FINAL_FIELDS
                     if not _is_number(final.get(key))]
    if problems:
        raise ValueError(f"{file}: {'; '.join(problems)}")


def load_run(path: Path) -> Run:
    """Load one run folder; raises ``ValueError`` naming the file when ``summary.json``,
    ``config.yaml`` or ``metrics.csv`` is unreadable or malformed."""
    try:
        with open(path / "summary.json", encoding="utf-8") as fh:
            summary = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path / 'summary.json'}: {exc}") from exc
    check_summary(path / "summary.json", summary)
    config = _read_config(path, summary)
    config.setdefault("optimizer.label", config.get("optimizer.name"))
    return Run(path=path, config=config, summary=summary, metrics=_read_metrics(path))


def is_run_table(path: Path) -> bool:
    """Whether a PATH names a run table (an ``all_runs.csv`` or another ``.csv`` file)."""
    return Path(path).suffix == ".csv" and Path(path).is_file()


def _cell(text: str) -> Any:
    """A config cell of all_runs.csv as the value it was written from: ``True``/``False``,
    an int, a float, a list (``[400]``, ``[0.9,0.999]``: a tuple, as ``flatten`` makes it),
    else the text; ``None`` for an empty cell (a null or absent key)."""
    if text == "":
        return None
    if text in ("True", "False", "true", "false"):
        return text in ("True", "true")
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if not isinstance(number, float) or math.isfinite(number):
            return number
    if text.startswith("[") and text.endswith("]"):
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(items, list):
            return _freeze([_cell(str(v)) if isinstance(v, str) else
                            (_cell("") if v is None else v) for v in items])
    return text


def _number_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _metric_of(dataset: str) -> str:
    """The test metric of a dataset for a run table without a ``metric`` column (older
    all_runs.csv): RMSE for the UCI regression sets, accuracy otherwise."""
    return "rmse" if dataset.startswith("uci_") else "accuracy"


def run_from_row(row: dict[str, str], source: Path) -> Run:
    """One line of an all_runs.csv (``aggregate.run_table``) as a ``Run`` without per-epoch
    metrics: its config (cells parsed back, an empty one as None) and a summary holding the
    numbers the tables read. Raises ``ValueError`` for a line without a dataset, model or
    optimizer name."""
    config = {k: _cell(v) for k, v in row.items()
              if k not in RUN_TABLE_FIELDS + RUN_TABLE_VALUES and k is not None}
    # empty cells stay as None: the grouping counts a null as absent, and run_table writes
    # the column back as it was
    for key, default in ADDED_DEFAULTS.items():  # 0 read back where 0.0 was written
        if key in config and config[key] == default and type(config[key]) is not bool:
            config[key] = default
    # the flattened config's names are text even where they read as numbers
    for key in (*REQUIRED_CONFIG_KEYS, "optimizer.label"):
        if row.get(key):
            config[key] = row[key]
    missing = [k for k in REQUIRED_CONFIG_KEYS if not config.get(k)]
    if missing:
        raise ValueError(f"{source}: line of {row.get('path') or '?'}: no {', '.join(missing)}")
    config.setdefault("optimizer.label", config["optimizer.name"])
    values = {k: _number_or_none(row.get(k) or "") for k in RUN_TABLE_VALUES}
    epochs = _cell(row.get("epochs_completed") or "")
    metric = row.get("metric") or _metric_of(str(config["dataset.name"]))
    higher = _cell(row.get("higher_is_better") or "")
    if not isinstance(higher, bool):
        higher = metric == "accuracy"
    time = values["epoch_time_s"]
    summary = {
        "status": row.get("status") or "unknown", "error": row.get("error") or None,
        "epochs_completed": epochs, "metric": metric, "higher_is_better": higher,
        "final": {"test_metric": values["final_test_metric"],
                  "val_metric": values["final_val_metric"],
                  "train_loss": values["final_train_loss"]},
        "best_test_metric": values["best_test_metric"],
        "param_updates": values["param_updates"], "epoch_time_s": time,
        "wall_time_s": time * epochs if time is not None and isinstance(epochs, int | float)
        else None}
    return Run(path=Path(row.get("path") or source), config=config, summary=summary,
               metrics=pd.DataFrame(), from_table=True)


def load_run_table(path: Path) -> list[Run]:
    """Runs rebuilt from an ``all_runs.csv`` that ``samt-report`` wrote (one per line).
    Raises ``ValueError`` when the file is not such a table."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: {' '.join(str(exc).split())}") from exc
    needed = ("path", "status", *REQUIRED_CONFIG_KEYS, "final_test_metric")
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise ValueError(f"{path}: not an all_runs.csv of samt-report (no column "
                         f"{', '.join(absent)})")
    return [run_from_row(row, path) for row in frame.to_dict("records")]


def load_runs(paths: Iterable[Path]) -> tuple[list[Run], list[str]]:
    """All runs under ``paths`` plus one message per folder that could not be read.

    A path that is a ``.csv`` file is read as an ``all_runs.csv`` (``load_run_table``): its
    runs have no per-epoch curves (``Run.from_table``)."""
    paths = [Path(p) for p in paths]
    runs, problems = [], []
    tables = [p for p in paths if is_run_table(p)]
    for table in tables:
        try:
            runs += load_run_table(table)
        except ValueError as exc:
            problems.append(str(exc))
    folders = [p for p in paths if p not in tables]
    if not folders:
        if not runs and problems:
            raise NoRunsError("; ".join(problems))
        return runs, problems
    for folder in find_run_dirs(folders):
        try:
            runs.append(load_run(folder))
        except (OSError, ValueError, yaml.YAMLError, pd.errors.ParserError) as exc:
            message = " ".join(str(exc).split())  # one line per folder, naming it
            problems.append(message if str(folder) in message else f"{folder}: {message}")
    return runs, problems
