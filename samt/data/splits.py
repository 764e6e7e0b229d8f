"""The in-memory train/test tensors every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from samt.data.errors import InvalidSplitError


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Normalized train/test tensors of one dataset, ready to batch by index.

    Images are float32 (N, C, H, W), tabular inputs float32 (N, D). Labels are int64 (N,)
    for classification; regression targets are float32 (N,), standardized with the train
    split, and ``target_std`` converts a standardized RMSE back to original units.
    """

    name: str
    task: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    input_shape: tuple[int, ...]
    num_outputs: int
    target_std: float = 1.0

    def to(self, device: torch.device | str) -> DatasetSplits:
        """Return a copy with all four tensors on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )


def require_single_split(name: str, split: int) -> None:
    """Reject ``split != 0`` for datasets that ship one fixed train/test split."""
    if split != 0:
        raise InvalidSplitError(
            f"dataset '{name}' has one fixed train/test split: split must be 0 "
            f"(allowed range 0..0), got {split}"
        )
