"""Atomic file writes, the one helper for every file samt writes outside ``samt.optim``: a
temporary file in the same folder, flush, fsync, ``os.replace``, fsync of the folder. A crash at
any moment leaves the old file or the new one, never a torn one; a failed write (a full disk,
an exception while writing) removes its temporary file and raises.

``unique=True`` gives the temporary file a name of its own (``.<name>.<random>.tmp``), for
files that several processes may write at once (a dataset prepared by parallel jobs);
``move_atomic`` puts a file already written elsewhere on the same file system into place.

Imports nothing of samt, so that any layer can use it (``samt.optim`` keeps its own copy for
``SAMT.save_meta``: it imports only torch and the standard library).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "current_umask", "fsync_dir", "move_atomic", "write_atomic"]


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


def current_umask() -> int:
    """The process umask, read from /proc where possible (setting it briefly otherwise)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_temporary(tmp: Path) -> BinaryIO:
    """The temporary file, opened for writing (a seam for tests that fill the disk)."""
    return open(tmp, "wb")


def _open_unique(path: Path) -> tuple[Path, BinaryIO]:
    """A new temporary file beside ``path`` with a name of its own, with a plain file's mode
    (``mkstemp`` makes it 0600)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(name, 0o666 & ~current_umask())
        return Path(name), os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, unique: bool = False) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as fh: fh.write(...)``: ``path`` appears, whole, only when the
    block ends without an exception (streamed writes: copies, decompression, ``torch.save``).
    The temporary file is ``.<name>.tmp`` beside ``path`` (``unique``: ``.<name>.<random>.tmp``,
    so that processes writing the same file at once never share one); the new file gets the
    mode a plain ``open`` would give it."""
    path = Path(path)
    tmp: Path | None = None if unique else path.with_name(f".{path.name}.tmp")
    try:
        if tmp is None:
            tmp, opened = _open_unique(path)
        else:
            opened = _open_temporary(tmp)
        with opened as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    fsync_dir(path.parent)


def move_atomic(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the finished file ``source`` (on the same file system: a temporary folder beside
    ``path``) in place as ``path`` by one rename, durably (``fsync_dir``)."""
    os.replace(source, path)
    fsync_dir(Path(path).parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (``atomic_file``)."""
    with atomic_file(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
