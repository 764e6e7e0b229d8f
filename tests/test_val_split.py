"""The validation hold-out (``data.val_fraction``, ``data.val_seed``): sizes, independence of
the training seed, UCI standardization on the remaining training part, config checks, and what
a run records (docs/tuning.md, docs/outputs.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_data import write_uci
from helpers import digits_config, read_rows

from samt.data import load_dataset
from samt.data.splits import validation_indices
from samt.holdout import validation_size
from samt.train import run_training
from samt.train.checkpoint import config_differences
from samt.validation import ConfigError, validate_against_data, validate_config


def test_hold_out_is_fixed_by_its_own_seed_and_disjoint(tmp_path):
    data = load_dataset("digits", tmp_path)
    n = int(data.x_train.shape[0])
    torch.manual_seed(0)
    a = data.hold_out(0.1, 7)
    torch.manual_seed(1)  # the training seed does not move the split
    b = data.hold_out(0.1, 7)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert a.x_val.shape[0] == validation_size(n, 0.1) == 144
    assert a.x_train.shape[0] + a.x_val.shape[0] == n
    assert torch.equal(a.x_test, data.x_test)  # images keep their normalization
    train, val = validation_indices(n, 0.1, 7)
    assert not set(train) & set(val) and len(set(train) | set(val)) == n
    other = data.hold_out(0.1, 8)
    assert not torch.equal(other.x_val, a.x_val)
    assert data.hold_out(0.0, 7) is data and not data.has_val
    assert validation_size(60000, 1 / 12) == 5000  # the MNIST presets: 5,000 images


def test_uci_standardization_is_fit_on_the_remaining_training_part(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(60, 4)) * [1.0, 10.0, 100.0, 5.0] + [0.0, 50.0, -20.0, 3.0]
    train_rows, test_rows = np.arange(45), np.arange(45, 60)
    write_uci(tmp_path, "concrete", table, features=range(3), target=3,
              splits=[(train_rows, test_rows)])
    data = load_dataset("uci_concrete", tmp_path).hold_out(0.2, 3)
    keep, val = validation_indices(45, 0.2, 3)
    fit = table[train_rows[keep]]
    mean, std = fit.mean(axis=0), fit.std(axis=0)
    for x, y, rows in ((data.x_train, data.y_train, train_rows[keep]),
                       (data.x_val, data.y_val, train_rows[val]), (data.x_test, data.y_test,
                                                                   test_rows)):
        want = (table[rows] - mean) / std
        np.testing.assert_allclose(x.numpy(), want[:, :3], atol=1e-5)
        np.testing.assert_allclose(y.numpy(), want[:, 3], atol=1e-5)
    assert data.target_std == pytest.approx(std[3], rel=1e-5)
    assert data.x_train.mean(dim=0).abs().max() < 1e-5  # standardized on this part exactly


@pytest.mark.parametrize("value", [1.0, -0.1, "half", True])
def test_bad_val_fraction_names_the_key(tmp_path, value):
    cfg = digits_config(tmp_path, "optimizer=adam")
    cfg["data"]["val_fraction"] = value
    with pytest.raises(ConfigError, match=r"^data\.val_fraction="):
        validate_config(cfg)


def test_bad_val_seed_names_the_key(tmp_path):
    cfg = digits_config(tmp_path, "optimizer=adam", "data.val_seed=-1")
    with pytest.raises(ConfigError, match=r"^data\.val_seed=-1"):
        validate_config(cfg)


def test_hold_out_that_leaves_too_little_is_refused(tmp_path):
    cfg = digits_config(tmp_path, "optimizer=adam", "batch_size=128", "data.val_fraction=0.5")
    validate_against_data(cfg, 300)  # 150 left: one batch fits
    with pytest.raises(ConfigError, match=r"^data\.val_fraction=0\.5 .*fewer than one batch"):
        validate_against_data(cfg, 200)
    cfg["data"]["val_fraction"] = 0.001
    with pytest.raises(ConfigError, match=r"^data\.val_fraction=0\.001 .* = 0 of the 300"):
        validate_against_data(cfg, 300)
    cfg["data"]["val_fraction"] = 0.0
    with pytest.raises(ConfigError, match=r"^batch_size=128"):
        validate_against_data(cfg, 100)


def test_run_records_validation_columns_and_the_split(tmp_path):
    run_training(digits_config(tmp_path, "optimizer=sgd", "epochs=2", "model.hidden=[8]",
                         "data.val_fraction=0.25", "data.val_seed=5"), tmp_path / "val")
    rows = read_rows(tmp_path / "val", wall=True)
    assert all(float(r["val_metric"]) >= 0 and float(r["val_loss"]) > 0 for r in rows)
    summary = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert summary["split"] == {"dataset_split": 0, "val_fraction": 0.25, "val_seed": 5,
                                "train_size_before_hold_out": 1438}
    assert (summary["train_size"], summary["val_size"]) == (1078, 360)
    assert summary["final"]["val_metric"] == pytest.approx(float(rows[-1]["val_metric"]))
    assert summary["best_val_metric"] == max(float(r["val_metric"]) for r in rows)
    assert summary["best_val_epoch"] in (1, 2)

    run_training(digits_config(tmp_path, "optimizer=sgd", "epochs=1", "model.hidden=[8]"),
                 tmp_path / "none")
    rows = read_rows(tmp_path / "none", wall=True)
    assert rows[0]["val_loss"] == rows[0]["val_metric"] == ""
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert summary["final"]["val_metric"] is None and summary["best_val_metric"] is None
    assert summary["val_size"] == 0 and summary["train_size"] == 1438


def test_no_split_compares_equal_to_a_config_from_before_the_keys():
    old = {"data": {"root": "/d"}, "seed": 0}
    assert config_differences(old, {"data": {"root": "/d", "val_fraction": 0.0,
                                              "val_seed": 12345}, "seed": 0}) == []
    assert config_differences(old, {"data": {"val_fraction": 0.1, "val_seed": 1}, "seed": 0})
