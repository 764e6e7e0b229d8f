"""The full-size element-wise chains of SAMT's analytic path as pure functions for
``torch.compile`` (``SAMT(..., compile=True)``).

Each function is the same arithmetic as the eager code in ``samt.optim.samt`` (``_apply``,
``_unit_steps`` with ``fast=True``) written without in-place tricks, so that inductor fuses each
into one or two loops over the weight; the meta-gradient is the eager one itself
(``samt.optim.components.sigmoid_meta_grad`` with ``inplace=False``). The results equal eager up to
float rounding (inductor orders the reductions its own way). ``compiled(name)`` compiles one of
them lazily, once per process; ``CompileUnavailable`` is raised when the platform cannot compile
(no C compiler, unsupported Python), and ``SAMT`` then falls back to eager with one
``CompileWarning``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from samt.optim.components import sigmoid_meta_grad

# torch.compile's options for every function. dynamic=None (torch's default): a graph for the
# first weight shape, then one with symbolic sizes for all others (per dtype and variant), as
# fast on the CPU as one graph per shape (dynamic=False) and fewer compilations on a model with
# many layer shapes (docs/performance.md).
COMPILE_OPTIONS: dict = {"dynamic": None}
# Smaller tensors stay eager: a compiled call's fixed cost (guards, wrapper: 15-100 us on this
# project's CPU) is more than fusing saves there.
MIN_NUMEL = 2**14
_CACHE: dict[str, Callable] = {}
_FAILED: list[str] = []   # the reason, once compiling failed in this process


class CompileUnavailable(RuntimeError):
    """``torch.compile`` failed on this platform; the message is one line."""


class CompileWarning(RuntimeWarning):
    """``SAMT(compile=True)`` could not compile and runs eager (same numbers up to rounding)."""


def features(g: torch.Tensor, group_dim: int | None, idx: tuple[int, ...]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``gradient_features(g, group_dim)``, the squashed selected features ``phi`` and the
    gradient's norm (shape (1,); the last statistic of ``_apply``)."""
    if group_dim is None:
        flat = g.reshape(-1)
    else:
        flat = g.movedim(group_dim, 0).reshape(g.shape[group_dim], -1)
    total, sq = flat.sum(dim=-1), (flat * flat).sum(dim=-1)
    mn, mx = flat.amin(dim=-1), flat.amax(dim=-1)
    n = flat.shape[-1]
    mean = total / n
    var = (sq / n - mean * mean).clamp_min(0.0)
    raw = torch.stack([mean, var, mx, mn, sq.sqrt()], dim=-1)
    sel = raw[..., list(idx)]
    norm = raw[..., 4].square().sum().sqrt().reshape(1)
    return raw, torch.sign(sel) * torch.log1p(sel.abs()), norm


def step(theta: torch.Tensor, z_m: torch.Tensor, b0: torch.Tensor, c: torch.Tensor,
         beta: torch.Tensor, keep: bool
         ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The step ``raw = b0 + c * sigmoid(theta + z_m)`` (``b0 = beta*eta0``,
    ``c = (1-beta)*eta_max``), ``s = sigmoid(theta + z_m)`` when ``keep`` (else None), and the
    step's statistics for ``_apply``: sum, sum of squares, min, max, and the mean of ``beta``."""
    s = torch.sigmoid(theta + z_m)
    raw = b0 + c * s
    flat = raw.reshape(-1)
    row = torch.stack([flat.sum(), (flat * flat).sum(), flat.amin(), flat.amax(), beta.mean()])
    return raw, (s if keep else None), row


FUNCTIONS: dict[str, Callable] = {"features": features, "step": step,
                                  "meta": sigmoid_meta_grad}


def compiled(name: str) -> Callable:
    """``torch.compile`` of ``FUNCTIONS[name]``, made once per process (inductor compiles a
    graph at the first call with new shapes)."""
    if _FAILED:
        raise CompileUnavailable(_FAILED[0])
    fn = _CACHE.get(name)
    if fn is None:
        try:
            fn = torch.compile(FUNCTIONS[name], **COMPILE_OPTIONS)
        except RuntimeError as exc:  # e.g. a Python version dynamo does not support
            _fail(exc)
        _CACHE[name] = fn
    return fn


def call(name: str, *args):
    """``compiled(name)(*args)``; ``CompileUnavailable`` (one line) when compiling fails."""
    fn = compiled(name)
    try:
        return fn(*args)
    except torch._dynamo.exc.TorchDynamoException as exc:  # e.g. no C compiler for inductor
        _fail(exc)


def _fail(exc: Exception) -> None:
    """Record why compiling failed (later calls fail at once) and raise it, in one line."""
    cause = getattr(exc, "inner_exception", None) or exc  # what the backend (inductor) raised
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    detail = (lines[0] if lines else "")[:200]
    _FAILED.append(f"torch.compile failed: {type(cause).__name__}: {detail}")
    raise CompileUnavailable(_FAILED[0]) from exc
