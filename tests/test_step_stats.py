"""``BlockStats``: the batched epoch statistics equal the per-visit formulas they replace."""

from __future__ import annotations

import math

import pytest
import torch

from samt.optim.step_stats import STAT_NAMES, BlockStats


def reference(visits, metas, skips, num_blocks):
    """The statistics computed visit by visit, as SAMT did before they were batched."""
    acc = {k: {name: 0.0 for name in STAT_NAMES} for k in range(num_blocks)}
    count = {k: [0, 0] for k in range(num_blocks)}  # visits, meta-updates
    for k, rows, numels, clamped in visits:
        per_unit = []
        for row, n in zip(rows.tolist(), numels, strict=True):
            mean = row[0] / n
            std = math.sqrt(max(row[1] / n - mean * mean, 0.0))
            per_unit.append((mean, std, row[4], row[5]))
        for j, name in enumerate(STAT_NAMES[:4]):
            acc[k][name] += sum(u[j] for u in per_unit) / len(per_unit)
        acc[k]["clamped"] += float(clamped)
        count[k][0] += 1
    for k, loss in metas:
        acc[k]["meta_loss"] += float(loss)
        count[k][1] += 1
    for k in skips:
        acc[k]["skipped"] += 1
    out = {}
    for k in range(num_blocks):
        visits_k, metas_k = max(count[k][0], 1), count[k][1]
        for name in STAT_NAMES:
            value = acc[k][name]
            if name == "meta_loss":
                value = value / metas_k if metas_k else float("nan")
            elif name != "skipped":
                value /= visits_k
            out[f"b{k}_{name}"] = value
    return out


def random_visits(seed: int, count: int):
    gen = torch.Generator().manual_seed(seed)
    units = {0: 1, 1: 3, 2: 2}  # blocks with different numbers of units
    visits, metas = [], []
    for i in range(count):
        k = i % 2  # block 2 is never visited: its means are 0 and its meta loss NaN
        numels = [float(n) for n in torch.randint(1, 50, (units[k],), generator=gen).tolist()]
        step = torch.rand(units[k], 1, generator=gen) + 0.1
        rows = torch.cat([step * torch.tensor(numels)[:, None],          # sum
                          step.square() * torch.tensor(numels)[:, None]  # sum of squares
                          * (1 + torch.rand(units[k], 1, generator=gen)),
                          torch.rand(units[k], 4, generator=gen)], dim=1)
        visits.append((k, rows, numels, bool(i % 3 == 0)))
        metas.append((k, torch.rand((), generator=gen)))
    return visits, metas


@pytest.mark.parametrize("flush_every", [1, 4, 256])
def test_batched_statistics_equal_per_visit_formulas(monkeypatch, flush_every):
    monkeypatch.setattr(BlockStats, "FLUSH_EVERY", flush_every)
    visits, metas = random_visits(0, 11)
    stats = BlockStats(3, torch.device("cpu"))
    for k, rows, numels, clamped in visits:
        stats.visit(k, rows, numels, clamped)
    for k, loss in metas[:7]:
        stats.meta(k, loss)
    stats.skip(1)
    stats.skip(1)
    got = stats.epoch()
    want = reference(visits, metas[:7], [1, 1], 3)
    assert list(got) == list(want)  # the same columns, in the same order
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7, nan_ok=True), key
    assert got["b1_skipped"] == 2 and got["b0_clamped"] > 0
    assert math.isnan(got["b2_meta_loss"]) and got["b2_eta_mean"] == 0.0


def test_epoch_resets_and_counts_only_the_new_epoch():
    visits, metas = random_visits(1, 6)
    stats = BlockStats(3, torch.device("cpu"))
    for k, rows, numels, clamped in visits[:3]:
        stats.visit(k, rows, numels, clamped)
    stats.meta(*metas[0])
    stats.skip(0)
    stats.epoch()
    for k, rows, numels, clamped in visits[3:]:
        stats.visit(k, rows, numels, clamped)
    got = stats.epoch()
    want = reference(visits[3:], [], [], 3)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7, nan_ok=True), key
    assert got["b0_skipped"] == 0 and math.isnan(got["b0_meta_loss"])


def test_scalar_step_has_zero_spread():
    """A scalar step (one entry) has std 0 exactly: mean and std are formed in the step's own
    float32, as per visit, and only then summed in float64."""
    stats = BlockStats(1, torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    for _ in range(300):  # more than FLUSH_EVERY: a flush happens mid-epoch
        eta = torch.rand((), generator=gen) * 0.3
        stats.visit(0, torch.stack([eta, eta * eta, eta, eta, eta, eta])[None], [1.0], False)
    assert stats.epoch()["b0_eta_std"] == 0.0
