"""Loss functions and evaluation for the two task kinds."""

from __future__ import annotations

import math

import torch
from torch import nn

from samt.data import DatasetSplits


def regression_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on standardized targets (model output (N, 1) or (N,))."""
    return nn.functional.mse_loss(output.reshape(target.shape), target)


def loss_function(task: str):
    """The training loss of ``task``: cross-entropy or MSE on standardized targets."""
    return nn.functional.cross_entropy if task == "classification" else regression_loss


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: DatasetSplits,
             batch_size: int) -> tuple[float, float]:
    """Mean loss and metric on ``(x, y)``: accuracy in percent, or RMSE in original units."""
    was_training = model.training
    model.eval()
    loss_fn = loss_function(data.task)
    total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
    total_hits = torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        total_loss += loss_fn(out, target).double() * target.shape[0]
        if data.task == "classification":
            total_hits += (out.argmax(dim=1) == target).sum()
    model.train(was_training)
    n = x.shape[0]
    loss = float(total_loss) / n
    if data.task == "classification":
        return loss, 100.0 * float(total_hits) / n
    return loss, math.sqrt(loss) * data.target_std
