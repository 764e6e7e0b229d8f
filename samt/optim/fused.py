"""The full-size element-wise chains of SAMT's analytic path, compiled by ``torch.compile``
(``SAMT(..., compile=True)``) or run eager: ``Chains``.

Each chain is one pure function, the same for both: the gradient's features
(``components.features``), the step and its statistics (``step_rule.unit_step``) and the
meta-gradient (``components.sigmoid_meta_grad``). Eager calls pass ``inplace=True`` where the
function has it (no weight-sized temporaries); compiled ones trace it pure, and inductor fuses
each into one or two loops over the weight. The results equal eager up to float rounding
(inductor orders the reductions its own way). ``compiled(name)`` compiles one lazily, once per
process; ``CompileUnavailable`` is raised when the platform cannot compile (no C compiler,
unsupported Python), and ``Chains`` then falls back to eager with one ``CompileWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from samt.optim.components import features, sigmoid_meta_grad
from samt.optim.step_rule import unit_step

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


FUNCTIONS: dict[str, Callable] = {"features": features, "step": unit_step,
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


class Chains:
    """Runs each chain compiled (with ``enabled``, on tensors of at least ``MIN_NUMEL``
    entries: on smaller ones a compiled call costs more than it saves) or eager, without
    autograd. Where compiling fails: one ``CompileWarning``, ``error`` says why, and every
    later call runs eager."""

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self.error: str | None = None

    def compiles(self, tensor: torch.Tensor | None) -> bool:
        """Whether a chain over ``tensor`` runs compiled (None: eager)."""
        return self.enabled and tensor is not None and tensor.numel() >= MIN_NUMEL

    def run(self, name: str, size: torch.Tensor | None, *args: Any, **eager: Any) -> Any:
        """``FUNCTIONS[name](*args)``: compiled where ``compiles(size)``, else eager with the
        keywords ``eager`` (``inplace=True``)."""
        with torch.no_grad():
            if self.compiles(size):
                try:
                    return call(name, *args)
                except CompileUnavailable as exc:
                    self.enabled, self.error = False, str(exc)
                    warnings.warn(f"SAMT(compile=True): {exc}; running eager instead",
                                  CompileWarning, stacklevel=3)
            return FUNCTIONS[name](*args, **eager)
