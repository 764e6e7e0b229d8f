"""Training-batch augmentation on tensors, drawn from the run's seeded generator.

``crop_flip``: the standard CIFAR recipe, done on the normalized batch: pad each image by
``PAD`` pixels with zeros (the training set's mean colour, after normalization), take a random
crop of the original size, and flip it horizontally with probability 1/2. Every draw comes from
the generator that shuffles the batches, so a resumed run (which restores that generator)
stays bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Randomly cropped (from ``x`` padded by ``pad``) and flipped copies of images ``x``
    (N, C, H, W); the offsets and flips are drawn on the CPU from ``generator``."""
    n, _, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = shifts[1, :, None] + torch.arange(w, device=x.device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def augmenter(kind: str, input_shape: tuple[int, ...]):
    """The augmentation ``data.augment=kind`` as ``f(x, generator) -> x``, or None for
    ``none``. ``crop_flip`` needs image inputs (C, H, W)."""
    if kind == "none":
        return None
    if kind == "crop_flip":
        if len(input_shape) != 3:
            raise ValueError(f"data.augment=crop_flip needs image inputs (C, H, W); this "
                             f"dataset gives input shape {tuple(input_shape)}; allowed: none")
        return crop_flip
    raise ValueError(f"data.augment={kind!r} is invalid; allowed: none, crop_flip")
