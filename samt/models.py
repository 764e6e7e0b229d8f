"""Models: ``nn.Sequential`` networks (MLP, CNN, VGG) and CIFAR ResNets (``samt.resnets``).

The ``nn.Sequential`` models (Linear/Conv2d layers followed by parameter-free modules and
optional normalization layers) take SAMT's sequential fast path (``samt.optim.blocks``); the
ResNets, whose residual sums are no chain, its graph engine (``samt.optim.passes``).

torch is imported when a model is built, not with this module: the CLI checks ``model.*`` keys
against their schema (``samt.schema.MODEL_SCHEMAS``, which also holds the builders' defaults and
choices) before any heavy import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from samt.schema import (
    ACTIVATIONS,
    NORMS,
    CnnModel,
    MlpModel,
    Resnet18Model,
    ResnetModel,
    VggModel,
)

if TYPE_CHECKING:
    from torch import nn


class ModelConfigError(ValueError):
    """A model was asked for with settings it cannot satisfy."""


_MLP, _CNN, _VGG = MlpModel(), CnnModel(), VggModel()  # the schema's defaults
_RESNET, _RESNET18 = ResnetModel(), Resnet18Model()


def mlp(input_shape: Sequence[int], num_outputs: int, hidden: Sequence[int],
        activation: str = _MLP.activation, dropout: float = _MLP.dropout,
        input_dropout: float = _MLP.input_dropout, norm: str = _MLP.norm) -> nn.Sequential:
    """Fully connected network: flatten, then ``hidden`` layers with ``activation``, then output.

    ``norm: batch`` puts a BatchNorm1d between each hidden Linear and its activation;
    ``dropout`` drops hidden activations, ``input_dropout`` the inputs (probabilities in [0, 1)).
    """
    from torch import nn

    if len(hidden) == 0:
        raise ModelConfigError("model.hidden must list at least one hidden width, e.g. [400]")
    act = _activation(activation)
    in_features = 1
    for size in input_shape:
        in_features *= int(size)
    layers: list[nn.Module] = [nn.Flatten(), *_dropout(input_dropout, "input_dropout")]
    for width in hidden:
        layers += [nn.Linear(in_features, int(width)), *_norm(norm, 1, int(width)), act(),
                   *_dropout(dropout, "dropout")]
        in_features = int(width)
    layers.append(nn.Linear(in_features, num_outputs))
    return nn.Sequential(*layers)


def cnn(input_shape: Sequence[int], num_outputs: int,
        channels: Sequence[int] = tuple(_CNN.channels), hidden: int = _CNN.hidden,
        activation: str = _CNN.activation, dropout: float = _CNN.dropout,
        norm: str = _CNN.norm) -> nn.Sequential:
    """Small CNN: per ``channels`` entry a 3x3 conv + activation + 2x2 max-pool, then an MLP head.

    Fits 28x28x1 (MNIST-like) and 32x32x3 (CIFAR) inputs; any image of at least 2**len(channels)
    pixels per side works. ``norm: batch`` adds BatchNorm after every conv and the hidden Linear
    (before the activation); ``dropout`` drops the hidden Linear's activations.
    """
    from torch import nn

    if len(input_shape) != 3:
        raise ModelConfigError(
            f"model=cnn needs image inputs (C, H, W); this dataset gives input shape "
            f"{tuple(input_shape)}. Use model=mlp or model=regression_mlp for tabular data.")
    c, h, w = (int(s) for s in input_shape)
    if min(h, w) < 2 ** len(channels):
        raise ModelConfigError(
            f"model=cnn with {len(channels)} pooling stages needs images of at least "
            f"{2 ** len(channels)} pixels per side; got {h}x{w}")
    act = _activation(activation)
    layers: list[nn.Module] = []
    for out_c in channels:
        layers += [nn.Conv2d(c, int(out_c), 3, padding=1), *_norm(norm, 2, int(out_c)), act(),
                   nn.MaxPool2d(2)]
        c, h, w = int(out_c), h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), *_norm(norm, 1, hidden), act(),
               *_dropout(dropout, "dropout"), nn.Linear(hidden, num_outputs)]
    return nn.Sequential(*layers)


def vgg(input_shape: Sequence[int], num_outputs: int,
        widths: Sequence[int] = tuple(_VGG.widths), activation: str = _VGG.activation,
        norm: str = _VGG.norm) -> nn.Sequential:
    """VGG-style CNN for CIFAR-sized images: per ``widths`` entry a stage of two 3x3 convs, each
    followed by BatchNorm (``norm: batch``) and ``activation``; a 2x2 max-pool between stages;
    then a global average pool and a Linear head. SAMT's blocks: one per conv (with its
    BatchNorm) and the head.
    """
    from torch import nn

    if len(input_shape) != 3:
        raise ModelConfigError(
            f"model=vgg needs image inputs (C, H, W); this dataset gives input shape "
            f"{tuple(input_shape)}. Use model=mlp or model=regression_mlp for tabular data.")
    c, h, w = (int(s) for s in input_shape)
    pools = len(widths) - 1
    if min(h, w) < 2 ** pools:
        raise ModelConfigError(
            f"model=vgg with {len(widths)} stages ({pools} max-pools) needs images of at least "
            f"{2 ** pools} pixels per side; got {h}x{w}")
    act = _activation(activation)
    layers: list[nn.Module] = []
    for stage, width in enumerate(int(v) for v in widths):
        if stage:
            layers.append(nn.MaxPool2d(2))
        for _ in range(2):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=norm == "none"),
                       *_norm(norm, 2, width), act()]
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_outputs)]
    return nn.Sequential(*layers)


def resnet(input_shape: Sequence[int], num_outputs: int, depth: int = _RESNET.depth,
           width: int = _RESNET.width, norm: str = _RESNET.norm) -> nn.Module:
    """The CIFAR ResNet of He et al. (2016): a 3x3 conv stem, three stages of ``(depth - 2) / 6``
    BasicBlocks with ``width``, ``2 width``, ``4 width`` channels (the last two start at
    stride 2), a global average pool and a Linear head. Not an ``nn.Sequential``: SAMT splits
    it through its graph engine (``samt.resnets``)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ModelConfigError(f"model.depth={depth!r} is invalid: a ResNet for CIFAR has "
                               "6n + 2 layers (20, 32, 44, 56, 110)")
    n = (depth - 2) // 6
    return _cifar_resnet("resnet", input_shape, num_outputs, [width, 2 * width, 4 * width],
                         [n, n, n], norm)


def resnet18(input_shape: Sequence[int], num_outputs: int, width: int = _RESNET18.width,
             norm: str = _RESNET18.norm) -> nn.Module:
    """ResNet-18 for CIFAR-sized images: a 3x3 stem without max-pool, four stages of two
    BasicBlocks (``width`` to ``8 width`` channels), a global average pool and a Linear head."""
    return _cifar_resnet("resnet18", input_shape, num_outputs,
                         [width, 2 * width, 4 * width, 8 * width], [2, 2, 2, 2], norm)


def _cifar_resnet(name: str, input_shape: Sequence[int], num_outputs: int,
                  widths: list[int], counts: list[int], norm: str) -> nn.Module:
    if len(input_shape) != 3:
        raise ModelConfigError(
            f"model={name} needs image inputs (C, H, W); this dataset gives input shape "
            f"{tuple(input_shape)}. Use model=mlp or model=regression_mlp for tabular data.")
    if norm not in NORMS:
        raise ModelConfigError(f"model.norm={norm!r} is invalid: allowed: {', '.join(NORMS)}")
    if widths[0] < 1:
        raise ModelConfigError(f"model.width={widths[0]!r} is invalid: at least 1 channel")
    from samt.resnets import CifarResNet

    return CifarResNet(int(input_shape[0]), num_outputs, widths, counts, norm == "batch")


def _norm(kind: str, dims: int, features: int) -> list[nn.Module]:
    """No layer (``none``) or a BatchNorm over ``features`` channels (``batch``)."""
    if kind not in NORMS:
        raise ModelConfigError(f"model.norm={kind!r} is invalid: allowed: {', '.join(NORMS)}")
    if kind == "none":
        return []
    from torch import nn

    return [nn.BatchNorm1d(features) if dims == 1 else nn.BatchNorm2d(features)]


def _dropout(p: float, key: str) -> list[nn.Module]:
    """No layer for ``p == 0``, else ``nn.Dropout(p)``; ``p`` must lie in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ModelConfigError(f"model.{key}={p!r} is invalid: a probability in [0, 1)")
    from torch import nn

    return [nn.Dropout(float(p))] if p > 0 else []


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ModelConfigError(
            f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}")
    from torch import nn

    return getattr(nn, ACTIVATIONS[name])


MODELS = {"mlp": mlp, "cnn": cnn, "regression_mlp": mlp, "vgg": vgg, "resnet": resnet,
          "resnet18": resnet18}


def build_model(name: str, input_shape: Sequence[int], num_outputs: int, **kwargs) -> nn.Module:
    """Build model ``name`` (a key of ``MODELS``) for the given input shape and output count."""
    if name not in MODELS:
        raise ModelConfigError(f"unknown model {name!r}; allowed: {sorted(MODELS)}")
    return MODELS[name](input_shape, num_outputs, **kwargs)
