"""Writers for small dataset fixtures in the real on-disk formats (IDX, CIFAR pickles, UCI)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian sizes, raw bytes."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(
    folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0, gz: bool = False
) -> dict[str, np.ndarray]:
    """Write the four MNIST-style IDX files (28x28 images, labels 0..9) into ``folder``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{IDX_NAMES[key]}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / IDX_NAMES[key]).write_bytes(data)
    return arrays


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _cifar_batch(
    rng: np.random.Generator, n: int, label_keys: Sequence[str], num_classes: int, str_keys: bool
) -> dict:
    batch = {"batch_label": "fixture", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    for key in label_keys:
        batch[key] = [int(v) for v in rng.integers(0, num_classes, n)]
    batch["filenames"] = [f"img_{i}.png" for i in range(n)]
    return batch if str_keys else {k.encode(): v for k, v in batch.items()}


def write_cifar10(root: Path, n_per_batch: int = 4, seed: int = 0, str_keys: bool = False) -> dict:
    """Write cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; return batches."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: _cifar_batch(rng, n_per_batch, ["labels"], 10, str_keys) for name in names}
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 0) -> dict:
    """Write cifar-100-python/{train, test, meta} with fine and coarse labels; return batches."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {
        "train": _cifar_batch(rng, n_train, ["fine_labels", "coarse_labels"], 100, False),
        "test": _cifar_batch(rng, n_test, ["fine_labels", "coarse_labels"], 100, False),
    }
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def write_uci(
    root: Path,
    folder_name: str,
    table: np.ndarray,
    features: Sequence[int],
    target: int,
    splits: Sequence[tuple[Sequence[int], Sequence[int]]],
) -> Path:
    """Write a UCI_Datasets/<folder>/data folder; indices as floats ("1.0"), blank tail lines."""
    folder = root / "UCI_Datasets" / folder_name / "data"
    folder.mkdir(parents=True)
    rows = "\n".join("\t".join(f"{v:.6f}" for v in row) + " " for row in table)
    (folder / "data.txt").write_text(rows + "\n\n\n")
    (folder / "index_features.txt").write_text("".join(f"{float(i)}\n" for i in features))
    (folder / "index_target.txt").write_text(f"{target}\n")
    (folder / "n_splits.txt").write_text(f"{len(splits)}\n")
    for i, (train, test) in enumerate(splits):
        (folder / f"index_train_{i}.txt").write_text("".join(f"{j}\n" for j in train))
        (folder / f"index_test_{i}.txt").write_text("".join(f"{j}\n" for j in test))
    return folder


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with (size, mtime_ns), to prove nothing was written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    }
