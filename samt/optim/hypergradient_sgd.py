"""Hypergradient-descent SGD (Baydin et al. 2018, "Online Learning Rate Adaptation with
Hypergradient Descent"): SGD whose scalar learning rate is itself trained online.

SAMT's closest ancestor: the same first-order identity ``d l(W - lr*g) / d lr = -g' . g``
(``components.hypergradient_product``) drives one scalar step for the whole model, with plain
gradient descent on the learning rate and no eta model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from samt.optim.components import hypergradient_product


class HypergradientSGD(torch.optim.Optimizer):
    """SGD-HD: ``lr <- lr - hyper_lr * (-g_t . g_{t-1})``, then ``W <- W - lr * g_t``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.01,
                 hyper_lr: float = 1e-3):
        if lr <= 0 or hyper_lr < 0:
            raise ValueError(f"need lr > 0 and hyper_lr >= 0, got lr={lr}, hyper_lr={hyper_lr}")
        super().__init__(params, {"lr": lr, "hyper_lr": hyper_lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            previous = [self.state[p].get("previous_grad") for p in params]
            if params and all(g is not None for g in previous):
                # d l / d lr = -g_t . g_{t-1}: gradient descent on lr adds hyper_lr * g_t.g_{t-1}
                product = float(sum(hypergradient_product(p.grad, g, ()) for p, g in
                                    zip(params, previous, strict=True)))
                group["lr"] = group["lr"] + group["hyper_lr"] * product  # a Python float
            for p in params:
                p.add_(p.grad, alpha=-group["lr"])
                self.state[p]["previous_grad"] = p.grad.clone()
        return loss
