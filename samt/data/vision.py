"""Image classification sets: MNIST-style IDX files and CIFAR pickles, plus torchvision fetch."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from samt.atomic import move_atomic
from samt.data.cifar import read_cifar_batches
from samt.data.errors import CorruptDataError
from samt.data.idx import read_idx_pair
from samt.data.splits import DatasetSplits, require_single_split

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)


def normalize_images(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 scaled to [0, 1], then per-channel (x - mean) / std."""
    x = torch.from_numpy(images).float().div_(255.0)
    shape = (1, len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32).view(shape)
    return x.sub_(mean_t).div_(std_t)


def _hw(images: np.ndarray) -> str:
    """``28x28`` for an (N, H, W) image array."""
    return "x".join(str(d) for d in images.shape[1:])


def load_idx_dataset(
    folder: Path, split: int, *, name: str, mean: float, std: float
) -> DatasetSplits:
    """Load an MNIST-style set (10 classes, 28x28 grey) from the IDX files in ``folder``."""
    require_single_split(name, split)
    train_images, train_labels = read_idx_pair(folder / IDX_FILES[0], folder / IDX_FILES[1], 10)
    test_images, test_labels = read_idx_pair(folder / IDX_FILES[2], folder / IDX_FILES[3], 10)
    if test_images.shape[1:] != train_images.shape[1:]:
        raise CorruptDataError(
            f"{folder / IDX_FILES[2]} holds {_hw(test_images)} images but "
            f"{folder / IDX_FILES[0]} holds {_hw(train_images)} images; train and test images "
            "must have the same shape"
        )
    return DatasetSplits(
        name=name,
        task="classification",
        x_train=normalize_images(train_images[:, None], [mean], [std]),
        y_train=torch.from_numpy(train_labels),
        x_test=normalize_images(test_images[:, None], [mean], [std]),
        y_test=torch.from_numpy(test_labels),
        input_shape=(1, *train_images.shape[1:]),
        num_outputs=10,
    )


def load_cifar_dataset(
    folder: Path,
    split: int,
    *,
    name: str,
    train_files: Sequence[str],
    test_files: Sequence[str],
    label_key: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> DatasetSplits:
    """Load CIFAR-10/100 from the python-version batch files in ``folder``."""
    require_single_split(name, split)
    train_images, train_labels = read_cifar_batches(
        [folder / f for f in train_files], label_key, num_classes
    )
    test_images, test_labels = read_cifar_batches(
        [folder / f for f in test_files], label_key, num_classes
    )
    return DatasetSplits(
        name=name,
        task="classification",
        x_train=normalize_images(train_images, mean, std),
        y_train=torch.from_numpy(train_labels),
        x_test=normalize_images(test_images, mean, std),
        y_test=torch.from_numpy(test_labels),
        input_shape=(3, 32, 32),
        num_outputs=num_classes,
    )


def fetch_with_torchvision(dataset_cls: str, root: Path, folder: str) -> None:
    """Download through torchvision's class ``torchvision.datasets.<dataset_cls>`` into a temp
    dir, then move files into place (torchvision is imported here, not for every run).

    The temp dir lives inside ``root`` so each file lands with one rename
    (``samt.atomic.move_atomic``);
    a failed download leaves nothing behind (not even ``root`` if this call created it).
    """
    import torchvision

    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".samt-download-", dir=root) as tmp:
            getattr(torchvision.datasets, dataset_cls)(root=tmp, train=False, download=True)
            source = Path(tmp) / folder
            files = [p for p in source.iterdir() if p.is_file() and p.suffix != ".gz"]
            target = root / folder
            target.mkdir(parents=True, exist_ok=True)
            for path in files:
                move_atomic(path, target / path.name)
    except BaseException:
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
