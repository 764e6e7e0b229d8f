"""The run folder as a place on disk: its file names, one writer at a time, a path that can
hold a run, and undoing what a refused run added (and nothing else).

Imports neither torch nor Hydra (``samt.cli`` uses it before any heavy import is needed).
See docs/reliability.md: a run refused for a user error removes only the files and folders this
process created; it never deletes a folder another process is writing (it holds the folder's
lock), nor files that were there before it started.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# summary.json's ``status`` (docs/outputs.md)
STATUS_RUNNING, STATUS_COMPLETED, STATUS_FAILED = "running", "completed", "failed"
STATUS_DIVERGED, STATUS_INTERRUPTED = "diverged", "interrupted"
STATUS_REACHED_TARGET = "reached_target"  # stopped early: its validation metric hit stop_at_target
# A run that ended as asked (all its epochs, or its target reached): its results count
# (samt-report's means, samt-reproduce's choices).
COMPLETED_STATUSES = (STATUS_COMPLETED, STATUS_REACHED_TARGET)
FINAL_STATUSES = (*COMPLETED_STATUSES, STATUS_DIVERGED)  # a run that ended: nothing left to do
# Optimizer keys that say how the optimizer is built, not what it computes. Run folders written
# before optimizers were built by ``_target_`` lack them: such a run still resumes, counts as
# finished and groups with newer runs of the same optimizer (label and options).
BUILD_KEYS = ("optimizer._target_", "optimizer._partial_", "optimizer.constant_schedule_only")
# Options added after runs existed, with the value that does what their absence did: a recorded
# config without the key equals one that holds this value (resume, grouping in reports).
ADDED_DEFAULTS = {"optimizer.meta_normalize": False, "optimizer.compile": False,
                  "optimizer.meta_trace": 0.0, "optimizer.meta_anchor": 0.0,
                  "data.augment": "none"}


def without_added_defaults(flat: dict) -> dict:
    """A flattened config without the ``ADDED_DEFAULTS`` keys that hold their default."""
    return {k: v for k, v in flat.items()
            if not (k in ADDED_DEFAULTS and v == ADDED_DEFAULTS[k]
                    and type(v) is type(ADDED_DEFAULTS[k]))}

# The files of a run folder (docs/outputs.md). ``samt.train.folder.RunFolder`` reads and writes
# them; the names live here so that torch-free code (the CLI) can name them too.
METRICS, SUMMARY, CONFIG = "metrics.csv", "summary.json", "config.yaml"
CHECKPOINT, SAMT_META = "checkpoint.pt", "samt_meta.pt"
LEARNING_CURVES, SAMT_STEPS = "learning_curves.png", "samt_steps.png"


class RunFolderError(Exception):
    """The run folder cannot be used as asked (other config, nothing to resume, locked,
    a path that cannot hold a folder)."""


class FolderLock:
    """An exclusive ``flock`` on ``<run_dir>/.samt.lock``: one process writes a folder at a time.

    The kernel drops the lock when the process dies (SIGKILL included), so no stale lock can
    block a rerun. The lock file is removed on release unless ``keep_file`` (a lock file that
    was there before this process came must stay).
    """

    NAME = ".samt.lock"

    def __init__(self, run_dir: Path, keep_file: bool = False):
        self.path = Path(run_dir) / self.NAME
        self.fd: int | None = None
        self.keep_file = keep_file

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunFolderError(
                    f"another samt-run process is writing into {self.path.parent}; wait for it "
                    "or use another hydra.run.dir") from None
            # The holder before us may have unlinked the file between our open and our flock:
            # then we hold a lock on a file nobody else can see. Lock the current file instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)
        raise RunFolderError(f"cannot lock {self.path}: it keeps being replaced")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            if not self.keep_file:
                self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


NAME_MAX = 255  # bytes in one part of a path (a file or folder name) on common file systems


def long_path_part(path: str | Path) -> str | None:
    """What is wrong when a part of ``path`` is longer than a file name may be (``NAME_MAX``
    bytes), else None: ``its part 'aaaa...' has 300 bytes, more than the 255 ...``."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            return (f"its part {part[:20] + '...'!r} has {size} bytes, more than the {NAME_MAX} "
                    "a file or folder name may have; choose a shorter name")
    return None


def prepare_folder(key: str, path: Path) -> list[Path]:
    """Make ``path`` (the value of config key ``key``) a writable folder; the folders created
    for it, outermost first. ``RunFolderError`` (one line naming the key, the value and why)
    when it is a file, lies under a file, or cannot be created or written (e.g. under /proc)."""
    path = Path(os.path.abspath(path))
    invalid = f"{key}={str(path)!r} is invalid"
    too_long = long_path_part(path)
    if too_long:
        raise RunFolderError(f"{invalid}: {too_long}")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{invalid}: it is a file, not a folder; choose a folder path")
    missing: list[Path] = []
    existing = path
    while not existing.exists() and not existing.is_symlink():
        missing.append(existing)
        existing = existing.parent
    if not existing.exists():  # a symbolic link to nothing
        raise RunFolderError(f"{invalid}: {existing} is a broken link, not a folder; choose a "
                             "folder path")
    if not existing.is_dir():
        raise RunFolderError(f"{invalid}: {existing} is a file, so no folder can be made under "
                             "it; choose a folder path")
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():  # made by another process just now: not ours
                continue
            _remove_empty(created)
            raise RunFolderError(f"{invalid}: {folder} is not a folder") from None
        except OSError as exc:
            _remove_empty(created)
            raise RunFolderError(f"{invalid}: cannot create the folder {folder}: "
                                 f"{exc.strerror or exc}; choose a folder on a writable file "
                                 "system") from None
        created.append(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".samt-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _remove_empty(created)
        raise RunFolderError(f"{invalid}: cannot write into {path}: {exc.strerror or exc}; "
                             "choose a folder on a writable file system") from None
    return created


def _remove_empty(folders: Iterable[Path]) -> None:
    """``rmdir`` each folder, deepest first; a folder that is not empty (or gone) stays."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


@dataclass
class FolderState:
    """What a run folder held before this process wrote into it, to undo a refused run.

    ``capture`` records the folder's entries and the files of ``restore`` subfolders (Hydra's
    ``.hydra/``, which Hydra rewrites before the job starts); ``created`` lists the folders made
    for this run and ``added`` the top-level files it may add (Hydra's job log). ``undo`` then
    removes only what this process added.
    """

    path: Path
    existed: bool
    entries: frozenset[str]
    saved: dict[str, dict[str, bytes] | None] = field(default_factory=dict)  # None: absent
    created: list[Path] = field(default_factory=list)
    added: tuple[str, ...] = ()

    @classmethod
    def capture(cls, path: Path, restore: Iterable[str] = ()) -> FolderState:
        """The state of ``path`` now (an absent folder is fine)."""
        path = Path(os.path.abspath(path))
        if long_path_part(path):  # no such folder can exist (prepare_folder says why)
            return cls(path, False, frozenset(), {sub: None for sub in restore})
        existed = path.is_dir()
        entries = frozenset(p.name for p in path.iterdir()) if existed else frozenset()
        saved: dict[str, dict[str, bytes] | None] = {}
        for sub in restore:
            folder = path / sub
            saved[sub] = None
            if folder.is_dir():
                saved[sub] = {}
                for file in folder.iterdir():
                    if file.is_file():
                        with contextlib.suppress(OSError):
                            saved[sub][file.name] = file.read_bytes()
        return cls(path, existed, entries, saved)

    def undo(self) -> bool:
        """Remove what this process added: the ``added`` top-level files (e.g. Hydra's job log)
        and subfolder files that were not there, put back the saved files, and remove the
        folder (and the folders created for it) when this process created it and it is empty.

        Does nothing while another process holds the folder's lock; False then.
        """
        if not self.path.is_dir():
            _remove_empty(self.created)
            return True
        try:
            lock = FolderLock(self.path, keep_file=FolderLock.NAME in self.entries)
            lock.__enter__()
        except (RunFolderError, OSError):
            return False
        try:
            self._undo_files()
        finally:
            lock.__exit__()
        if not self.existed:
            _remove_empty([self.path, *self.created])
        return True

    def _undo_files(self) -> None:
        for name in self.added:
            target = self.path / name
            if name not in self.entries and target.is_file():
                target.unlink(missing_ok=True)
        for sub, files in self.saved.items():
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and (files is None or file.name not in files):
                    file.unlink(missing_ok=True)
            for name, data in (files or {}).items():
                with contextlib.suppress(OSError):
                    (folder / name).write_bytes(data)
            if files is None:
                _remove_empty([folder])
