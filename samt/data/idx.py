"""Validating reader for the IDX format of MNIST-style datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samt.data.errors import CorruptDataError

IMAGES_MAGIC = 2051  # unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # unsigned byte, 1 dimension


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an uncompressed uint8 IDX file, checking its magic number and exact size."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    with path.open("rb") as f:
        header = f.read(header_size)
    found = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    if found != magic:
        raise CorruptDataError(f"{path}: IDX magic number {found}, expected {magic}")
    if len(header) < header_size:
        raise CorruptDataError(f"{path}: {len(header)} bytes, too short for an IDX header")
    dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(dims))
    size = path.stat().st_size
    if size != expected:
        raise CorruptDataError(
            f"{path}: {size} bytes, expected {expected} for shape {dims} (truncated or corrupt)"
        )
    return np.fromfile(path, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image (N, H, W) uint8 and label (N,) int64 files."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise CorruptDataError(
            f"{labels_path}: {len(labels)} labels but {images_path} holds {len(images)} images"
        )
    if labels.size and labels.max() >= num_classes:
        raise CorruptDataError(f"{labels_path}: label {labels.max()} outside 0..{num_classes - 1}")
    return images, labels
