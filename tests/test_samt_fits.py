"""The memory pre-check counts SAMT's eta models per block as SAMT groups the layers:
``group_size`` and ``group_by`` (``samt.optim.blocks.count_blocks`` against ``group_units``)."""

from __future__ import annotations

import pytest
from torch import nn

import samt.train.fits as fits
from samt.optim.blocks import count_blocks, group_units, split_units

NAMES = ["stem", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer2.0.conv1", "fc"]


def _eta(**opt) -> int:
    return fits._eta_parameters({"eta_hidden": 4, "features": ["mean"], "combine": "convex",
                                 "eta_shared": False, **opt}, NAMES)


def test_group_by_sets_the_number_of_eta_models():
    one = _eta(group_size=0)
    assert _eta(group_size=1) == 6 * one
    assert _eta(group_size=4) == 2 * one
    assert _eta(group_size=1, group_by=["layer1", "layer2"]) == 4 * one  # stem, l1, l2, fc
    assert _eta(group_size=1, group_by="layer1") == 4 * one
    shared = _eta(group_size=1, eta_shared=True, group_by=["layer1"])  # one model, 4 embeddings
    assert shared - _eta(group_size=0, eta_shared=True) == 3 * 8


@pytest.mark.parametrize("group_size, group_by", [(1, None), (2, None), (0, None),
                                                  (1, ["0"]), (1, ["2", "4"]),
                                                  (1, [["0", "2"], "4"])])
def test_count_blocks_agrees_with_group_units(group_size, group_by):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
                          nn.Linear(4, 2))
    units = split_units(model)
    assert count_blocks([u.name for u in units], group_size, group_by) == len(
        group_units(units, group_size, group_by))
