"""SAMT: stochastic alternating minimization with trainable step sizes.

One ``step(inputs, targets)`` takes one mini-batch and updates the model's blocks one after
another (Gauss-Seidel). Block k's step size ``eta_bar`` comes from its eta model reading five
statistics of the block gradient, combined with ``eta0``; the eta model and the step parameter
``theta`` are meta-learned online from the loss after the step.

The meta-gradient uses the exact first-order identity ``d l(W - eta*g) / d eta = -g' * g`` where
``g'`` is the gradient at the new point ``W' = W - eta*g``: ``exact`` takes ``g'`` on the same
batch right after the commit, ``lookahead`` on the next batch before any block moves,
``hypergradient`` at the block's next visit (no extra pass). The pass engine
(``samt.optim.passes``: a sequential fast path for an ``nn.Sequential``, a ``torch.fx`` graph
path for any other model) reuses cached values and the autograd graph of the first forward, so
top-down order needs one forward per block above the updated one and no full forward/backward
per block.

Cost (docs/performance.md): with the sigmoid projection (convex or learned combine) the
meta-gradient of ``-sum(eta * g' * g)`` is formed analytically with in-place element-wise ops,
and autograd runs only through the small eta model. In exact and lookahead modes with per-block
eta models the meta-updates of one iteration share one finiteness check (one host sync) and one
multi-tensor fused-Adam step; ``batch_meta = False`` selects the per-block reference path.
``compile=True`` runs the analytic path's full-size element-wise chains (features, step and its
statistics, meta-gradient) through ``torch.compile``d functions (``samt.optim.fused``).

Eta-model transfer: ``save_meta(path)`` writes the trained meta-parameters (eta models and
``theta``) with what must match to reuse them; ``SAMT(..., meta_init=path)`` starts from such a
file (``read_meta``), or from a ``SavedMeta`` that the caller read from elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from samt.optim.blocks import Block, GroupBy, block_order
from samt.optim.choices import FEATURE_NAMES
from samt.optim.commit import commit
from samt.optim.components import feature_indices
from samt.optim.fused import Chains
from samt.optim.meta_file import (  # noqa: F401  (re-exported: their import path of old)
    META_FORMAT,
    META_VERSION,
    SIGNATURE_KEYS,
    MetaInitError,
    SavedMeta,
    check_fits,
    load_tensors,
    meta_signature,
    read_meta,
    unpack_meta,
    write_meta,
)
from samt.optim.meta_grad import Visit, analytic_meta_grad, graph_surrogate
from samt.optim.meta_params import MetaParams
from samt.optim.meta_schedule import MetaSchedule
from samt.optim.options import DEFAULTS
from samt.optim.passes import Passes, build_passes
from samt.optim.samt_options import check_options
from samt.optim.samt_state import COUNTERS, pack_state, unpack_state
from samt.optim.step_sizes import StepSizes
from samt.optim.step_stats import BlockStats

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SAMT:
    """Block-alternating optimizer with meta-learned step sizes (see module docstring).

    Args (every keyword's default: ``samt.optim.options.DEFAULTS``, their one source):
        model: any ``nn.Module`` whose forward ``torch.fx`` can trace; an ``nn.Sequential`` of
            Linear/Conv layers takes the sequential fast path (``samt.optim.passes``).
        loss_fn: ``loss_fn(model_output, targets) -> scalar tensor``.
        step_type: ``scalar`` | ``element`` | ``row`` | ``column``.
        eta0, eta_min, eta_max: initial step and the clamp range of every applied step.
        projection: ``sigmoid`` | ``tanh`` (``tanh_c`` sets the tanh range eta0*e^(+-c)).
        combine: ``convex`` (paper) | ``learned`` (right term alone) | ``fixed`` (eta0, no meta).
        meta_mode: ``exact`` | ``lookahead`` | ``hypergradient``; ``meta_interval``: every n-th
            iteration only.
        meta_lr, meta_optimizer: learning rate and kind (``adam`` | ``sgd``) of the meta optimizer.
        features: subset of ``mean, var, max, min, norm``; ``features_per_group``: per row
            (row type) or column (column type).
        eta_hidden, eta_shared: eta model width; one shared eta model with a block embedding.
        group_size: layers per block (0: whole model). ``order``: block order per iteration.
        group_by: module-name prefixes; the layers under each form one block (a ResNet stage:
            ``["layer1", "layer2"]``), every other layer a block of its own; an entry that is
            a list of prefixes makes one block of them all (``[["conv1", "layer1"], ...]``).
        seed: seed of the generator used by ``order: random``.
        meta_init: start from the meta-parameters (eta models and ``theta``) trained by another
            run: the path of a file written by ``save_meta``, or a ``SavedMeta`` (see
            ``load_meta``). Step type, projection, features, eta model and block/``theta``
            shapes must match; the meta-optimizer starts fresh. ``self.meta_init`` is then the
            file read (``None`` without).
        compile: run the full-size element-wise chains of the analytic path (sigmoid
            projection, convex or learned combine: features, step and its statistics,
            meta-gradient) through ``torch.compile`` (``samt.optim.fused``), compiled at the
            first step of each weight shape, once per process. Equal to the eager path up to
            float rounding (reductions reordered); other cases stay eager. Where compiling
            fails (no C compiler), one warning and the eager path. Speed and compile time:
            docs/performance.md.
    """

    # The builders (``build_optimizer``, the runner's) make it as ``SAMT(model, loss_fn,
    # **options)``, not ``cls(model.parameters(), ...)`` wrapped in ``TorchOptimizerStep``.
    takes_model: ClassVar[bool] = True

    def __init__(self, model: nn.Module, loss_fn: LossFn,
                 *, step_type: str = DEFAULTS.step_type, eta0: float = DEFAULTS.eta0,
                 eta_min: float = DEFAULTS.eta_min, eta_max: float = DEFAULTS.eta_max,
                 projection: str = DEFAULTS.projection, tanh_c: float = DEFAULTS.tanh_c,
                 combine: str = DEFAULTS.combine, meta_mode: str = DEFAULTS.meta_mode,
                 meta_lr: float = DEFAULTS.meta_lr, meta_optimizer: str = DEFAULTS.meta_optimizer,
                 meta_interval: int = DEFAULTS.meta_interval,
                 features: Sequence[str] = DEFAULTS.features,
                 features_per_group: bool = DEFAULTS.features_per_group,
                 eta_hidden: int = DEFAULTS.eta_hidden, eta_shared: bool = DEFAULTS.eta_shared,
                 group_size: int = DEFAULTS.group_size,
                 group_by: GroupBy | None = DEFAULTS.group_by, order: str = DEFAULTS.order,
                 seed: int = DEFAULTS.seed,
                 meta_init: str | os.PathLike | SavedMeta | None = DEFAULTS.meta_init,
                 compile: bool = DEFAULTS.compile):
        check_options(step_type=step_type, projection=projection, combine=combine,
                      meta_mode=meta_mode, order=order, meta_optimizer=meta_optimizer,
                      eta0=eta0, eta_min=eta_min, eta_max=eta_max, meta_interval=meta_interval,
                      features_per_group=features_per_group)
        self.passes: Passes = build_passes(model, group_size, group_by)
        self.blocks: list[Block] = self.passes.blocks
        self.loss_fn = loss_fn
        self.step_type, self.combine, self.meta_mode = step_type, combine, meta_mode
        self.projection, self.tanh_c = projection, tanh_c
        self.eta0, self.eta_min, self.eta_max = eta0, eta_min, eta_max
        self.meta_interval, self.order = meta_interval, order
        self._chains = Chains(compile)  # compiled or eager chains; eager once compiling fails
        self.feature_idx = feature_indices(list(features))
        self.features = [FEATURE_NAMES[i] for i in self.feature_idx]
        self.eta_hidden, self.group_size = int(eta_hidden), int(group_size)
        self.group_dim = {"row": 0, "column": 1}.get(step_type) if features_per_group else None
        self.learns = combine != "fixed"
        self.generator = torch.Generator().manual_seed(seed)
        self.scale = 1.0
        self.iteration = 0
        self.param_updates = 0
        self.skipped_total = 0
        self._prev: dict[int, Visit] = {}
        # Batch the meta-updates of an iteration into one sync and one meta step where that
        # computes the same (``MetaSchedule.batches``); False selects the per-block reference.
        self.batch_meta = True
        # With the analytic meta-gradient: keep ``sigmoid(theta + z_m)`` (one weight-sized
        # tensor per unit) from a visit to its meta-update (True), or form it again there
        # (False: two more element-wise passes; one tensor less held between iterations, and in
        # exact mode formed only after g' is freed, one tensor less at the peak).
        self.keep_steps = False
        self._build_parts(eta_shared, meta_optimizer, meta_lr)
        self.meta_init: Path | None = None
        if meta_init is not None:
            self.load_meta(meta_init)

    def _build_parts(self, shared: bool, kind: str, lr: float) -> None:
        """The meta-parameters, step sizes, statistics and meta-update schedule."""
        self._meta = MetaParams(self.blocks, learns=self.learns,
                                num_features=len(self.feature_idx), hidden=self.eta_hidden,
                                shared=shared, step_type=self.step_type,
                                projection=self.projection, eta0=self.eta0,
                                eta_max=self.eta_max, kind=kind, lr=lr)
        self.meta, self.shared = self._meta.module, shared
        self.meta_optimizers = self._meta.optimizers
        self._steps = StepSizes(self.blocks, self._meta, self._chains, learns=self.learns,
                                step_type=self.step_type, projection=self.projection,
                                combine=self.combine, tanh_c=self.tanh_c, eta0=self.eta0,
                                eta_max=self.eta_max, group_dim=self.group_dim)
        self._stats = BlockStats(len(self.blocks), self.blocks[0].units[0].weight.device)
        self._schedule = MetaSchedule(self._meta, self._stats, learns=self.learns,
                                      meta_mode=self.meta_mode,
                                      meta_interval=self.meta_interval)

    # --- compile, step sizes, updates ---------------------------------------------------------

    @property
    def compile(self) -> bool:
        """Whether the analytic path's chains run compiled (False once compiling failed)."""
        return self._chains.enabled

    @property
    def compile_error(self) -> str | None:
        """Why compiling failed, or None."""
        return self._chains.error

    def _apply(self, k: int, loss: torch.Tensor, grads: list[torch.Tensor],
               keep_graph: bool) -> Visit | None:
        """Commit block ``k``'s step; ``None`` (and counted) when loss or gradient is not finite.

        ``keep_graph`` keeps the steps' autograd graph in the returned visit (exact mode).
        """
        block, analytic = self.blocks[k], self._steps.analytic
        grad_of = dict(zip(map(id, block.params), grads, strict=True))
        fast = keep_graph and analytic  # the full-size part of the step runs without autograd
        feats = [self._chains.run("features", g if analytic else None, g, self.group_dim,
                                  tuple(self.feature_idx))
                 for g in (grad_of[id(u.weight)] for u in block.units)]  # (raw, phi, norm)
        checks = [loss.reshape(1)] + [f[0].reshape(-1) for f in feats]
        checks += [grad_of[id(p)].sum().reshape(1) for u in block.units for p in u.secondaries]
        phis = [f[1] for f in feats]
        with torch.set_grad_enabled(keep_graph):
            steps = self._steps.steps(k, phis, self.scale, keep=fast, keep_s=self.keep_steps)
        done = commit(block, steps, grads, checks, [f[2] for f in feats],
                      self.eta_min * self.scale, self.eta_max * self.scale, keep_graph)
        if done is None:
            self._stats.skip(k)
            self.skipped_total += 1
            return None
        sums, clamped = done
        self._stats.visit(k, sums, [float(s.raw.numel()) for s in steps], clamped)
        self.param_updates += len(block.units)
        self.passes.moved(k)
        if fast:  # a clamped step's meta-gradient is recomputed with autograd (same params)
            return Visit(phis, grads, None, clamped,
                         None if clamped else [s.analytic for s in steps])
        return Visit(phis, grads, [s.eta for s in steps] if keep_graph else None, clamped)

    def _meta_update(self, k: int, visit: Visit, new_grads: list[torch.Tensor],
                     meta_loss: torch.Tensor) -> None:
        """Meta-step of block ``k``: ``d loss / d eta = -g' * g`` back through ``eta_bar``."""
        if visit.fast is None and visit.etas is None and not visit.clamped and \
                self._steps.analytic:  # recompute what it needs, with the current meta-params
            visit.fast = [info for _, _, info in
                          self._steps.analytic_terms(k, visit.phis, self.scale)]
        if visit.fast is not None:
            self._meta_update_fast(k, visit, new_grads, meta_loss)
            return
        etas = visit.etas
        if etas is None:  # recompute the steps with the current meta-parameters
            low, high = self.eta_min * self.scale, self.eta_max * self.scale
            etas = [raw.clamp(low, high) if visit.clamped else raw
                    for raw, _ in self._steps.graph_steps(k, visit.phis, self.scale)]
        surrogate = graph_surrogate(self.blocks[k], etas, visit.grads, new_grads, meta_loss)
        del etas
        self._schedule.finish(k, surrogate.detach() + meta_loss, meta_loss, surrogate.backward)

    def _meta_update_fast(self, k: int, visit: Visit, new_grads: list[torch.Tensor],
                          meta_loss: torch.Tensor) -> None:
        """``_meta_update`` with the analytic meta-gradient (``analytic_meta_grad``); in exact
        mode each weight's ``g'`` is dropped from ``new_grads`` once used."""
        check, backward = analytic_meta_grad(
            self.blocks[k], visit.fast, self._meta.thetas(k), visit.grads, new_grads, meta_loss,
            self._chains, self.meta_mode == "exact", self.eta0 * self.scale,
            self.eta_max * self.scale)
        self._schedule.finish(k, check, meta_loss, backward)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One iteration on a mini-batch; returns the (detached) loss before the update."""
        self.iteration += 1
        meta_now = self._schedule.meta_now(self.iteration)
        self.passes.forward(inputs)
        order = block_order(self.order, len(self.blocks), self.generator)
        grads: dict[int, list[torch.Tensor]] = {}
        first_loss = None
        self._schedule.begin(meta_now, self.batch_meta)
        if meta_now and self.meta_mode == "lookahead" and self._prev:
            first_loss, grads = self.passes.grads(set(range(len(self.blocks))), targets,
                                                   self.loss_fn)
            for k, visit in self._prev.items():
                self._meta_update(k, visit, grads[k], first_loss)
            self._prev.clear()
            self._schedule.flush()  # before any block's step uses the meta-parameters
        loss = first_loss
        pending: tuple[int, Visit] | None = None
        for k in order:
            wanted = {k} if pending is None else {k, pending[0]}
            if k not in grads:
                loss, grads = self.passes.grads(wanted, targets, self.loss_fn)
            first_loss = loss if first_loss is None else first_loss
            if pending is not None:
                self._meta_update(pending[0], pending[1], grads.pop(pending[0]), loss)
                pending = None  # g' and the visit's g are freed here, before the next step
            if meta_now and self.meta_mode == "hypergradient" and k in self._prev:
                self._meta_update(k, self._prev.pop(k), grads[k], loss)
            keep = self._schedule.keep_graph(self.iteration, meta_now)
            visit = self._apply(k, loss, grads[k], keep_graph=keep)
            grads = {}
            if visit is None or not self.learns:
                continue
            if self.meta_mode == "exact":
                pending = (k, visit) if meta_now else None
            else:
                self._prev[k] = visit
        if pending is not None:
            loss, grads = self.passes.grads({pending[0]}, targets, self.loss_fn)
            self._meta_update(pending[0], pending[1], grads.pop(pending[0]), loss)
        self._schedule.flush()
        self.passes.finish()
        return first_loss

    def train_mode(self) -> None:
        """Nothing to switch: SAMT trains the model's own weights (kept for the runner's API)."""

    def eval_mode(self) -> None:
        """Nothing to switch: SAMT trains the model's own weights (kept for the runner's API)."""

    def set_scale(self, scale: float) -> None:
        """Scale ``eta0``, ``eta_min``, ``eta_max`` (hence every step) by ``scale`` (schedules)."""
        self.scale = float(scale)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """No-op kept for the ``torch.optim`` calling convention: SAMT never uses ``.grad``."""

    def epoch_stats(self) -> dict[str, float]:
        """Per-block means since the last call (``b{k}_{stat}``), then reset."""
        return self._stats.epoch()

    # --- eta-model transfer --------------------------------------------------------------------

    @property
    def has_meta(self) -> bool:
        """Whether there are meta-parameters to save (``save_meta``) and load: not with
        ``combine='fixed'``, which learns no step sizes."""
        return self.learns

    def meta_signature(self) -> dict[str, Any]:
        """What two optimizers must share for one's meta-parameters to be loaded into the other."""
        return meta_signature(self.blocks, step_type=self.step_type,
                              projection=self.projection, features=self.features,
                              per_group=self.group_dim is not None, shared=self.shared,
                              hidden=self.eta_hidden)

    def save_meta(self, path: str | os.PathLike) -> None:
        """Write the meta-parameters (eta models and ``theta``) to ``path`` for ``meta_init``.

        The file (``samt.optim.meta_file``; ``torch.load(weights_only=True)`` reads it) holds
        ``meta`` (``state_dict()["meta"]``, on the CPU), its ``checksum``, and ``config``:
        ``meta_signature()`` plus the knobs that shaped the training (combine, eta0, eta_min,
        eta_max, meta_mode, group_size) and the iterations trained. Written atomically.
        """
        if not self.learns:
            raise ValueError("combine='fixed' learns no step sizes: there are no "
                             "meta-parameters to save")
        config = {**self.meta_signature(), "combine": self.combine, "eta0": self.eta0,
                  "eta_min": self.eta_min, "eta_max": self.eta_max, "meta_mode": self.meta_mode,
                  "group_size": self.group_size, "iterations": self.iteration}
        write_meta(path, self.meta.state_dict(), config)

    def load_meta(self, source: str | os.PathLike | SavedMeta) -> Path:
        """Load meta-parameters from ``source``: the path of a ``save_meta`` file, or a
        ``SavedMeta`` read by the caller. Returns the file they came from (also
        ``self.meta_init``).

        Only the eta models and ``theta`` are loaded: the meta-optimizer state, counters and
        pending visits stay as they are. Raises ``MetaInitError`` naming the file and what does
        not fit.
        """
        given = source.file if isinstance(source, SavedMeta) else source
        if not self.learns:
            raise MetaInitError(given, " cannot be used: combine='fixed' learns no step sizes, "
                                "so there are no meta-parameters to initialize")
        saved = source if isinstance(source, SavedMeta) else read_meta(source)
        check_fits(given, saved, self.meta_signature(), self.meta.state_dict())
        file, meta, _ = saved
        self.meta.load_state_dict(meta)
        self.meta_init = Path(file)
        return self.meta_init

    def state_dict(self) -> dict:
        """Meta-parameters, meta-optimizer state, pending visits, counters and RNG state."""
        return pack_state(self.meta, self.meta_optimizers, self._prev,
                          {name: getattr(self, name) for name in COUNTERS}, self.generator)

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        self._prev = unpack_state(state, self.meta, self.meta_optimizers, self.generator,
                                  self._stats.device)
        for name in COUNTERS:
            setattr(self, name, state[name])
