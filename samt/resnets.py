"""ResNets for CIFAR-sized images (He et al. 2016), built by ``samt.models.resnet`` and
``samt.models.resnet18``.

Not ``nn.Sequential``: the residual sums make SAMT split them through its graph engine
(``samt.optim.passes``), one block per conv (with its BatchNorm) and the head by default;
``optimizer.group_by=[[conv,stage1],stage2,stage3]`` makes each stage one block (the stem conv
with the first stage, whose maps it works on).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual sum; a 1x1 conv (+ norm) projects the shortcut where the
    shape changes (He et al.'s option B)."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=not batch_norm),
                nn.BatchNorm2d(c_out) if batch_norm else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A 3x3 conv stem, stages of ``BasicBlock``s (the first of each stage but the first
    halves the resolution), a global average pool and a Linear head."""

    def __init__(self, in_channels: int, num_outputs: int, widths: Sequence[int],
                 blocks_per_stage: Sequence[int], batch_norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(widths[0]) if batch_norm else nn.Identity()
        stages, c = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            layers = []
            for j in range(count):
                layers.append(BasicBlock(c, width, 2 if i and not j else 1, batch_norm))
                c = width
            stages.append(nn.Sequential(*layers))
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"stage{i}", stage)
        self.num_stages = len(stages)
        self.head = nn.Linear(c, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        for i in range(1, self.num_stages + 1):
            h = getattr(self, f"stage{i}")(h)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))
