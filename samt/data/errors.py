"""Errors raised while locating, reading or validating dataset files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataError(Exception):
    """Base class of every dataset error."""


class CorruptDataError(DataError):
    """A dataset file exists but cannot be parsed or fails validation; names the file."""


class InvalidSplitError(DataError, ValueError):
    """The requested split index is outside the range the dataset provides."""


class UnknownDatasetError(DataError, ValueError):
    """The dataset name is not in the registry."""


class MissingFilesError(DataError):
    """Files a loader needs are absent (internal; surfaced as DatasetNotFoundError)."""

    def __init__(self, folder: Path, expected: Sequence[str], missing: Sequence[str]) -> None:
        self.folder = folder
        self.expected = tuple(expected)
        self.missing = tuple(missing)
        super().__init__(f"missing {', '.join(self.missing)} in {folder}")


class DatasetNotFoundError(DataError):
    """A dataset's files are not in the data root; the message says how to supply them."""

    def __init__(
        self,
        name: str,
        folder: Path,
        expected: Sequence[str],
        missing: Sequence[str],
        hints: Sequence[str],
        reasons: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.folder = folder
        self.expected = tuple(expected)
        self.missing = tuple(missing)
        files = f"Expected files: {', '.join(self.expected)}."
        if self.missing != self.expected:
            files += f" Missing: {', '.join(self.missing)}."
        lines = [f"Dataset '{name}' not found in {folder}.", files]
        lines += [f"Attempt failed: {reason}" for reason in reasons]
        lines.append("Ways to supply them:")
        lines += [f"  - {hint}" for hint in hints]
        super().__init__("\n".join(lines))


def require_files(folder: Path, names: Sequence[str]) -> None:
    """Raise MissingFilesError unless every file in ``names`` exists in ``folder``."""
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise MissingFilesError(folder, names, missing)
