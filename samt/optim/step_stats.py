"""Per-block statistics of SAMT's steps, accumulated without per-step small tensor ops.

A block's visit hands over the statistics row it already formed for its one host sync (the
step's sum, sum of squares, min, max, the gate's mean and the gradient norm, per unit); a
meta-update hands over its meta loss. They are kept as they are and turned into the epoch's
means in batches (``FLUSH_EVERY`` entries, and at ``epoch``): a few vectorized ops per batch
instead of about 25 small ops per block visit.
"""

from __future__ import annotations

import torch

STAT_NAMES = ("eta_mean", "eta_std", "beta_mean", "grad_norm", "meta_loss", "skipped", "clamped")
_MEANS = STAT_NAMES[:4]  # per visit: the mean over the block's units, then over the visits


class BlockStats:
    """Running sums of ``STAT_NAMES`` per block, since the last ``epoch()``."""

    FLUSH_EVERY = 256  # pending visits or meta losses before they are summed

    def __init__(self, num_blocks: int, device: torch.device):
        self.num_blocks = num_blocks
        self.device = device
        self._sums = torch.zeros(num_blocks, len(_MEANS) + 1, dtype=torch.float64, device=device)
        # per block: skipped, clamped, visits, meta-updates
        self._counts = [[0, 0, 0, 0] for _ in range(num_blocks)]
        self._rows: list[tuple[int, torch.Tensor, list[float]]] = []
        self._losses: list[tuple[int, torch.Tensor]] = []

    def visit(self, k: int, rows: torch.Tensor, numels: list[float], clamped: bool) -> None:
        """Block ``k`` took a step: ``rows`` (units x 6: sum, sum of squares, min, max of the
        applied step, mean of beta, gradient norm), ``numels`` the steps' sizes."""
        counts = self._counts[k]
        counts[1] += int(clamped)
        counts[2] += 1
        self._rows.append((k, rows, numels))
        if len(self._rows) >= self.FLUSH_EVERY:
            self._flush_rows()

    def meta(self, k: int, loss: torch.Tensor) -> None:
        """Block ``k`` took a meta step on meta loss ``loss`` (a 0-dim tensor)."""
        self._counts[k][3] += 1
        self._losses.append((k, loss))
        if len(self._losses) >= self.FLUSH_EVERY:
            self._flush_losses()

    def skip(self, k: int) -> None:
        """Block ``k`` skipped an update or a meta-update (a loss or gradient not finite)."""
        self._counts[k][0] += 1

    def _flush_rows(self) -> None:
        entries, self._rows = self._rows, []
        if not entries:
            return
        # a visit's mean and std in the step's own dtype, as a per-visit computation gives them
        # (a scalar step's std is then exactly 0); the sums over visits in float64
        rows = torch.cat([r for _, r, _ in entries])
        n = torch.tensor([x for _, _, numels in entries for x in numels], dtype=rows.dtype,
                         device=self.device)
        mean = rows[:, 0] / n
        std = (rows[:, 1] / n - mean * mean).clamp_min(0.0).sqrt()
        per_unit = torch.stack([mean, std, rows[:, 4], rows[:, 5]], dim=1).to(torch.float64)
        # each visit counts once, as the mean over its block's units
        weight = torch.tensor([1.0 / len(numels) for _, _, numels in entries for _ in numels],
                              dtype=torch.float64, device=self.device)
        block = torch.tensor([k for k, _, numels in entries for _ in numels], device=self.device)
        self._sums[:, :len(_MEANS)].index_add_(0, block, per_unit * weight[:, None])

    def _flush_losses(self) -> None:
        entries, self._losses = self._losses, []
        if not entries:
            return
        losses = torch.stack([loss.reshape(()) for _, loss in entries]).to(torch.float64)
        block = torch.tensor([k for k, _ in entries], device=self.device)
        self._sums[:, len(_MEANS)].index_add_(0, block, losses)

    def epoch(self) -> dict[str, float]:
        """Per-block means since the last call (``b{k}_{stat}``), then reset: the step
        statistics averaged over visits, ``meta_loss`` over meta-updates (NaN: none),
        ``skipped`` a count, ``clamped`` the share of visits that clamped."""
        self._flush_rows()
        self._flush_losses()
        sums = self._sums.tolist()
        self._sums.zero_()
        out: dict[str, float] = {}
        for k, (row, (skipped, clamped, visits, metas)) in enumerate(
                zip(sums, self._counts, strict=True)):
            visits_or_1 = max(visits, 1)
            for j, name in enumerate(_MEANS):
                out[f"b{k}_{name}"] = row[j] / visits_or_1
            out[f"b{k}_meta_loss"] = row[len(_MEANS)] / metas if metas else float("nan")
            out[f"b{k}_skipped"] = float(skipped)
            out[f"b{k}_clamped"] = clamped / visits_or_1
        self._counts = [[0, 0, 0, 0] for _ in range(self.num_blocks)]
        return out
