"""Datasets for SAMT runs: in-memory, normalized train/test tensors from an offline data root.

``load_dataset(name, root)`` returns a ``DatasetSplits``; ``DATASETS`` is the registry;
``prepare_dataset`` puts files into the data root (the ``samt-data`` command).
"""

from samt.data.errors import (
    CorruptDataError,
    DataError,
    DatasetNotFoundError,
    InvalidSplitError,
    UnknownDatasetError,
)
from samt.data.prepare import prepare_dataset
from samt.data.registry import DATASETS, DatasetSpec, ImageFolderOptions, load_dataset
from samt.data.splits import DatasetSplits

__all__ = [
    "DATASETS",
    "CorruptDataError",
    "DataError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DatasetSplits",
    "ImageFolderOptions",
    "InvalidSplitError",
    "UnknownDatasetError",
    "load_dataset",
    "prepare_dataset",
]
