"""Dataset loading: real on-disk formats in tmp_path, offline, plus checks on $SAMT_DATA_ROOT."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import require_dataset
from fixtures_data import (
    IDX_NAMES,
    idx_bytes,
    md5_of,
    snapshot,
    write_cifar10,
    write_cifar100,
    write_idx_dataset,
    write_uci,
)

from samt.data import (
    DATASETS,
    CorruptDataError,
    DataError,
    DatasetNotFoundError,
    DatasetSplits,
    InvalidSplitError,
    UnknownDatasetError,
    load_dataset,
    prepare_dataset,
)
from samt.data import prepare as prepare_module

IDX_SETS = {  # registry name -> (torchvision class, folder, mean, std)
    "mnist": (torchvision.datasets.MNIST, "MNIST", 0.1307, 0.3081),
    "fashion_mnist": (torchvision.datasets.FashionMNIST, "FashionMNIST", 0.2860, 0.3530),
    "kmnist": (torchvision.datasets.KMNIST, "KMNIST", 0.1918, 0.3483),
}
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def expected_images(raw: np.ndarray, mean, std) -> torch.Tensor:
    """Reference normalization of uint8 NCHW images."""
    shape = (1, len(mean), 1, 1)
    x = torch.from_numpy(raw.astype(np.float32) / 255.0)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


# --- registry ---------------------------------------------------------------------------------


def test_registry_has_every_dataset_with_its_task():
    uci = {"boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht"}
    classification = {"mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "digits",
                      "cifar10_jpeg", "image_folder"}
    assert set(DATASETS) == classification | {f"uci_{n}" for n in uci}
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.task == ("classification" if name in classification else "regression")


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(UnknownDatasetError, match="unknown dataset 'imagenet'.*mnist"):
        load_dataset("imagenet", tmp_path)


# --- MNIST-style IDX ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IDX_SETS))
def test_idx_dataset_loads_normalized_with_labels(tmp_path, name):
    _, folder, mean, std = IDX_SETS[name]
    raw = write_idx_dataset(tmp_path / folder / "raw", n_train=12, n_test=5)
    splits = load_dataset(name, tmp_path)
    assert isinstance(splits, DatasetSplits)
    assert (splits.name, splits.task, splits.num_outputs) == (name, "classification", 10)
    assert splits.input_shape == (1, 28, 28) and splits.target_std == 1.0
    assert splits.x_train.shape == (12, 1, 28, 28) and splits.x_test.shape == (5, 1, 28, 28)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    want = expected_images(raw["train_images"][:, None], [mean], [std])
    torch.testing.assert_close(splits.x_train, want)
    torch.testing.assert_close(
        splits.x_test, expected_images(raw["test_images"][:, None], [mean], [std])
    )
    assert splits.y_train.tolist() == raw["train_labels"].tolist()
    assert splits.y_test.tolist() == raw["test_labels"].tolist()


def test_idx_loading_writes_nothing_into_the_root(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    before = snapshot(tmp_path)
    load_dataset("mnist", tmp_path, download=True)  # present: no download, no processed/
    assert snapshot(tmp_path) == before


def test_truncated_idx_file_is_named(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder)
    path = folder / IDX_NAMES["train_images"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)


def test_idx_file_with_wrong_magic_is_named(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    arrays = write_idx_dataset(folder)
    # a label file where an image file belongs
    (folder / IDX_NAMES["test_images"]).write_bytes(idx_bytes(arrays["test_labels"]))
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte: IDX magic number 2049"):
        load_dataset("fashion_mnist", tmp_path)


def test_idx_label_count_must_match_images(tmp_path):
    folder = tmp_path / "KMNIST" / "raw"
    arrays = write_idx_dataset(folder, n_test=5)
    (folder / IDX_NAMES["test_labels"]).write_bytes(idx_bytes(arrays["test_labels"][:4]))
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte: 4 labels"):
        load_dataset("kmnist", tmp_path)


# --- CIFAR pickles -----------------------------------------------------------------------------


@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes-keys", "str-keys"])
def test_cifar10_loads_nchw_normalized(tmp_path, str_keys):
    batches = write_cifar10(tmp_path, n_per_batch=4, str_keys=str_keys)
    splits = load_dataset("cifar10", tmp_path)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    raw_train = np.concatenate([b[key("data")] for b in train]).reshape(-1, 3, 32, 32)
    assert splits.x_train.shape == (20, 3, 32, 32) and splits.x_test.shape == (4, 3, 32, 32)
    assert splits.input_shape == (3, 32, 32) and splits.num_outputs == 10
    torch.testing.assert_close(
        splits.x_train, expected_images(raw_train, CIFAR10_MEAN, CIFAR10_STD)
    )
    # channel-major rows: byte c*1024 + h*32 + w is pixel (c, h, w)
    row = train[0][key("data")][1]
    pixel = (row[2 * 1024 + 5 * 32 + 7] / 255.0 - CIFAR10_MEAN[2]) / CIFAR10_STD[2]
    assert splits.x_train[1, 2, 5, 7].item() == pytest.approx(pixel, abs=1e-5)
    assert splits.y_train.tolist() == sum((b[key("labels")] for b in train), [])
    assert splits.y_test.tolist() == batches["test_batch"][key("labels")]


def test_cifar100_uses_fine_labels(tmp_path):
    batches = write_cifar100(tmp_path, n_train=6, n_test=3)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.num_outputs == 100 and splits.x_train.shape == (6, 3, 32, 32)
    assert splits.y_train.tolist() == batches["train"][b"fine_labels"]
    assert splits.y_test.tolist() == batches["test"][b"fine_labels"]
    raw_test = batches["test"][b"data"].reshape(-1, 3, 32, 32)
    torch.testing.assert_close(
        splits.x_test, expected_images(raw_test, CIFAR100_MEAN, CIFAR100_STD)
    )


def test_garbled_cifar_pickle_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(CorruptDataError, match="data_batch_3: not a readable CIFAR batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar100(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(CorruptDataError, match="cifar-100-python/test.*not allowed"):
        load_dataset("cifar100", tmp_path)
    assert not marker.exists()


# --- missing data and download -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "a_file", "remedy"),
    [
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte", "samt-data mnist"),
        ("fashion_mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte", "samt-data"),
        ("kmnist", "KMNIST/raw", "train-labels-idx1-ubyte", "data.download=true"),
        ("cifar10", "cifar-10-batches-py", "data_batch_1", "data.download=true"),
        ("cifar100", "cifar-100-python", "train", "data.download=true"),
        ("uci_concrete", "UCI_Datasets/concrete/data", "index_features.txt", "yaringal"),
    ],
)
def test_missing_dataset_offline_explains_how_to_supply_it(tmp_path, name, folder, a_file, remedy):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert f"'{name}'" in message and str(tmp_path / folder) in message
    assert a_file in message and remedy in message
    assert "SAMT_DATA_ROOT" in message and "data.root" in message
    assert isinstance(info.value, DataError)
    assert list(tmp_path.iterdir()) == []


def test_partly_present_dataset_lists_the_missing_files(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_dataset(folder)
    (folder / IDX_NAMES["test_labels"]).unlink()
    with pytest.raises(DatasetNotFoundError, match="Missing: t10k-labels-idx1-ubyte\\."):
        load_dataset("mnist", tmp_path)


def test_failed_download_raises_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    def offline(self):
        (Path(self.raw_folder)).mkdir(parents=True, exist_ok=True)
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: network unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", root, download=True)
    assert "network unreachable" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not root.exists()


def test_download_moves_files_into_the_root(tmp_path, monkeypatch):
    def fake_download(self):
        write_idx_dataset(Path(self.raw_folder), n_train=3, n_test=2, gz=True)
        write_idx_dataset(Path(self.raw_folder), n_train=3, n_test=2)

    monkeypatch.setattr(torchvision.datasets.KMNIST, "download", fake_download)
    splits = load_dataset("kmnist", tmp_path, download=True)
    assert splits.x_train.shape == (3, 1, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["KMNIST"]
    assert sorted(p.name for p in (tmp_path / "KMNIST" / "raw").iterdir()) == sorted(
        IDX_NAMES.values()
    )


def test_uci_download_flag_still_explains(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data.download cannot fetch UCI"):
        load_dataset("uci_yacht", tmp_path, download=True)


# --- UCI regression ----------------------------------------------------------------------------


def uci_table(rows: int = 10) -> np.ndarray:
    rng = np.random.default_rng(3)
    table = rng.normal(size=(rows, 5)) * [1.0, 10.0, 1.0, 3.0, 0.0] + [0.0, 5.0, 0.0, -2.0, 7.0]
    return np.round(table, 6)  # column 4 is constant; column 2 is the target


UCI_SPLITS = [([0, 1, 2, 3, 4, 5, 6], [7, 8, 9]), ([3, 4, 5, 6, 7, 8, 9], [0, 1, 2])]


@pytest.mark.parametrize("split", [0, 1])
def test_uci_standardizes_with_train_rows_only(tmp_path, split):
    table = uci_table()
    write_uci(tmp_path, "concrete", table, features=[0, 1, 3, 4], target=2, splits=UCI_SPLITS)
    splits = load_dataset("uci_concrete", tmp_path, split=split)
    train, test = UCI_SPLITS[split]
    x_raw_train, x_raw_test = table[train][:, [0, 1, 3, 4]], table[test][:, [0, 1, 3, 4]]
    mean, std = x_raw_train.mean(0), x_raw_train.std(0)
    std[3] = 1.0  # constant column
    y_mean, y_std = table[train, 2].mean(), table[train, 2].std()
    assert (splits.task, splits.input_shape, splits.num_outputs) == ("regression", (4,), 1)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.float32
    assert splits.y_train.shape == (7,) and splits.y_test.shape == (3,)
    assert splits.target_std == pytest.approx(y_std)
    expected_x_test = torch.tensor((x_raw_test - mean) / std, dtype=torch.float32)
    torch.testing.assert_close(splits.x_test, expected_x_test)
    expected_y_test = torch.tensor((table[test, 2] - y_mean) / y_std, dtype=torch.float32)
    torch.testing.assert_close(splits.y_test, expected_y_test)
    torch.testing.assert_close(splits.x_train[:, :3].mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(splits.x_train[:, :3].std(0, correction=0), torch.ones(3))
    assert torch.all(splits.x_train[:, 3] == 0)
    assert float(splits.y_train.mean()) == pytest.approx(0.0, abs=1e-6)


def test_uci_rmse_in_original_units(tmp_path):
    table = uci_table()
    write_uci(tmp_path, "yacht", table, features=[0, 1], target=3, splits=UCI_SPLITS)
    splits = load_dataset("uci_yacht", tmp_path)
    prediction_std = torch.zeros_like(splits.y_test)  # predict the train mean
    rmse_std = torch.sqrt(torch.mean((prediction_std - splits.y_test) ** 2)).item()
    train, test = UCI_SPLITS[0]
    rmse_raw = np.sqrt(np.mean((table[train, 3].mean() - table[test, 3]) ** 2))
    assert rmse_std * splits.target_std == pytest.approx(rmse_raw, rel=1e-5)


@pytest.mark.parametrize("split", [2, -1])
def test_uci_split_out_of_range_names_the_range(tmp_path, split):
    write_uci(tmp_path, "energy", uci_table(), features=[0, 1], target=2, splits=UCI_SPLITS)
    with pytest.raises(InvalidSplitError, match=r"allowed range is 0\.\.1"):
        load_dataset("uci_energy", tmp_path, split=split)


def test_uci_non_numeric_cell_names_file_and_line(tmp_path):
    folder = write_uci(tmp_path, "wine-quality-red", uci_table(), [0, 1], 2, UCI_SPLITS)
    lines = (folder / "data.txt").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split()[1], "n/a", 1)
    (folder / "data.txt").write_text("\n".join(lines))
    with pytest.raises(CorruptDataError, match=r"wine-quality-red/data/data\.txt, line 4: .*'n/a'"):
        load_dataset("uci_wine", tmp_path)


def test_uci_missing_split_file_is_not_found(tmp_path):
    folder = write_uci(tmp_path, "kin8nm", uci_table(), [0, 1], 2, UCI_SPLITS)
    (folder / "index_test_1.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="Missing: index_test_1.txt"):
        load_dataset("uci_kin8nm", tmp_path, split=1)


# --- digits ------------------------------------------------------------------------------------


def test_digits_loads_offline_with_a_fixed_stratified_split(tmp_path):
    a = load_dataset("digits", tmp_path / "unused")
    b = load_dataset("digits", tmp_path / "unused")
    assert a.input_shape == (1, 8, 8) and a.num_outputs == 10
    assert len(a.x_train) + len(a.x_test) == 1797 and a.x_train.shape[1:] == (1, 8, 8)
    assert len(a.x_test) == pytest.approx(0.2 * 1797, abs=10)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert a.y_test.bincount(minlength=10).min() >= 30  # every class in the test split
    assert float(a.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(a.x_train.std()) == pytest.approx(1.0, abs=1e-3)
    assert not (tmp_path / "unused").exists()


def test_fixed_split_datasets_reject_other_splits(tmp_path):
    with pytest.raises(InvalidSplitError, match=r"0\.\.0"):
        load_dataset("digits", tmp_path, split=1)


def test_device_argument_moves_tensors(tmp_path):
    splits = load_dataset("digits", tmp_path, device="meta")
    assert {t.device.type for t in (splits.x_train, splits.y_train, splits.x_test)} == {"meta"}


# --- prepare_dataset ---------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Make every torchvision download fail and forget $SAMT_DATA_ROOT."""

    def offline(self):
        raise RuntimeError("offline")

    for cls, *_ in IDX_SETS.values():
        monkeypatch.setattr(cls, "download", offline)
    monkeypatch.delenv("SAMT_DATA_ROOT", raising=False)


def test_prepare_copies_from_samt_data_root(tmp_path, monkeypatch, no_network):
    source = tmp_path / "shared"
    write_idx_dataset(source / "KMNIST" / "raw")
    monkeypatch.setenv("SAMT_DATA_ROOT", str(source))
    folder = prepare_dataset("kmnist", tmp_path / "data")
    assert folder == tmp_path / "data" / "KMNIST" / "raw"
    assert sorted(p.name for p in folder.iterdir()) == sorted(IDX_NAMES.values())
    assert load_dataset("kmnist", tmp_path / "data").x_train.shape == (12, 1, 28, 28)


def test_prepare_gunzips_and_verifies_md5(tmp_path, monkeypatch, no_network):
    system_dir = tmp_path / "usr-share"
    arrays = write_idx_dataset(system_dir, gz=True)
    md5s = {IDX_NAMES[k]: md5_of(idx_bytes(a)) for k, a in arrays.items()}
    monkeypatch.setattr(prepare_module, "FASHION_MNIST_SYSTEM_DIR", system_dir)
    monkeypatch.setitem(prepare_module.KNOWN_MD5, "fashion_mnist", md5s)
    folder = prepare_dataset("fashion_mnist", tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == sorted(md5s)
    assert (folder / IDX_NAMES["train_labels"]).read_bytes() == idx_bytes(arrays["train_labels"])
    before = snapshot(tmp_path / "data")
    assert prepare_dataset("fashion_mnist", tmp_path / "data") == folder  # already valid
    assert snapshot(tmp_path / "data") == before


def test_prepare_rejects_bad_md5_without_leaving_files(tmp_path, monkeypatch, no_network):
    system_dir = tmp_path / "usr-share"
    write_idx_dataset(system_dir)
    monkeypatch.setattr(prepare_module, "FASHION_MNIST_SYSTEM_DIR", system_dir)
    with pytest.raises(DatasetNotFoundError) as info:
        prepare_dataset("fashion_mnist", tmp_path / "data")
    assert "md5" in str(info.value) and "offline" in str(info.value)
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


def test_prepare_digits_needs_nothing(tmp_path):
    prepare_dataset("digits", tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the real offline data root ($SAMT_DATA_ROOT) ----------------------------------------------

UCI_ROWS = {
    "uci_boston": 506, "uci_concrete": 1030, "uci_energy": 768, "uci_kin8nm": 8192,
    "uci_naval": 11934, "uci_power": 9568, "uci_protein": 45730, "uci_wine": 1599,
    "uci_yacht": 308,
}  # fmt: skip


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_idx_sets_load_without_writing(name):
    data_root = require_dataset(name)
    before = snapshot(data_root)
    splits = load_dataset(name, data_root, download=True)
    assert splits.x_train.shape == (60000, 1, 28, 28) and splits.x_test.shape == (10000, 1, 28, 28)
    assert float(splits.x_train.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(splits.x_train.std()) == pytest.approx(1.0, abs=0.01)
    assert splits.y_test.unique().tolist() == list(range(10))
    if name == "fashion_mnist":
        assert splits.y_train.bincount().tolist() == [6000] * 10
    assert prepare_dataset(name, data_root) == data_root / IDX_SETS[name][1] / "raw"
    assert snapshot(data_root) == before


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(UCI_ROWS))
def test_real_uci_sets_have_the_documented_rows(name):
    data_root = require_dataset(name)
    splits = load_dataset(name, data_root)
    assert len(splits.x_train) + len(splits.x_test) == UCI_ROWS[name]
    assert torch.isfinite(splits.x_train).all() and torch.isfinite(splits.y_test).all()
    assert splits.target_std > 0


@pytest.mark.real_data
def test_real_protein_has_five_splits():
    data_root = require_dataset("uci_protein")
    load_dataset("uci_protein", data_root, split=4)
    with pytest.raises(InvalidSplitError, match=r"0\.\.4"):
        load_dataset("uci_protein", data_root, split=5)


def test_a_uci_token_with_digit_grouping_is_not_a_number(tmp_path):
    """Python's float() reads "1_000" as 1000; a data file's token like that is corrupt."""
    from samt.data.uci import read_table

    path = tmp_path / "data.txt"
    path.write_text("1.5 2 3e2\n4 1_000 6\n")
    with pytest.raises(CorruptDataError, match=r"line 2: non-numeric value '1_000'"):
        read_table(path)
    path.write_text("1.5 2 3e2\n4 -1000 6\n")
    assert read_table(path)[1, 1] == -1000.0
