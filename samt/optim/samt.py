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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from samt.optim.blocks import Block
from samt.optim.choices import FEATURE_NAMES
from samt.optim.components import (
    EtaModel,
    feature_indices,
    meta_signal,
    secondary_step,
    step_shape,
    theta_init,
)
from samt.optim.fused import Chains
from samt.optim.meta_file import (  # noqa: F401  (re-exported: their import path of old)
    META_FORMAT,
    META_VERSION,
    SIGNATURE_KEYS,
    MetaInitError,
    SavedMeta,
    check_fits,
    load_tensors,
    read_meta,
    unpack_meta,
    write_meta,
)
from samt.optim.meta_step import MetaStep, make_meta_optimizer
from samt.optim.options import DEFAULTS
from samt.optim.passes import Passes, build_passes
from samt.optim.samt_options import check_options
from samt.optim.step_rule import Analytic, Step, gate, step_rule, step_statistics
from samt.optim.step_stats import BlockStats

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
@dataclass
class _Visit:
    """What a block's meta-update needs from the visit that applied a step."""

    phis: list[torch.Tensor]             # squashed features per unit (detached)
    grads: list[torch.Tensor]            # gradients of the block's params, ``Block.params`` order
    etas: list[torch.Tensor] | None = None  # applied steps with their autograd graph, if kept
    clamped: bool = True                 # whether any step entry needed clamping
    fast: list[Analytic] | None = None   # for the analytic meta-gradient, if kept


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
            ``["layer1", "layer2"]``), every other layer a block of its own.
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

    ``takes_model = True`` tells the builders (``samt.optim.build_optimizer`` and the runner's
    config builder) to construct it as ``SAMT(model, loss_fn, **options)`` and use it
    directly, instead of ``cls(model.parameters(), **options)`` wrapped in
    ``TorchOptimizerStep``.
    """

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
                 group_by: Sequence[str] | None = DEFAULTS.group_by, order: str = DEFAULTS.order,
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
        self._prev: dict[int, _Visit] = {}
        # Batch the meta-updates of an iteration into one sync and one meta step where that
        # computes the same (``_batches_meta``); False selects the per-block reference path.
        self.batch_meta = True
        # With the analytic meta-gradient: keep ``sigmoid(theta + z_m)`` (one weight-sized
        # tensor per unit) from a visit to its meta-update (True), or form it again there
        # (False: two more element-wise passes; one tensor less held between iterations, and in
        # exact mode formed only after g' is freed, one tensor less at the peak).
        self.keep_steps = False
        # (block, finiteness check, meta loss, its meta-gradient set aside or None)
        self._deferred: list[tuple[int, torch.Tensor, torch.Tensor,
                                   list[torch.Tensor | None] | None]] | None = None
        self._build_meta(eta_hidden, eta_shared, meta_optimizer, meta_lr)
        device = self.blocks[0].units[0].weight.device
        self._stats = BlockStats(len(self.blocks), device)
        self.meta_init: Path | None = None
        if meta_init is not None:
            self.load_meta(meta_init)

    # --- construction --------------------------------------------------------------------------

    def _build_meta(self, hidden: int, shared: bool, kind: str, lr: float) -> None:
        self.meta = nn.Module()
        self.shared = shared
        self._meta_params: list[list[nn.Parameter]] = []
        if not self.learns:
            self.meta_optimizers = []
            return
        weight = self.blocks[0].units[0].weight
        n_feat = len(self.feature_idx)
        if shared:
            self.meta.eta = EtaModel(n_feat, hidden, num_blocks=len(self.blocks))
        else:
            self.meta.eta = nn.ModuleList(EtaModel(n_feat, hidden) for _ in self.blocks)
        init = theta_init(self.projection, self.eta0, self.eta_max)
        self.meta.theta = nn.ParameterList(
            nn.Parameter(torch.full(step_shape(self.step_type, u.weight.shape), init,
                                    dtype=u.weight.dtype, device=u.weight.device))
            for block in self.blocks for u in block.units)
        self.meta.to(device=weight.device, dtype=weight.dtype)
        self._theta_offset = [0]
        for block in self.blocks:
            self._theta_offset.append(self._theta_offset[-1] + len(block.units))
        # One meta-optimizer per block (one for all when the eta model is shared): a block's
        # meta-step then touches only its own tensors, and fused Adam is one kernel per tensor.
        groups = [list(self.meta.parameters())] if shared else [
            [*self.meta.eta[k].parameters(),
             *self.meta.theta[self._theta_offset[k]:self._theta_offset[k + 1]]]
            for k in range(len(self.blocks))]
        self._meta_params = groups
        self._meta_step = MetaStep(groups, make_meta_optimizer(kind, lr))
        self.meta_optimizers = self._meta_step.optimizers
        self._meta_flat = list(self.meta.parameters())

    # --- step sizes ----------------------------------------------------------------------------

    @property
    def compile(self) -> bool:
        """Whether the analytic path's chains run compiled (False once compiling failed)."""
        return self._chains.enabled

    @property
    def compile_error(self) -> str | None:
        """Why compiling failed, or None."""
        return self._chains.error

    def _analytic(self) -> bool:
        """Whether steps have the analytic meta-gradient (``Analytic``): sigmoid projection,
        convex or learned combine. Other cases back-propagate through the step with autograd."""
        return self.learns and self.projection == "sigmoid" and self.combine in ("convex",
                                                                                   "learned")

    def _eta_outputs(self, k: int, phis: list[torch.Tensor], kept: bool
                     ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]]:
        """Per unit of block ``k``: ``theta``, ``z_m``, the gate ``beta`` and, with ``kept``, the
        eta model's activations (``EtaModel.forward_kept``: no autograd graph)."""
        model = self.meta.eta if isinstance(self.meta.eta, EtaModel) else self.meta.eta[k]
        out = []
        for i, (unit, phi) in enumerate(zip(self.blocks[k].units, phis, strict=True)):
            if kept:
                z_beta, z_m, acts = model.forward_kept(phi, k)
            else:
                (z_beta, z_m), acts = model(phi, k), None
            if self.group_dim is not None:
                shape = step_shape(self.step_type, unit.weight.shape)
                z_beta, z_m = z_beta.reshape(shape), z_m.reshape(shape)
            out.append((self.meta.theta[self._theta_offset[k] + i], z_m,
                        gate(z_beta, self.combine), acts))
        return out

    def _analytic_terms(self, k: int, phis: list[torch.Tensor]
                        ) -> list[tuple[torch.Tensor, torch.Tensor, Analytic]]:
        """Per unit of block ``k``: ``theta``, the gate and what the analytic meta-gradient
        needs (``s`` left to the caller)."""
        model = self.meta.eta if isinstance(self.meta.eta, EtaModel) else self.meta.eta[k]
        out = []
        for theta, z_m, beta, acts in self._eta_outputs(k, phis, kept=True):
            with torch.no_grad():
                c = (1.0 - beta) * (self.eta_max * self.scale)
            out.append((theta, beta, Analytic(None, c, beta if self.combine == "convex"
                                              else None, z_m, model, acts)))
        return out

    def _graph_steps(self, k: int, phis: list[torch.Tensor]
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(step before clamping, gate)`` of block ``k``'s units (``step_rule``), with
        autograd following the meta-parameters where grad mode is on."""
        eta0, eta_max = self.eta0 * self.scale, self.eta_max * self.scale
        return [(step_rule(theta, z_m, beta, eta0, eta_max, self.projection, self.combine,
                           self.tanh_c), beta)
                for theta, z_m, beta, _ in self._eta_outputs(k, phis, kept=False)]

    def _unit_steps(self, k: int, phis: list[torch.Tensor], keep: bool) -> list[Step]:
        """Step of each unit of block ``k`` from its features, with its statistics.

        On the analytic path the step is formed without autograd (``unit_step``, compiled
        where ``Chains`` says) and, with ``keep``, ``Step.analytic`` keeps what the meta-update
        needs (``s`` only with ``keep_steps``; else the step is formed in ``s``'s storage).
        Otherwise autograd follows the meta-parameters where grad mode is on.
        """
        if not self.learns:
            weight = self.blocks[k].units[0].weight
            step = torch.full((), self.eta0 * self.scale, device=weight.device,
                              dtype=weight.dtype)
            beta = torch.ones_like(step)
            return [Step(step, step, beta, step_statistics(step, beta)) for _ in phis]
        if not self._analytic():
            return [Step(raw, raw, beta, step_statistics(raw.detach(), beta.detach()))
                    for raw, beta in self._graph_steps(k, phis)]
        eta0, keep_s = self.eta0 * self.scale, keep and self.keep_steps
        out = []
        for theta, beta, info in self._analytic_terms(k, phis):
            raw, info.s, row = self._chains.run(
                "step", theta, theta.detach(), info.z_m.detach(), beta * eta0, info.c,
                beta.detach(), keep_s, inplace=True)
            out.append(Step(raw, raw, beta.detach(), row, info if keep else None))
        return out

    # --- updates -------------------------------------------------------------------------------

    def _apply(self, k: int, loss: torch.Tensor, grads: list[torch.Tensor],
               keep_graph: bool) -> _Visit | None:
        """Commit block ``k``'s step; ``None`` (and counted) when loss or gradient is not finite.

        ``keep_graph`` keeps the steps' autograd graph in the returned visit (exact mode).
        """
        block = self.blocks[k]
        grad_of = dict(zip(map(id, block.params), grads, strict=True))
        analytic = self._analytic()  # the full-size part of the step then runs without autograd
        fast = keep_graph and analytic
        feats = [self._chains.run("features", g if analytic else None, g, self.group_dim,
                                  tuple(self.feature_idx))
                 for g in (grad_of[id(u.weight)] for u in block.units)]  # (raw, phi, norm)
        checks = [loss.reshape(1)] + [f[0].reshape(-1) for f in feats]
        checks += [grad_of[id(p)].sum().reshape(1) for u in block.units for p in u.secondaries]
        phis = [f[1] for f in feats]
        with torch.set_grad_enabled(keep_graph):
            steps = self._unit_steps(k, phis, keep=fast)
        low, high = self.eta_min * self.scale, self.eta_max * self.scale
        with torch.no_grad():
            rows = [torch.cat([step.row, f[2]]) for step, f in zip(steps, feats, strict=True)]
            sums = torch.stack(rows)
            checks.append(sums.reshape(-1))
            # The one host sync per block: finiteness, and whether any entry needs clamping.
            finite, lo, hi = torch.stack([torch.isfinite(torch.cat(checks)).all().to(sums.dtype),
                                          sums[:, 2].min(), sums[:, 3].max()]).tolist()
            if not finite:
                self._stats.skip(k)
                self.skipped_total += 1
                return None
            clamped = lo < low or hi > high
            for unit, step in zip(block.units, steps, strict=True):
                if clamped:
                    with torch.set_grad_enabled(keep_graph):
                        step.clamp(low, high)
                eta = step.eta.detach()
                unit.weight.addcmul_(eta, grad_of[id(unit.weight)], value=-1.0)
                for p in unit.secondaries:
                    p.addcmul_(secondary_step(eta, p), grad_of[id(p)], value=-1.0)
            if clamped:  # exact statistics of the clamped steps
                flats = [s.eta.detach().reshape(-1) for s in steps]
                sums = torch.cat([torch.stack([torch.stack([f.sum(), torch.dot(f, f)])
                                               for f in flats]), sums[:, 2:]], dim=1)
            self._stats.visit(k, sums, [float(s.raw.numel()) for s in steps], clamped)
        self.param_updates += len(block.units)
        self.passes.moved(k)
        if fast:  # a clamped step's meta-gradient is recomputed with autograd (same params)
            return _Visit(phis, grads, None, clamped,
                          None if clamped else [s.analytic for s in steps])
        return _Visit(phis, grads, [s.eta for s in steps] if keep_graph else None, clamped)

    def _meta_update(self, k: int, visit: _Visit, new_grads: list[torch.Tensor],
                     meta_loss: torch.Tensor) -> None:
        """Meta-step of block ``k``: ``d loss / d eta = -g' * g`` back through ``eta_bar``."""
        if visit.fast is None and visit.etas is None and not visit.clamped and self._analytic():
            # recompute what the analytic meta-gradient needs, with the current meta-parameters
            visit.fast = [info for _, _, info in self._analytic_terms(k, visit.phis)]
        if visit.fast is not None:
            self._meta_update_fast(k, visit, new_grads, meta_loss)
            return
        block = self.blocks[k]
        etas = visit.etas
        if etas is None:  # recompute the steps with the current meta-parameters
            low, high = self.eta_min * self.scale, self.eta_max * self.scale
            etas = [raw.clamp(low, high) if visit.clamped else raw
                    for raw, _ in self._graph_steps(k, visit.phis)]
        grad_of = dict(zip(map(id, block.params), zip(visit.grads, new_grads, strict=True),
                           strict=True))
        surrogate = meta_loss.new_zeros(())
        for unit, eta in zip(block.units, etas, strict=True):
            g, g_new = grad_of[id(unit.weight)]
            # d loss / d eta = -P; formed in g's storage (g is not needed after this)
            product = meta_signal(g, g_new, _secondaries(unit, grad_of), eta.shape)
            surrogate = surrogate - torch.dot(eta.reshape(-1), product.reshape(-1))
            del product
        del grad_of, etas
        self._meta_finish(k, surrogate.detach() + meta_loss, meta_loss, surrogate.backward)

    def _meta_update_fast(self, k: int, visit: _Visit, new_grads: list[torch.Tensor],
                          meta_loss: torch.Tensor) -> None:
        """``_meta_update`` with the analytic gradient of ``-sum(eta * g' * g)``.

        With ``P = g' * g`` (summed to the step's shape, bias terms folded in), ``s``, ``c`` and
        ``beta`` of ``Analytic``: ``d/d theta = -P c s (1 - s)``, ``d/d z_m`` its sum to ``z_m``'s
        shape and ``d/d beta = -(eta0 P - eta_max P s)`` summed to ``beta``'s shape, carried
        back through the sigmoid and the eta model by hand (``EtaModel.backward_into``). ``P`` is
        formed in the stored ``g`` and the ``theta`` gradient in ``s``'s storage: no full-size
        allocation.
        """
        block = self.blocks[k]
        eta0, eta_max = self.eta0 * self.scale, self.eta_max * self.scale
        grad_of = dict(zip(map(id, block.params), zip(visit.grads, new_grads, strict=True),
                           strict=True))
        # Exact mode: the caller hands g' over (``new_grads`` is its only holder), so each
        # weight's g' is dropped once P = g' * g is formed; the other modes use g' again.
        release = self.meta_mode == "exact"
        index = {id(p): i for i, p in enumerate(block.params)} if release else {}
        thetas, theta_grads, backs, checks = [], [], [], [meta_loss]
        for i, (unit, info) in enumerate(zip(block.units, visit.fast, strict=True)):
            theta = self.meta.theta[self._theta_offset[k] + i]
            g, g_new = grad_of[id(unit.weight)]
            product = meta_signal(g, g_new, _secondaries(unit, grad_of), theta.shape)
            if release:  # exact mode: nothing reads g' after this; free it before s is formed
                new_grads[index[id(unit.weight)]] = None
                grad_of[id(unit.weight)] = (product, None)
            g = g_new = None
            args = (product, info.s, theta.detach(), info.z_m.detach(), info.c,
                    None if info.beta is None else tuple(info.beta.shape), tuple(info.z_m.shape))
            result = self._chains.run("meta", product, *args, inplace=True)
            del product, args
            grad, sum_ps, sum_p, adjoint = result
            thetas.append(theta)
            theta_grads.append(grad)
            backs.append((info, adjoint, None if info.beta is None
                          else eta_max * sum_ps - eta0 * sum_p))
            checks.append(sum_ps.sum())
            if info.beta is not None:
                checks.append(sum_p.sum())
        del grad_of

        def backward() -> None:
            for info, d_m, d_beta in backs:  # through beta = sigmoid(z_beta), then the model
                d_z_beta = (None if d_beta is None
                            else torch.ops.aten.sigmoid_backward(d_beta, info.beta))
                info.model.backward_into(info.kept, d_z_beta, d_m)
            for theta, grad in zip(thetas, theta_grads, strict=True):
                theta.grad = grad if theta.grad is None else theta.grad + grad

        self._meta_finish(k, torch.stack(checks).sum(), meta_loss, backward)

    def _meta_finish(self, k: int, check: torch.Tensor, meta_loss: torch.Tensor,
                     backward: Callable[[], None]) -> None:
        """Check (``check`` finite), back-propagate and step block ``k``'s meta-parameters, or
        defer the check and the step to ``_flush_meta`` on the batched path."""
        params = self._meta_params[0 if self.shared else k]
        if self._deferred is not None:  # batched: one finiteness sync and meta step per iteration
            if self._deferred and self._deferred[-1][3] is None:
                # Set the previous block's meta-gradient aside: as on the per-block path, the
                # ``.grad`` of the meta-parameters holds only the last meta-update's gradient.
                j, check_j, loss_j, _ = self._deferred[-1]
                stash = []
                for p in self._meta_params[j]:
                    stash.append(p.grad)
                    p.grad = None
                self._deferred[-1] = (j, check_j, loss_j, stash)
            for p in params:
                p.grad = None
            backward()
            self._deferred.append((k, check, meta_loss, None))
            return
        if not bool(torch.isfinite(check)):
            self._stats.skip(k)
            return
        for p in params:  # a block's meta-optimizer touches only its own meta-parameters
            p.grad = None
        backward()
        self._meta_step.step([0 if self.shared else k])
        self._stats.meta(k, meta_loss)

    def _flush_meta(self) -> None:
        """The batched meta step: one host sync, then one multi-tensor step for all blocks.

        Equivalent to per-block steps (per-block eta models only): each block's meta-gradient
        comes from its own surrogate alone; a block whose surrogate or meta loss is not finite
        gets no step (its gradients are dropped) and is counted as skipped, as on the per-block
        path.
        """
        deferred, self._deferred = self._deferred, None
        if not deferred:
            return
        finite = torch.isfinite(torch.stack([entry[1] for entry in deferred])).tolist()
        for (k, _, meta_loss, stash), ok in zip(deferred, finite, strict=True):
            if stash is not None:
                for p, grad in zip(self._meta_params[k], stash, strict=True):
                    p.grad = grad
            if ok:
                self._stats.meta(k, meta_loss)
            else:
                self._stats.skip(k)
                for p in self._meta_params[k]:
                    p.grad = None
        if any(finite):
            self._meta_step.step([entry[0] for entry, ok in zip(deferred, finite, strict=True)
                                  if ok])

    # --- public API ----------------------------------------------------------------------------

    def _keep_graph(self, meta_now: bool) -> bool:
        """Keep this visit's step graph for its meta-update instead of recomputing it later.

        Valid while no meta-parameter it used changes before that update: always in exact mode
        (the update follows at once); in the other modes only with per-block eta models, whose
        parameters change only in their own block's meta-update. The analytic path keeps the
        eta model's small outputs and activations (``Analytic``), and ``s`` only with
        ``keep_steps`` (else the meta-update forms it again).
        """
        if self.meta_mode == "exact":
            return meta_now
        next_is_meta = (self.iteration + 1) % self.meta_interval == 0
        return self.learns and next_is_meta and not self.shared

    def _batches_meta(self, meta_now: bool) -> bool:
        """Whether this iteration's meta-updates can wait for one batched step at its end.

        Exact and lookahead modes with per-block eta models: a block's meta-parameters are used
        once per iteration (its step) before its meta-update (exact), or after all meta-updates
        (lookahead), so deferring the meta step changes nothing. Hypergradient mode uses the
        updated meta-parameters for the block's next step at once, and a shared eta model is
        used by every block: those keep one meta step per block.
        """
        return (self.batch_meta and meta_now and not self.shared
                and self.meta_mode in ("exact", "lookahead"))

    def _block_order(self) -> list[int]:
        n = len(self.blocks)
        if self.order == "top_down":
            return list(range(n - 1, -1, -1))
        if self.order == "bottom_up":
            return list(range(n))
        return torch.randperm(n, generator=self.generator).tolist()

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One iteration on a mini-batch; returns the (detached) loss before the update."""
        self.iteration += 1
        meta_now = self.learns and self.iteration % self.meta_interval == 0
        self.passes.forward(inputs)
        order = self._block_order()
        grads: dict[int, list[torch.Tensor]] = {}
        first_loss = None
        if meta_now:  # last iteration's meta-gradients are not needed: free them before the
            for p in self._meta_flat:  # passes (the batched step steps what has one)
                p.grad = None
        if self._batches_meta(meta_now):
            self._deferred = []
        if meta_now and self.meta_mode == "lookahead" and self._prev:
            first_loss, grads = self.passes.grads(set(range(len(self.blocks))), targets,
                                                   self.loss_fn)
            for k, visit in self._prev.items():
                self._meta_update(k, visit, grads[k], first_loss)
            self._prev.clear()
            self._flush_meta()  # before any block's step uses the meta-parameters
        loss = first_loss
        pending: tuple[int, _Visit] | None = None
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
            visit = self._apply(k, loss, grads[k], keep_graph=self._keep_graph(meta_now))
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
        self._flush_meta()
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
        return {
            "step_type": self.step_type,
            "projection": self.projection,
            "features": list(self.features),
            "features_per_group": self.group_dim is not None,
            "eta_shared": self.shared,
            "eta_hidden": self.eta_hidden,
            "block_sizes": [len(b.units) for b in self.blocks],
            "theta_shapes": [list(step_shape(self.step_type, u.weight.shape))
                             for b in self.blocks for u in b.units],
        }

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
        return {
            "meta": self.meta.state_dict(),
            "meta_optimizers": [opt.state_dict() for opt in self.meta_optimizers],
            "prev": {k: (v.phis, v.grads, v.clamped) for k, v in self._prev.items()},
            "iteration": self.iteration,
            "scale": self.scale,
            "param_updates": self.param_updates,
            "skipped_total": self.skipped_total,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.meta.load_state_dict(state["meta"])
        for opt, opt_state in zip(self.meta_optimizers, state["meta_optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        device = self._stats.device
        self._prev = {int(k): _Visit([t.to(device) for t in v[0]], [t.to(device) for t in v[1]],
                                     clamped=bool(v[2]) if len(v) > 2 else True)
                      for k, v in state["prev"].items()}
        self.iteration = state["iteration"]
        self.scale = state["scale"]
        self.param_updates = state["param_updates"]
        self.skipped_total = state["skipped_total"]
        self.generator.set_state(state["generator"])


def _secondaries(unit: Any, grad_of: dict[int, tuple[torch.Tensor, torch.Tensor]]
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(g, g', param)`` of each bias-like parameter of ``unit`` (``meta_signal``)."""
    return [(*grad_of[id(p)], p) for p in unit.secondaries]
