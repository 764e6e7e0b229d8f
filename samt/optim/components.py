"""SAMT's composable pieces: gradient features, eta model, projection, step shapes, combine.

Each piece is a small pure function (or module) so that an ablation is a config switch:
``features -> eta model -> projection -> combine -> clamp``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from samt.optim.choices import FEATURE_NAMES, PROJECTIONS, STEP_TYPES

# --- step shapes -------------------------------------------------------------------------------

def step_shape(step_type: str, weight_shape: torch.Size) -> tuple[int, ...]:
    """Shape of the trainable step for a weight of ``weight_shape`` = (out, in, ...)."""
    ndim = len(weight_shape)
    if step_type == "scalar":
        return ()
    if step_type == "element":
        return tuple(weight_shape)
    if ndim < 2:
        raise ValueError(
            f"step_type={step_type!r} needs a weight with >= 2 dims, got {weight_shape}")
    if step_type == "row":
        return (weight_shape[0],) + (1,) * (ndim - 1)
    if step_type == "column":
        return (1, weight_shape[1]) + (1,) * (ndim - 2)
    raise ValueError(f"unknown step_type {step_type!r}; allowed: {list(STEP_TYPES)}")


def secondary_step(weight_step: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Step for a bias / normalization parameter: the weight's step reduced to its own shape.

    Row and element types give one step per output unit (mean over the other dims); scalar and
    column types give the block's mean step.
    """
    if weight_step.dim() == 0:
        return weight_step
    per_unit = (weight_step if weight_step.dim() == 1  # a 1-D weight (a norm layer's own unit)
                else weight_step.mean(dim=tuple(range(1, weight_step.dim()))))
    if per_unit.shape[0] == 1 or per_unit.shape[0] != param.shape[0]:
        return per_unit.mean()
    return per_unit.reshape((-1,) + (1,) * (param.dim() - 1))


def secondary_step_adjoint(h: torch.Tensor, weight_step_shape: torch.Size,
                           param: torch.Tensor) -> torch.Tensor:
    """Adjoint of ``secondary_step``: maps ``h`` (shape of ``param``) to the weight-step shape.

    ``dot(secondary_step(e, p), h) == dot(e, secondary_step_adjoint(h, e.shape, p))``; folding
    the bias term into the weight's meta-gradient this way avoids a full-size backward of a mean.
    """
    if len(weight_step_shape) == 0:
        return h.sum()
    per_dim = 1
    for size in weight_step_shape[1:]:
        per_dim *= size
    if weight_step_shape[0] == 1 or weight_step_shape[0] != param.shape[0]:
        return (h.sum() / (weight_step_shape[0] * per_dim)).expand(weight_step_shape)
    return (h.reshape(-1) / per_dim).reshape((-1,) + (1,) * (len(weight_step_shape) - 1))


def hypergradient_product(g_new: torch.Tensor, g: torch.Tensor,
                          step_shape: torch.Size | tuple[int, ...],
                          inplace: bool = False) -> torch.Tensor:
    """``g' * g`` summed to the step's shape: ``d l(W - eta*g) / d eta`` is its negative.

    The first-order identity behind SAMT's meta-gradients and hypergradient SGD; ``g'`` is the
    gradient at ``W - eta*g``. Shape ``()`` gives the scalar ``g' . g``. The sign is left to
    the caller so that no full-size negation is needed. ``inplace=True`` forms ``g' * g`` in
    ``g``'s storage (no full-size allocation; ``g`` is overwritten).
    """
    prod = g.mul_(g_new) if inplace else g_new * g
    if prod.shape == tuple(step_shape):
        return prod
    if len(step_shape) == 0:
        return prod.sum()
    dims = tuple(i for i, s in enumerate(step_shape) if s == 1 and prod.shape[i] != 1)
    return prod.sum(dim=dims, keepdim=True).reshape(step_shape)


def meta_signal(g: torch.Tensor, g_new: torch.Tensor,
                secondaries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                step_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``P``: what every meta-gradient of a unit's step is made of, ``d loss / d eta = -P``.

    ``g' * g`` of the weight summed to the step's shape (``hypergradient_product``, formed in
    ``g``'s storage: ``g`` is overwritten), plus each bias-like parameter's ``g' * g`` carried
    to the step's shape (``secondaries``: ``(g, g', param)``; ``secondary_step_adjoint``).
    """
    product = hypergradient_product(g_new, g, step_shape, inplace=True)
    for g_p, g_new_p, param in secondaries:
        product.add_(secondary_step_adjoint(g_new_p * g_p, step_shape, param))
    return product


def sigmoid_meta_grad(p: torch.Tensor, s: torch.Tensor | None, theta: torch.Tensor,
                      z_m: torch.Tensor, c: torch.Tensor, beta_shape: tuple[int, ...] | None,
                      z_shape: tuple[int, ...], inplace: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The analytic meta-gradient of ``-sum(eta * P)`` for the sigmoid-projected step
    ``eta = beta*eta0 + c*s``, ``s = sigmoid(theta + z_m)``, ``c = (1-beta)*eta_max``.

    ``s`` is formed from ``theta`` and ``z_m`` where not given. Returns the ``theta`` gradient
    ``-P c s (1 - s)``, ``sum(P s)`` to ``c``'s shape, ``sum(P)`` to ``beta_shape`` (None
    without: ``combine=learned``) and the ``z_m`` adjoint (the gradient summed to ``z_shape``);
    ``d/d beta = eta_max sum(P s) - eta0 sum(P)`` (the caller's scale). ``inplace``: ``P`` and
    ``s`` are overwritten (no full-size allocation; the eager call); without it the function is
    pure, for ``torch.compile`` (``samt.optim.fused``), which fuses it into one or two loops.
    """
    if s is None:
        s = torch.add(theta, z_m).sigmoid_()
    sum_p = None
    if beta_shape is not None:  # (a copy where no sum is needed: ``p`` may change next)
        sum_p = p.sum_to_size(beta_shape) if tuple(beta_shape) != tuple(p.shape) else p.clone()
    ps = p.mul_(s) if inplace else p * s
    sum_ps = ps.sum_to_size(c.shape)
    grad = s.sub_(1.0).mul_(ps).mul_(c) if inplace else (s - 1.0) * ps * c
    return grad, sum_ps, sum_p, grad.sum_to_size(z_shape)


# --- features ----------------------------------------------------------------------------------

def squash(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log1p(|x|)``: keeps feature scales comparable across layers and training."""
    return torch.sign(x) * torch.log1p(x.abs())


def gradient_features(g: torch.Tensor, group_dim: int | None = None) -> torch.Tensor:
    """Raw ``[mean, var, max, min, norm]`` of ``g`` from a sum, a dot product and a min/max pass.

    ``group_dim=None`` gives shape (5,); otherwise one row of features per index of ``group_dim``,
    shape (g.shape[group_dim], 5). (``torch.var_mean`` is ~30x slower than this on CPU.)
    """
    if group_dim is None:
        flat = g.reshape(-1)
        total, sq = flat.sum(), torch.dot(flat, flat)
        mn, mx = torch.aminmax(flat)
    else:
        flat = g.movedim(group_dim, 0).reshape(g.shape[group_dim], -1)
        total, sq = flat.sum(dim=1), torch.linalg.vecdot(flat, flat)
        mn, mx = torch.aminmax(flat, dim=1)
    n = flat.shape[-1]
    mean = total / n
    var = (sq / n - mean * mean).clamp_min(0.0)
    return torch.stack([mean, var, mx, mn, sq.sqrt()], dim=-1)


def features(g: torch.Tensor, group_dim: int | None, idx: tuple[int, ...]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a step reads of a gradient: its raw features (``gradient_features``), the squashed
    selected ones ``phi`` (columns ``idx``) and the gradient's norm (shape (1,)). Run eager, or
    compiled by ``samt.optim.fused``."""
    raw = gradient_features(g, group_dim)
    norm = raw[..., 4].square().sum().sqrt().reshape(1)
    return raw, squash(raw[..., list(idx)]), norm


def feature_indices(names: list[str] | tuple[str, ...]) -> list[int]:
    """Column indices of the selected feature ``names`` (a non-empty subset of FEATURE_NAMES)."""
    if not names:
        raise ValueError(f"features must name at least one of {list(FEATURE_NAMES)}")
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; allowed: {list(FEATURE_NAMES)}")
    return [FEATURE_NAMES.index(n) for n in names]


# --- eta model ---------------------------------------------------------------------------------

class EtaModel(nn.Module):
    """MLP ``features -> hidden -> hidden -> (z_beta, z_m)``; zero last layer: beta=0.5, z_m=0.

    With ``num_blocks > 0`` it is shared by all blocks and reads a learned block embedding too.
    """

    def __init__(self, num_features: int, hidden: int = 32, num_blocks: int = 0,
                 embedding_dim: int = 8):
        super().__init__()
        self.embedding = nn.Embedding(num_blocks, embedding_dim) if num_blocks else None
        width_in = num_features + (embedding_dim if num_blocks else 0)
        self.net = nn.Sequential(nn.Linear(width_in, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, phi: torch.Tensor, block: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net(self._input(phi, block))
        return z[..., 0], z[..., 1]

    def _input(self, phi: torch.Tensor, block: int) -> torch.Tensor:
        if self.embedding is None:
            return phi
        emb = self.embedding.weight[block]
        return torch.cat([phi, emb.expand(*phi.shape[:-1], emb.shape[0])], dim=-1)

    def forward_kept(self, phi: torch.Tensor, block: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """``forward`` without autograd, plus what ``backward_into`` needs (its activations)."""
        first, _, second, _, last = self.net
        with torch.no_grad():
            x = self._input(phi, block)
            h1 = torch.tanh(first(x))
            h2 = torch.tanh(second(h1))
            z = last(h2)
        return z[..., 0], z[..., 1], (block, x, h1, h2)

    def backward_into(self, kept: tuple, d_beta: torch.Tensor | None, d_m: torch.Tensor) -> None:
        """The eta model's backward by hand: add ``d (sum(d_beta*z_beta + d_m*z_m)) / d param``
        to each parameter's ``.grad`` (``kept`` from ``forward_kept``; ``d_beta`` None: 0).

        Five small matrix products instead of an autograd graph and an engine call per
        meta-update (tests/test_eta_model_backward.py checks it against autograd).
        """
        block, x, h1, h2 = kept
        first, _, second, _, last = self.net
        with torch.no_grad():
            d_m = d_m.reshape(x.shape[:-1])
            d_beta = torch.zeros_like(d_m) if d_beta is None else d_beta.reshape(d_m.shape)
            dz = torch.stack([d_beta, d_m], dim=-1).reshape(-1, 2)
            x, h1, h2 = (a.reshape(-1, a.shape[-1]) for a in (x, h1, h2))
            d2 = torch.ops.aten.tanh_backward(dz @ last.weight, h2)
            d1 = torch.ops.aten.tanh_backward(d2 @ second.weight, h1)
            grads = [(last.weight, dz.t() @ h2), (last.bias, dz.sum(0)),
                     (second.weight, d2.t() @ h1), (second.bias, d2.sum(0)),
                     (first.weight, d1.t() @ x), (first.bias, d1.sum(0))]
            if self.embedding is not None:
                d_emb = torch.zeros_like(self.embedding.weight)
                d_emb[block] = (d1 @ first.weight)[:, -d_emb.shape[1]:].sum(0)
                grads.append((self.embedding.weight, d_emb))
            for param, grad in grads:
                param.grad = grad if param.grad is None else param.grad.add_(grad)


# --- projection and combine --------------------------------------------------------------------

def project(u: torch.Tensor, projection: str, eta0: float, eta_max: float,
            tanh_c: float) -> torch.Tensor:
    """``P(u)``: ``eta_max*sigmoid(u)`` or ``eta0*exp(c*tanh(u))``."""
    if projection == "sigmoid":
        return eta_max * torch.sigmoid(u)
    if projection == "tanh":
        return eta0 * torch.exp(tanh_c * torch.tanh(u))
    raise ValueError(f"unknown projection {projection!r}; allowed: {list(PROJECTIONS)}")


def theta_init(projection: str, eta0: float, eta_max: float) -> float:
    """The value of ``theta`` for which ``P(theta) = eta0``."""
    if projection == "sigmoid":
        ratio = eta0 / eta_max
        return math.log(ratio / (1.0 - ratio))
    return 0.0


def combine(kind: str, beta: torch.Tensor, eta0: float, eta_hat: torch.Tensor) -> torch.Tensor:
    """``eta_bar`` from the gate, the initial step and the learned step."""
    if kind == "convex":
        return beta * eta0 + (1.0 - beta) * eta_hat
    if kind == "learned":
        return eta_hat
    raise ValueError(f"combine {kind!r} has no learned step; allowed here: convex, learned")
