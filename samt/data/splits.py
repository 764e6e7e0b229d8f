"""The in-memory train/test tensors every loader returns, and the validation hold-out."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from samt.data.errors import InvalidSplitError
from samt.holdout import validation_size


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Normalized train/test tensors of one dataset, ready to batch by index.

    Images are float32 (N, C, H, W), tabular inputs float32 (N, D). Labels are int64 (N,)
    for classification; regression targets are float32 (N,), standardized with the train
    split, and ``target_std`` converts a standardized RMSE back to original units.

    Loaders return train/test only (``x_val``/``y_val`` are None); ``hold_out`` moves a fixed
    random part of the training set into the validation split.
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
    x_val: torch.Tensor | None = field(default=None, repr=False)
    y_val: torch.Tensor | None = field(default=None, repr=False)

    @property
    def has_val(self) -> bool:
        """Whether a validation split was held out (``hold_out`` with a fraction > 0)."""
        return self.x_val is not None

    def to(self, device: torch.device | str) -> DatasetSplits:
        """Return a copy with all tensors (validation included) on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=None if self.x_val is None else self.x_val.to(device),
            y_val=None if self.y_val is None else self.y_val.to(device),
        )

    def hold_out(self, fraction: float, seed: int) -> DatasetSplits:
        """Split ``fraction`` of the training set off as the validation set (``seed`` fixes
        which examples, independently of the training seed); ``fraction`` 0 returns ``self``.

        Regression sets are standardized again with the remaining training part only (inputs
        per column and the target; ``target_std`` follows), which equals standardizing the raw
        values with that part's mean and std. Image sets keep their fixed normalization.
        """
        if fraction <= 0:
            return self
        train, val = validation_indices(int(self.x_train.shape[0]), fraction, seed)
        train_t = torch.from_numpy(train).to(self.x_train.device)
        val_t = torch.from_numpy(val).to(self.x_train.device)
        x_train, y_train = self.x_train[train_t], self.y_train[train_t]
        x_val, y_val = self.x_train[val_t], self.y_train[val_t]
        x_test, y_test, target_std = self.x_test, self.y_test, self.target_std
        if self.task == "regression":
            x_train, x_val, x_test, _ = restandardize(x_train, x_val, x_test)
            y_train, y_val, y_test, y_std = restandardize(y_train, y_val, y_test)
            target_std = self.target_std * float(y_std)
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                       x_val=x_val, y_val=y_val, target_std=target_std)


def validation_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (remaining train, validation) indices of a training set of ``n`` examples: a
    random permutation drawn by a torch generator seeded with ``seed``; its first
    ``validation_size(n, fraction)`` entries are the validation set."""
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=generator).numpy()
    k = validation_size(n, fraction)
    return np.sort(perm[k:]), np.sort(perm[:k])


def restandardize(
    train: torch.Tensor, *others: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Standardize ``train`` and ``others`` per column with ``train``'s mean and std (a
    column constant on ``train`` gets std 1); returns the tensors, then the std used."""
    t = train.double()
    mean = t.mean(dim=0)
    std = t.std(dim=0, unbiased=False)
    constant = (t.amax(dim=0) - t.amin(dim=0)) == 0
    std = torch.where(constant, torch.ones_like(std), std)
    scaled = [((x.double() - mean) / std).to(train.dtype) for x in (train, *others)]
    return (*scaled, std)


def require_single_split(name: str, split: int) -> None:
    """Reject ``split != 0`` for datasets that ship one fixed train/test split."""
    if split != 0:
        raise InvalidSplitError(
            f"dataset '{name}' has one fixed train/test split: split must be 0 "
            f"(allowed range 0..0), got {split}"
        )
