"""When SAMT's meta-updates happen and how their meta steps are taken: per block, or deferred
to one batched step per iteration (one host sync, one multi-tensor meta step)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from samt.optim.meta_params import MetaParams
from samt.optim.step_stats import BlockStats

# (block, finiteness check, meta loss, its meta-gradient set aside or None)
Deferred = tuple[int, torch.Tensor, torch.Tensor, list[torch.Tensor | None] | None]


class MetaSchedule:
    """Schedules the meta-updates of ``meta_mode`` every ``meta_interval``-th iteration and
    takes their meta steps on ``params``, counting each in ``stats``."""

    def __init__(self, params: MetaParams, stats: BlockStats, *, learns: bool, meta_mode: str,
                 meta_interval: int):
        self.params, self.stats = params, stats
        self.learns, self.meta_mode, self.meta_interval = learns, meta_mode, meta_interval
        self.deferred: list[Deferred] | None = None

    def meta_now(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (counted from 1) has meta-updates."""
        return self.learns and iteration % self.meta_interval == 0

    def keep_graph(self, iteration: int, meta_now: bool) -> bool:
        """Keep this visit's step graph for its meta-update instead of recomputing it later.

        Valid while no meta-parameter it used changes before that update: always in exact mode
        (the update follows at once); in the other modes only with per-block eta models, whose
        parameters change only in their own block's meta-update. The analytic path keeps the
        eta model's small outputs and activations (``Analytic``), and ``s`` only with
        ``keep_steps`` (else the meta-update forms it again).
        """
        if self.meta_mode == "exact":
            return meta_now
        return self.learns and self.meta_now(iteration + 1) and not self.params.shared

    def begin(self, meta_now: bool, batch: bool) -> None:
        """Start an iteration: free last iteration's meta-gradients, and defer this one's meta
        steps to ``flush`` where that computes the same (``batch``, ``batches``)."""
        if meta_now:  # not needed any more: freed before the passes
            for p in self.params.flat:
                p.grad = None
        if batch and self.batches(meta_now):
            self.deferred = []

    def batches(self, meta_now: bool) -> bool:
        """Whether this iteration's meta-updates can wait for one batched step at its end.

        Exact and lookahead modes with per-block eta models: a block's meta-parameters are used
        once per iteration (its step) before its meta-update (exact), or after all meta-updates
        (lookahead), so deferring the meta step changes nothing. Hypergradient mode uses the
        updated meta-parameters for the block's next step at once, and a shared eta model is
        used by every block: those keep one meta step per block.
        """
        return meta_now and not self.params.shared and self.meta_mode in ("exact", "lookahead")

    def finish(self, k: int, check: torch.Tensor, meta_loss: torch.Tensor,
               backward: Callable[[], None]) -> None:
        """Check (``check`` finite), back-propagate and step block ``k``'s meta-parameters, or
        defer the check and the step to ``flush`` on the batched path."""
        params = self.params.groups[self.params.group(k)]
        if self.deferred is not None:  # batched: one finiteness sync and meta step per iteration
            if self.deferred and self.deferred[-1][3] is None:
                # Set the previous block's meta-gradient aside: as on the per-block path, the
                # ``.grad`` of the meta-parameters holds only the last meta-update's gradient.
                j, check_j, loss_j, _ = self.deferred[-1]
                stash = []
                for p in self.params.groups[j]:
                    stash.append(p.grad)
                    p.grad = None
                self.deferred[-1] = (j, check_j, loss_j, stash)
            for p in params:
                p.grad = None
            backward()
            self.deferred.append((k, check, meta_loss, None))
            return
        if not bool(torch.isfinite(check)):
            self.stats.skip(k)
            return
        for p in params:  # a block's meta-optimizer touches only its own meta-parameters
            p.grad = None
        backward()
        self.params.step.step([self.params.group(k)])
        self.stats.meta(k, meta_loss)

    def flush(self) -> None:
        """The batched meta step: one host sync, then one multi-tensor step for all blocks.

        Equivalent to per-block steps (per-block eta models only): each block's meta-gradient
        comes from its own surrogate alone; a block whose surrogate or meta loss is not finite
        gets no step (its gradients are dropped) and is counted as skipped, as on the per-block
        path.
        """
        deferred, self.deferred = self.deferred, None
        if not deferred:
            return
        finite = torch.isfinite(torch.stack([entry[1] for entry in deferred])).tolist()
        for (k, _, meta_loss, stash), ok in zip(deferred, finite, strict=True):
            if stash is not None:
                for p, grad in zip(self.params.groups[k], stash, strict=True):
                    p.grad = grad
            if ok:
                self.stats.meta(k, meta_loss)
            else:
                self.stats.skip(k)
                for p in self.params.groups[k]:
                    p.grad = None
        if any(finite):
            self.params.step.step([entry[0] for entry, ok in zip(deferred, finite, strict=True)
                                   if ok])
