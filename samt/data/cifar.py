"""Reader for the CIFAR "python version" pickled batches, without md5 pinning."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from samt.data.errors import CorruptDataError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals a CIFAR batch needs."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core."):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def _entry(batch: dict, key: str) -> object:
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
        if not isinstance(batch, dict):
            raise TypeError(f"top-level object is {type(batch).__name__}, not dict")
        data = np.asarray(_entry(batch, "data"))
        labels = np.asarray(_entry(batch, label_key), dtype=np.int64)
    except OSError:
        raise
    except Exception as exc:
        raise CorruptDataError(f"{path}: not a readable CIFAR batch ({exc!r})") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptDataError(
            f"{path}: data is {data.dtype} {data.shape}, expected uint8 (N, {3 * 32 * 32})"
        )
    if labels.shape != (len(data),):
        raise CorruptDataError(f"{path}: {labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise CorruptDataError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_batches(
    paths: list[Path], label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate several batch files."""
    parts = [read_cifar_batch(path, label_key, num_classes) for path in paths]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
