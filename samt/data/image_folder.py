"""Image-folder datasets: ``train/<class>/*`` and ``test/<class>/*``, from a folder or a zip.

Every image is decoded once (Pillow, converted to RGB) and the uint8 tensors with their labels
are cached in one file, so a second run starts in seconds. The cache is keyed by the source
(path, size and modification time of the zip; of every file of a folder): a changed source is
decoded again. Where the cache goes (``cache_folder``): ``data.cache_dir`` when set; else
``<data root>/.samt-cache`` when the data root is writable; else the user's cache folder
(``$XDG_CACHE_HOME/samt``, default ``~/.cache/samt``). A read-only data root is never written.

Classes are the sorted names of ``train/``'s sub-folders; every image must have the same size.
Images are scaled to [0, 1] and normalized per channel with the training split's mean and std.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from samt.data.errors import CorruptDataError, MissingFilesError
from samt.data.splits import DatasetSplits, require_single_split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
SPLITS = ("train", "test")
CACHE_VERSION = 1
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One image of the source: its split, class name and name inside the source."""

    split: str
    label: str
    name: str


class ImageSource:
    """The images of a folder or a zip in image-folder layout (an optional single top folder
    is allowed around ``train/`` and ``test/``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.is_file()
        if self.is_zip and not zipfile.is_zipfile(path):
            raise CorruptDataError(f"{path}: not a zip file (an image-folder dataset is a "
                                   "folder or a zip of one)")
        names = self._names()
        self.members = _members(names, path)

    def _names(self) -> list[str]:
        if self.is_zip:
            with zipfile.ZipFile(self.path) as archive:
                return [n for n in archive.namelist() if not n.endswith("/")]
        return sorted(p.relative_to(self.path).as_posix()
                      for p in self.path.rglob("*") if p.is_file())

    def key(self) -> dict:
        """What identifies this version of the source: a change rebuilds the cache."""
        if self.is_zip:
            stat = self.path.stat()
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        stats = [(self.path / m.name).stat() for m in self.members]
        return {"files": len(stats), "size": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}

    def read(self) -> Iterator[tuple[Member, bytes]]:
        """Each member with its bytes, in member order."""
        if self.is_zip:
            with zipfile.ZipFile(self.path) as archive:
                for member in self.members:
                    yield member, archive.read(member.name)
        else:
            for member in self.members:
                yield member, (self.path / member.name).read_bytes()


def _members(names: list[str], source: Path) -> list[Member]:
    """The images among ``names`` as ``split/class/file`` members, sorted by split, class, name."""
    parts = [n.split("/") for n in names]
    tops = {p[0] for p in parts if len(p) > 1}
    prefix = 0
    if not tops & set(SPLITS) and len(tops) == 1:  # one folder around train/ and test/
        prefix = 1
    members = []
    for name, p in zip(names, parts, strict=True):
        p = p[prefix:]
        if len(p) == 3 and p[0] in SPLITS and Path(p[2]).suffix.lower() in IMAGE_SUFFIXES:
            members.append(Member(p[0], p[1], name))
    present = {m.split for m in members}
    if present != set(SPLITS):
        missing = [s for s in SPLITS if s not in present]
        raise MissingFilesError(source, [f"{s}/<class>/<image>" for s in SPLITS],
                                [f"{s}/<class>/<image>" for s in missing])
    order = {s: i for i, s in enumerate(SPLITS)}
    return sorted(members, key=lambda m: (order[m.split], m.label, m.name))


def cache_folder(data_root: Path, cache_dir: str | Path | None) -> Path:
    """Where decoded images are cached: ``cache_dir``; else ``<data_root>/.samt-cache`` when the
    data root is writable; else ``$XDG_CACHE_HOME/samt`` (default ``~/.cache/samt``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if writable(data_root):
        return data_root / ".samt-cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "samt"


def writable(folder: Path) -> bool:
    """Whether ``folder`` is a folder meant to be written: it has a write bit and this process
    may write it (for root, ``os.access`` ignores the bits; a folder without any write bit is
    read-only by intent, like a shared data root)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return folder.is_dir() and bool(mode & 0o222) and os.access(folder, os.W_OK)


def cache_path(source: Path, folder: Path) -> Path:
    """The cache file of ``source`` in ``folder``: named after the source and its full path."""
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return folder / f"{source.name}-{digest}.pt"


def decode(source: ImageSource, progress: bool = True) -> dict:
    """Decode every image of ``source`` into uint8 (N, C, H, W) tensors per split."""
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm

    classes = sorted({m.label for m in source.members if m.split == "train"})
    stray = sorted({m.label for m in source.members} - set(classes))
    if stray:
        raise CorruptDataError(f"{source.path}: test/ has classes that train/ lacks: "
                               f"{', '.join(stray)}")
    index = {c: i for i, c in enumerate(classes)}
    images: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    shape = None
    bar = tqdm(source.read(), total=len(source.members), desc=f"decoding {source.path.name}",
               unit="img", disable=None if progress else True, leave=False)
    for member, data in bar:
        try:
            with Image.open(io.BytesIO(data)) as image:
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CorruptDataError(f"{source.path}: member {member.name} is not a readable "
                                   f"image ({exc})") from None
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise CorruptDataError(
                f"{source.path}: member {member.name} is {array.shape[1]}x{array.shape[0]} "
                f"but the first image is {shape[1]}x{shape[0]}; every image must have the "
                "same size")
        images[member.split].append(array)
        labels[member.split].append(index[member.label])
    out: dict = {"classes": classes}
    for split in SPLITS:
        stacked = np.stack(images[split]).transpose(0, 3, 1, 2)
        out[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(stacked))
        out[f"y_{split}"] = torch.tensor(labels[split], dtype=torch.int64)
    return out


def read_cached(path: Path, key: dict) -> dict | None:
    """The cached decode at ``path`` when it exists and matches ``key``; else None."""
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):  # absent or unreadable: decode again
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None
    return cached


def write_cache(path: Path, decoded: dict, key: dict) -> str | None:
    """Write ``decoded`` with ``key`` atomically; returns why not when it cannot be written
    (the run goes on without a cache; no temp file is left behind)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a unique temp name: parallel first runs of a sweep may write the same cache at once
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         delete=False) as fh:
            tmp = Path(fh.name)
            torch.save({**decoded, "key": key}, fh)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # a plain new file's mode: others may read a shared cache
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return f"{exc.strerror or exc}: {path}"
    return None


def load_decoded(source_path: Path, cache_dir: Path, progress: bool = True) -> dict:
    """The decoded images of ``source_path``: from the cache when it is current, else decoded
    (and cached: a cache that cannot be written is logged, and the run goes on)."""
    source = ImageSource(source_path)
    key = {**source.key(), "version": CACHE_VERSION, "members": len(source.members)}
    path = cache_path(source_path, cache_dir)
    cached = read_cached(path, key)
    if cached is not None:
        LOG.info("decoded images of %s read from the cache %s", source_path, path)
        return cached
    decoded = decode(source, progress)
    problem = write_cache(path, decoded, key)
    if problem:
        LOG.warning("decoded images of %s not cached (%s)", source_path, problem)
    else:
        LOG.info("decoded images of %s cached in %s", source_path, path)
    return decoded


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population) of uint8 images scaled to [0, 1]."""
    x = images.double().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return mean.tolist(), std.clamp_min(1e-12).tolist()


def normalize(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1], then per channel (x - mean) / std."""
    shape = (1, len(mean), 1, 1)
    x = images.float().div_(255.0)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


def load_image_folder(source_path: Path, split: int, *, name: str, cache_dir: Path,
                      progress: bool = True) -> DatasetSplits:
    """An image-folder dataset (folder or zip) as ``DatasetSplits``, normalized per channel
    with the training split's statistics."""
    require_single_split(name, split)
    decoded = load_decoded(source_path, cache_dir, progress)
    mean, std = channel_stats(decoded["x_train"])
    x_train = decoded["x_train"]
    return DatasetSplits(
        name=name,
        task="classification",
        x_train=normalize(x_train, mean, std),
        y_train=decoded["y_train"],
        x_test=normalize(decoded["x_test"], mean, std),
        y_test=decoded["y_test"],
        input_shape=tuple(int(s) for s in x_train.shape[1:]),
        num_outputs=len(decoded["classes"]),
    )
