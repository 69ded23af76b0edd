"""Which layers manifold mixup may mix at, per architecture.

Manifold mixup (Verma et al., 2019) mixes the hidden state after a layer drawn per
forward pass. The official code draws among the input and the outputs of the first
two of a ResNet's four stages: the first half of the network. :func:`default_layers`
keeps that rule and carries it to other families, proportionally to depth:

* ResNets (timm, torchvision; recognised by ``layer1``/``layer2``): ``input``,
  ``layer1``, ``layer2``;
* a stack of blocks (timm ViT/DeiT/EfficientNet ``blocks.N``, timm Swin ``layers.N``,
  timm ConvNeXt ``stages.N``, torchvision ViT ``encoder.layers.N``, torchvision
  MobileNet/EfficientNet/Swin/VGG ``features.N``): ``input`` and the outputs of the
  blocks of the first half of the stack. A stack whose first half has more than
  :data:`MAX_BLOCK_POINTS` blocks gets that many evenly spaced points, the last at
  the end of the first half (a 12-block ViT: ``blocks.0`` ... ``blocks.5``; a
  24-block one: ``blocks.1, 3, ..., 11``), so the span still covers the first half;
* other timm models: the input and the first two entries of ``feature_info``.
"""

from __future__ import annotations

import math

from torch import nn

from mixkit.nn.taps import unwrap

__all__ = ["INPUT", "MAX_BLOCK_POINTS", "block_stack", "default_layers", "resnet_layers"]

INPUT = "input"
#: at most this many block outputs in a default layer list (plus the input)
MAX_BLOCK_POINTS = 6
#: containers of blocks, in the order they are looked for
_STACKS = ("blocks", "layers", "stages", "encoder.layers", "features")


def resnet_layers(model: nn.Module, stem: bool = True) -> list[str]:
    """Every eligible layer of a timm or torchvision ResNet: the input, the stem output
    (``maxpool``) and the four stages ``layer1..layer4``."""
    model = unwrap(model)
    names = [INPUT]
    if stem and isinstance(getattr(model, "maxpool", None), nn.Module):
        names.append("maxpool")
    names += [f"layer{i}" for i in range(1, 5)
              if isinstance(getattr(model, f"layer{i}", None), nn.Module)]
    return names


def block_stack(model: nn.Module) -> tuple[str, int] | None:
    """``(name, number of blocks)`` of the model's stack of blocks, or ``None``."""
    model = unwrap(model)
    for name in _STACKS:
        try:
            stack = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(stack, (nn.Sequential, nn.ModuleList)) and len(stack) > 0:
            return name, len(stack)
    return None


def _first_half(n: int, points: int = MAX_BLOCK_POINTS) -> list[int]:
    """Indices of at most ``points`` evenly spaced blocks ending the first half of ``n``."""
    half = math.ceil(n / 2)
    m = min(half, points)
    return sorted({math.ceil((i + 1) * half / m) - 1 for i in range(m)})


def default_layers(model: nn.Module) -> list[str]:
    """The layers manifold mixup draws from by default (see the module docstring)."""
    model = unwrap(model)
    if all(isinstance(getattr(model, f"layer{i}", None), nn.Module) for i in (1, 2)):
        return [INPUT, "layer1", "layer2"]
    stack = block_stack(model)
    if stack is not None:
        name, n = stack
        return [INPUT, *(f"{name}.{i}" for i in _first_half(n))]
    info = getattr(model, "feature_info", None)
    modules = []
    if info is not None:
        try:
            modules = [entry["module"] for entry in info]
        except (TypeError, KeyError):
            modules = []
    if len(modules) >= 2:
        return [INPUT, *modules[:2]]
    children = ", ".join(name for name, _ in model.named_children()) or "(none)"
    raise ValueError(
        f"no default manifold mixup layers for {type(model).__name__}; pass layers=[\"input\", "
        f"<module names>] (dotted names of submodules whose outputs are mixed). Top-level "
        f"modules: {children}"
    )
