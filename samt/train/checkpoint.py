"""The format of ``checkpoint.pt`` and the config comparison that decides whether a run folder
holds "the same run" (``samt.train.folder.RunFolder`` uses both; see docs/reliability.md).

``checkpoint.pt`` is written at the end of every epoch, atomically (temporary file in the same
folder, flush, fsync, ``os.replace``, fsync of the folder). It holds everything the run needs to
continue exactly where that epoch ended: model and optimizer state, every RNG, the metric rows
and the counters, and ``checksum``, a SHA-256 of all that (``content_checksum``), checked when
the file is read: a file changed on disk since is refused, not resumed from.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from samt.holdout import without_inactive_val_keys
from samt.run_folder import (
    BUILD_KEYS,
    CHECKPOINT,
    FolderLock,
    RunFolderError,
    without_added_defaults,
)
from samt.train.records import write_atomic

FORMAT = 1
# Keys that do not change a run's numbers: they may differ between a run and its resumption.
# ``tuning`` is the experiment presets' protocol block, read by samt-reproduce only; ``tags``
# label a run (a rerun with other tags finds the run finished, its summary keeps its tags).
IGNORED_KEYS = ("progress", "resume", "data.root", "data.download", "device.threads",
                "eval_batch_size", "tuning", "logger", "tags")
# What a checkpoint must hold (besides ``format``), with the type of each value.
CHECKPOINT_KEYS: dict[str, type] = {"epoch": int, "config": dict, "device": str, "model": dict,
                                    "optimizer": dict, "rng": dict, "rows": list,
                                    "counters": dict}

__all__ = ["CHECKPOINT", "FORMAT", "CheckpointError", "FolderLock", "RunFolderError",
           "check_checksum", "check_complete", "config_differences", "content_checksum",
           "load_checkpoint", "save_checkpoint"]


class CheckpointError(Exception):
    """``checkpoint.pt`` exists but cannot be read; the message names the file."""


def _feed(digest: Any, node: Any) -> None:
    """Feed ``node`` (a checkpoint's dicts, lists, tensors and plain values) into ``digest``."""
    if isinstance(node, torch.Tensor):
        flat = node.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{node.dtype}{tuple(node.shape)}:".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(node, dict):
        digest.update(f"D{len(node)}:".encode())
        for key, value in node.items():
            digest.update(f"{type(key).__name__}{key!r}=".encode())
            _feed(digest, value)
    elif isinstance(node, list | tuple):
        digest.update(f"{type(node).__name__[0]}{len(node)}:".encode())
        for value in node:
            _feed(digest, value)
    else:
        digest.update(f"{type(node).__name__}{node!r};".encode())


def content_checksum(state: dict) -> str:
    """SHA-256 of a checkpoint's content (every key but ``checksum``, tensors by their bytes):
    stored in the file at ``checksum`` and checked when it is read, so that a flipped bit is
    found instead of resumed from."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != "checksum"})
    return digest.hexdigest()


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` ``payload`` (with its ``checksum``) to ``path`` atomically: a crash leaves
    the old file or the new."""
    buf = io.BytesIO()
    torch.save({**payload, "checksum": content_checksum(payload)}, buf)
    write_atomic(path, buf.getvalue())


def check_checksum(path: Path, state: dict) -> bool:
    """Whether ``state`` (read from ``path``) matches the checksum stored in it; True for a
    checkpoint written before checksums were stored (it has none)."""
    stored = state.get("checksum")
    return stored is None or stored == content_checksum(state)


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
    if not check_checksum(path, state):
        raise CheckpointError(f"{path} is corrupt: its content does not match the checksum "
                              "stored in it (changed on disk since it was written); delete it "
                              "to start this run over, or pass resume=false")
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
    a = without_added_defaults(without_inactive_val_keys(_flatten(old)))
    b = without_added_defaults(without_inactive_val_keys(_flatten(new)))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("device.") or any(key == k or key.startswith(f"{k}.")
                                            for k in IGNORED_KEYS):
            continue
        if a.get(key) is None and b.get(key) is None:
            continue
        if key in BUILD_KEYS and (key not in a or key not in b):  # a run from before _target_
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return diffs
