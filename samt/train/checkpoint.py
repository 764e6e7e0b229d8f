"""Checkpoints and the run folder's state: what a (re)run in a folder should do.

``checkpoint.pt`` is written at the end of every epoch, atomically (temporary file in the same
folder, flush, fsync, ``os.replace``, fsync of the folder). It holds everything the run needs to
continue exactly where that epoch ended: model and optimizer state, every RNG, the metric rows
and the counters. ``plan_run`` decides from the folder's files and ``resume`` whether a run
starts fresh, resumes from the checkpoint or has nothing left to do (see docs/reliability.md).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from samt.holdout import without_inactive_val_keys
from samt.run_folder import FolderLock, RunFolderError
from samt.tracking import TENSORBOARD_DIR
from samt.train.records import write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
# Files a run writes into its folder; a fresh start (resume=false) removes them first.
SAMT_META = "samt_meta.pt"
RESULT_FILES = ("metrics.csv", "summary.json", CHECKPOINT, "learning_curves.png",
                "samt_steps.png", "config.yaml", SAMT_META)
# Keys that do not change a run's numbers: they may differ between a run and its resumption.
# ``tuning`` is the experiment presets' protocol block, read by scripts/reproduce.py only.
IGNORED_KEYS = ("progress", "resume", "data.root", "data.download", "device.threads",
                "eval_batch_size", "tuning", "logger")
FINAL_STATUSES = ("completed", "diverged")
# What a checkpoint must hold (besides ``format``), with the type of each value.
CHECKPOINT_KEYS: dict[str, type] = {"epoch": int, "config": dict, "device": str, "model": dict,
                                    "optimizer": dict, "rng": dict, "rows": list,
                                    "counters": dict}

__all__ = ["CHECKPOINT", "FORMAT", "SAMT_META", "CheckpointError", "FolderLock", "Plan",
           "RunFolderError", "check_complete", "clear_results", "holds_results",
           "load_checkpoint", "plan_run", "save_checkpoint"]


class CheckpointError(Exception):
    """``checkpoint.pt`` exists but cannot be read; the message names the file."""


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically: a crash leaves the old file or the new."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint (tensors and plain types only: ``weights_only``) onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a checkpoint at all
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        detail = next((line for line in lines if "Unpickler error" in line),
                      lines[0].split(". ")[0])[:300]
        raise CheckpointError(
            f"{path} cannot be read ({type(exc).__name__}: {detail}); "
            "delete it to start this run over, or pass resume=false") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a samt checkpoint of format {FORMAT} "
                              f"(found {found!r}); delete it or pass resume=false")
    return state


def check_complete(path: Path, state: dict) -> None:
    """Raise ``CheckpointError`` naming ``path`` and the keys a resumption needs that ``state``
    lacks (or holds with the wrong type); the file is left as it is."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    wrong = [f"{key} ({type(state[key]).__name__}, expected {kind.__name__})"
             for key, kind in CHECKPOINT_KEYS.items()
             if key in state and (not isinstance(state[key], kind) or isinstance(state[key], bool))]
    if missing or wrong:
        what = "; ".join(([f"missing keys: {', '.join(missing)}"] if missing else [])
                         + ([f"malformed: {', '.join(wrong)}"] if wrong else []))
        raise CheckpointError(f"{path} is not a complete samt checkpoint ({what}); pass "
                              "resume=false to start this run over (it replaces the file)")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every result-relevant key that differs (``IGNORED_KEYS`` aside).

    A key absent on one side and null on the other is no difference: a key added to the
    configs later with a null default (e.g. ``optimizer.meta_init``) keeps older runs resumable.
    Likewise ``data.val_fraction`` 0 (and any ``data.val_seed`` with it) equals absent.
    """
    a = without_inactive_val_keys(_flatten(old))
    b = without_inactive_val_keys(_flatten(new))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("device.") or any(key == k or key.startswith(f"{k}.")
                                            for k in IGNORED_KEYS):
            continue
        if a.get(key) is None and b.get(key) is None:
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return diffs


@dataclass
class Plan:
    """What a run in a folder does: ``fresh``, ``resume`` (from ``checkpoint``) or ``done``."""

    kind: str
    checkpoint: dict | None = None
    summary: dict | None = None


def _read_summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _recorded_config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, dict) else None


def plan_run(run_dir: Path, cfg: dict, device: str) -> Plan:
    """Decide from ``run_dir``'s files and ``cfg['resume']`` (auto | true | false) what to do.

    ``device`` is the resolved device type; a checkpoint from another device type is refused.
    Raises ``RunFolderError`` (other config, nothing to resume) or ``CheckpointError``.
    """
    mode = cfg.get("resume", "auto")
    if mode is False:
        return Plan("fresh")
    ckpt_path = run_dir / CHECKPOINT
    summary = _read_summary(run_dir)
    checkpoint = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    if checkpoint is not None:
        check_complete(ckpt_path, checkpoint)
    # A summary alone (a run that failed or stopped before its first epoch ended) holds nothing
    # to protect or resume.
    has_results = checkpoint is not None or (run_dir / "metrics.csv").is_file() or (
        summary is not None and summary.get("status") in FINAL_STATUSES)
    if not has_results:
        if mode is True:
            raise RunFolderError(f"resume=true but {run_dir} holds no {CHECKPOINT} to resume "
                                 "from; pass hydra.run.dir=<the run folder> (or resume=auto)")
        return Plan("fresh")
    recorded = checkpoint["config"] if checkpoint is not None else _recorded_config(run_dir)
    if recorded is None:
        raise RunFolderError(
            f"{run_dir} already holds results but no record of their config (config.yaml); "
            "use another hydra.run.dir, or resume=false to overwrite them")
    diffs = config_differences(recorded, cfg)
    if diffs:
        raise RunFolderError(
            f"{run_dir} holds a run of a different config ({'; '.join(diffs)}); use another "
            "hydra.run.dir (or hydra.sweep.dir), or resume=false to overwrite it")
    if checkpoint is not None and checkpoint.get("device") != device:
        raise RunFolderError(
            f"{run_dir / CHECKPOINT} was written on device {checkpoint.get('device')}, this run "
            f"would use {device}: resuming would not reproduce the run; pass "
            f"device={checkpoint.get('device')}, or resume=false to start over")
    if summary is not None and summary.get("status") in FINAL_STATUSES and (
            checkpoint is None or checkpoint["epoch"] == summary.get("epochs_completed")):
        return Plan("done", summary=summary)
    if checkpoint is not None:
        return Plan("resume", checkpoint=checkpoint, summary=summary)
    if mode is True:
        raise RunFolderError(f"resume=true but {run_dir} holds no {CHECKPOINT} (the run stopped "
                             "before its first epoch ended); pass resume=auto to start it over")
    return Plan("fresh")


def holds_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run's results: rows, a checkpoint or a final summary."""
    summary = _read_summary(run_dir)
    return ((run_dir / CHECKPOINT).is_file() or (run_dir / "metrics.csv").is_file()
            or (isinstance(summary, dict) and summary.get("status") in FINAL_STATUSES))


def clear_results(run_dir: Path) -> None:
    """Remove a previous run's result files (a fresh start in an existing folder)."""
    for name in (*RESULT_FILES, f".{CHECKPOINT}.tmp", f".{SAMT_META}.tmp"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)  # logger=tensorboard events
