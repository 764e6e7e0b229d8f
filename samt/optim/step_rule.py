"""SAMT's step rule: the applied step of a unit from its eta model's outputs and the gate.

``eta = combine(beta, eta0, P(theta + z_m))`` with the gate ``beta = sigmoid(z_beta)``
(``combine=learned``: ``beta = 0``). With the sigmoid projection this is
``eta = b0 + c * sigmoid(theta + z_m)``, ``b0 = beta*eta0``, ``c = (1-beta)*eta_max``
(``sigmoid_step``), whose meta-gradient is analytic (``components.sigmoid_meta_grad``).

One rule, three callers: ``step_rule`` with autograd (the steps' graph for the meta-gradient of
any projection), ``unit_step`` eager without autograd (the analytic path; in-place to save a
weight-sized buffer), and ``unit_step`` compiled (``samt.optim.fused``, the same function
traced with ``inplace=False``) -- as torch.optim keeps one signature over its kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samt.optim.components import EtaModel, combine, project


@dataclass
class Analytic:
    """What the analytic meta-gradient of a sigmoid-projected step needs.

    ``eta = beta*eta0 + c*s`` with ``s = sigmoid(theta + z_m)`` and ``c = (1-beta)*eta_max``.
    Nothing holds an autograd graph: the eta model ran through ``EtaModel.forward_kept`` and
    ``kept`` holds its activations for ``EtaModel.backward_into``. ``s`` is None where the
    meta-update forms it (not kept from the visit).
    """

    s: torch.Tensor | None
    c: torch.Tensor
    beta: torch.Tensor | None  # None for combine=learned (beta = 0, no gradient)
    z_m: torch.Tensor
    model: EtaModel            # the eta model that gave z_m and beta, and its activations
    kept: tuple


@dataclass
class Step:
    """A unit's step before clamping (``raw``), the applied one (``eta``), the gate ``beta``,
    what the analytic meta-gradient needs (``analytic``, if kept) and the step's statistics
    (``row``: ``step_statistics``)."""

    raw: torch.Tensor
    eta: torch.Tensor
    beta: torch.Tensor
    row: torch.Tensor
    analytic: Analytic | None = None

    def clamp(self, low: float, high: float) -> None:
        """Clamp the applied step (kept in the autograd graph: clamped entries get no meta-grad)."""
        self.eta = self.raw.clamp(low, high)


def gate(z_beta: torch.Tensor, combine_kind: str) -> torch.Tensor:
    """The gate ``beta = sigmoid(z_beta)``; zero for ``combine=learned`` (the right term alone)."""
    beta = torch.sigmoid(z_beta)
    return torch.zeros_like(beta) if combine_kind == "learned" else beta


def sigmoid_step(theta: torch.Tensor, z_m: torch.Tensor, b0: torch.Tensor, c: torch.Tensor,
                 keep_s: bool = True, inplace: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``eta = b0 + c * s``, ``s = sigmoid(theta + z_m)``; returns ``(eta, s or None)``.

    ``inplace`` (no autograd): ``s`` formed in the sum's storage and, without ``keep_s``, the
    step in ``s``'s (one weight-sized buffer in all). Without it the function is pure (autograd,
    ``torch.compile``); the values are the same.
    """
    s = torch.add(theta, z_m).sigmoid_() if inplace else torch.sigmoid(theta + z_m)
    if inplace and not keep_s:
        return torch.addcmul(b0, c, s, out=s), None
    return torch.addcmul(b0, c, s), (s if keep_s else None)


def step_rule(theta: torch.Tensor, z_m: torch.Tensor, beta: torch.Tensor, eta0: float,
              eta_max: float, projection: str, combine_kind: str, tanh_c: float
              ) -> torch.Tensor:
    """The step before clamping, differentiable in ``theta``, ``z_m`` and ``beta``."""
    if projection == "sigmoid":  # beta*eta0 + (1-beta)*eta_max*sigmoid(.): one pass
        return sigmoid_step(theta, z_m, beta * eta0, (1.0 - beta) * eta_max)[0]
    return combine(combine_kind, beta, eta0, project(theta + z_m, projection, eta0, eta_max,
                                                     tanh_c))


def step_statistics(step: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Sum, sum of squares, min and max of ``step`` and the mean of ``beta`` (shape (5,))."""
    flat = step.reshape(-1)
    lo, hi = torch.aminmax(flat)
    return torch.stack([flat.sum(), torch.dot(flat, flat), lo, hi, beta.mean()])


def unit_step(theta: torch.Tensor, z_m: torch.Tensor, b0: torch.Tensor, c: torch.Tensor,
              beta: torch.Tensor, keep_s: bool, inplace: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The analytic path's step: ``sigmoid_step`` and its ``step_statistics``, as
    ``(eta, s or None, statistics)``; eager with ``inplace``, compiled without."""
    step, s = sigmoid_step(theta, z_m, b0, c, keep_s, inplace)
    return step, s, step_statistics(step, beta)
