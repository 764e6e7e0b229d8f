"""Atomic file writes, the one helper for every file samt writes outside ``samt.optim``: a
temporary file in the same folder, flush, fsync, ``os.replace``, fsync of the folder. A crash at
any moment leaves the old file or the new one, never a torn one; a failed write (a full disk,
an exception while writing) removes its temporary file and raises.

Imports nothing of samt, so that any layer can use it (``samt.optim`` keeps its own copy for
``SAMT.save_meta``: it imports only torch and the standard library).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "fsync_dir", "write_atomic"]


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temporary(tmp: Path) -> BinaryIO:
    """The temporary file, opened for writing (a seam for tests that fill the disk)."""
    return open(tmp, "wb")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as fh: fh.write(...)``: ``path`` appears, whole, only when the
    block ends without an exception (streamed writes: copies, decompression, ``torch.save``).
    The temporary file is ``.<name>.tmp`` beside ``path``; the new file gets the mode a plain
    ``open`` would give it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with _open_temporary(tmp) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (``atomic_file``)."""
    with atomic_file(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
