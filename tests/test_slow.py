"""Long end-to-end runs on the real data (``make test-slow``; needs SAMT_DATA_ROOT)."""

from __future__ import annotations

import json

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from samt.train import run_training

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


@pytest.mark.parametrize("optimizer, floor", [("adam", 96.0), ("samt_e", 95.0),
                                              ("samt_e_hypergradient", 93.0)])
def test_one_mnist_epoch_of_the_headline_setting(optimizer, floor, shared_data_root, tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"optimizer={optimizer}", "epochs=1", "progress=false", "device=cpu",
            f"data.root={shared_data_root}"])
    summary = run_training(OmegaConf.to_container(cfg, resolve=True), tmp_path / "run")
    assert summary["status"] == "completed"
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["final"]["test_metric"] > floor  # MLP-400 after one epoch on MNIST
