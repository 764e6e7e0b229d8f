"""The ResNet bench's verdicts (``scripts/bench_resnet.py``): a target in x Adam that the
layout's Gauss-Seidel skeleton already misses is named as unreachable, with the floor."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_resnet  # noqa: E402


def test_a_target_below_the_skeleton_floor_is_named_unreachable():
    text, met = bench_resnet.verdict("per stage", "samt_s exact", 3.0, 1.25)  # skeleton 2.4x
    assert met is False and text == "<= 2.0x Adam (below the skeleton floor 2.40x: unreachable)"


def test_a_reachable_target_has_no_floor_note():
    text, met = bench_resnet.verdict("one block", "samt_s hypergradient", 1.04, 1.02)
    assert (text, met) == ("<= 1.3x Adam", True)
    text, met = bench_resnet.verdict("one block", "samt_s exact", 2.1, 2.05)  # skeleton 1.02x
    assert (text, met) == ("<= 1.3x Adam", False)
    # a row that meets its target below a (noisy) skeleton above it: met, no floor note
    text, met = bench_resnet.verdict("per stage", "samt_e hypergradient", 1.86, 0.93)
    assert (text, met) == ("<= 2.0x Adam", True)


def test_per_layer_rows_are_judged_against_their_skeleton():
    assert bench_resnet.verdict("per layer", "samt_e exact", 8.3, 1.1) == ("<= 1.3x skeleton",
                                                                           True)
    assert bench_resnet.verdict("per layer", "samt_e exact", 8.3, 1.4)[1] is False
    assert bench_resnet.verdict("per stage", bench_resnet.SKELETON, 2.4, 1.0) == ("", "")
