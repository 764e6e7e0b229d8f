"""scikit-learn's bundled 8x8 digits: a small classification set that is always offline."""

from __future__ import annotations

import numpy as np
import torch

from samt.data.splits import DatasetSplits, require_single_split

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class random split with a fixed torch seed; returns sorted train/test indices."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[torch.randperm(len(members), generator=generator).numpy()]
        n_test = round(len(members) * test_fraction)
        test.append(order[:n_test])
        train.append(order[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits_dataset(split: int, *, name: str) -> DatasetSplits:
    """Load the digits set (bundled with scikit-learn, so no data root is involved)."""
    require_single_split(name, split)
    from sklearn.datasets import load_digits  # here: scikit-learn is slow to import

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    mean, std = float(images[train].mean()), float(images[train].std())
    return DatasetSplits(
        name=name,
        task="classification",
        x_train=torch.from_numpy((images[train] - mean) / std),
        y_train=torch.from_numpy(labels[train]),
        x_test=torch.from_numpy((images[test] - mean) / std),
        y_test=torch.from_numpy(labels[test]),
        input_shape=(1, 8, 8),
        num_outputs=10,
    )
