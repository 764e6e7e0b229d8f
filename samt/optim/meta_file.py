"""SAMT's meta-file: the trained meta-parameters (eta models and ``theta``) on disk.

``SAMT.save_meta`` writes one (``write_meta``); ``SAMT(..., meta_init=path)`` reads it back
(``read_meta``) and checks that it fits (``check_fits``). The file holds ``format``,
``version``, ``config`` (the optimizer's ``meta_signature`` and the knobs that shaped the
training), ``meta`` (the meta ``state_dict`` on the CPU) and ``checksum``: a SHA-256 of
``meta``'s tensors (``meta_checksum``), checked on load so that a flipped bit is refused.
Files written before the checksum existed have none and are read as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from samt.optim.blocks import Block
from samt.optim.components import step_shape

META_FORMAT = "samt_meta"   # the ``format`` field of a ``save_meta`` file
META_VERSION = 2            # 2: with ``checksum``; 1 (none) is still read
# What must match for meta-parameters to be loaded (``SAMT.meta_signature``), in message order.
SIGNATURE_KEYS = ("step_type", "projection", "features", "features_per_group", "eta_shared",
                  "eta_hidden", "block_sizes", "theta_shapes")


class MetaInitError(ValueError):
    """``meta_init`` names no usable file, or one whose meta-parameters do not fit.

    ``source`` is what was given, ``detail`` the rest of the message: why, naming the file read
    and what differs (it starts with ``": "`` or a space); ``str()`` is
    ``meta_init=<source><detail>``. A caller that knows ``source`` under another name (a config
    key) writes its own prefix before ``detail``.
    """

    def __init__(self, source: str | os.PathLike, detail: str):
        self.source, self.detail = source, detail
        super().__init__(f"meta_init={str(source)!r}{detail}")


class SavedMeta(NamedTuple):
    """Meta-parameters to start from: the ``file`` they were read from, the ``meta``
    ``state_dict`` (eta models and ``theta``) and the ``signature`` of the optimizer that
    trained them (``SAMT.meta_signature``)."""

    file: Path
    meta: dict[str, torch.Tensor]
    signature: dict[str, Any]


def meta_checksum(meta: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of ``meta``'s names, dtypes, shapes and tensor bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(meta):
        tensor = meta[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_meta(path: str | os.PathLike, meta: dict[str, torch.Tensor],
               config: dict[str, Any]) -> None:
    """Write ``meta`` (copied to the CPU) and ``config`` with their checksum to ``path``,
    atomically (temporary file, fsync, rename)."""
    meta = {k: v.detach().cpu().clone() for k, v in meta.items()}
    payload = {"format": META_FORMAT, "version": META_VERSION, "config": config, "meta": meta,
               "checksum": meta_checksum(meta)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_meta(path: str | os.PathLike) -> SavedMeta:
    """The meta-parameters in a file written by ``save_meta``. Raises ``MetaInitError`` when
    there is no such file, it cannot be read, it is not such a file, or it is corrupt."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MetaInitError(path, ": no such file (give a file written by SAMT.save_meta)")
    return unpack_meta(load_tensors(file, path), file)


def load_tensors(file: Path, source: str | os.PathLike) -> Any:
    """``torch.load`` of ``file`` (tensors only); ``MetaInitError`` for ``source`` naming the
    file when it is truncated, corrupt or not a torch file at all."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise MetaInitError(source, f": {file} cannot be read ({type(exc).__name__}: "
                                    f"{detail})") from None


def unpack_meta(payload: Any, file: Path) -> SavedMeta:
    """The meta-parameters in ``payload``, the content of a ``save_meta`` file read from
    ``file``. Raises ``MetaInitError`` when it is not one, holds no meta-parameters, or does
    not match its checksum (a file without one, written before it existed, is accepted)."""
    if not isinstance(payload, dict) or payload.get("format") != META_FORMAT:
        raise MetaInitError(file, f": {file} is not a file written by SAMT.save_meta")
    meta, signature = payload.get("meta"), payload.get("config")
    if not isinstance(meta, dict) or not isinstance(signature, dict):
        raise MetaInitError(file, f": {file} has no readable meta-parameters")
    stored = payload.get("checksum")
    if stored is not None and (not all(isinstance(v, torch.Tensor) for v in meta.values())
                               or stored != meta_checksum(meta)):
        raise MetaInitError(file, f": {file} is corrupt: its content does not match the "
                                  "checksum stored in it")
    if not meta:
        raise MetaInitError(file, f": {file} holds no meta-parameters (it was written with "
                                  "combine='fixed', which learns no step sizes)")
    return SavedMeta(file, meta, signature)


def meta_signature(blocks: list[Block], *, step_type: str, projection: str,
                   features: list[str], per_group: bool, shared: bool, hidden: int
                   ) -> dict[str, Any]:
    """What two optimizers must share for one's meta-parameters to be loaded into the other
    (``SIGNATURE_KEYS``)."""
    return {
        "step_type": step_type,
        "projection": projection,
        "features": list(features),
        "features_per_group": per_group,
        "eta_shared": shared,
        "eta_hidden": hidden,
        "block_sizes": [len(b.units) for b in blocks],
        "theta_shapes": [list(step_shape(step_type, u.weight.shape))
                         for b in blocks for u in b.units],
    }


def check_fits(given: str | os.PathLike, saved: SavedMeta, signature: dict[str, Any],
               own: dict[str, torch.Tensor]) -> None:
    """Raise ``MetaInitError`` for ``given`` when ``saved`` does not fit an optimizer with
    ``signature`` and meta ``state_dict`` ``own``: the differing signature keys, else the
    tensors whose shapes differ (six at most, then how many more)."""
    file, meta, theirs = saved
    diffs = [f"{k}: {_short(theirs.get(k, '<absent>'))} in {file}, {_short(signature[k])} here"
             for k in SIGNATURE_KEYS if _plain(theirs.get(k, "<absent>")) != _plain(signature[k])]
    if not diffs:
        diffs = [f"{k}: {list(meta[k].shape) if k in meta else '<absent>'} in {file}, "
                 f"{list(own[k].shape) if k in own else '<absent>'} here"
                 for k in sorted(set(own) | set(meta))
                 if k not in meta or k not in own or meta[k].shape != own[k].shape]
    if diffs:
        raise MetaInitError(given, " does not fit this model and optimizer: "
                            + "; ".join(diffs[:6])
                            + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""))


def _plain(value: Any) -> Any:
    """Lists for tuples (a signature read back from a file compares equal to a fresh one)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) <= 160 else text[:157] + "..."
