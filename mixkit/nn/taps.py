"""Reading a model from outside: unwrap it, find its classifier, tap a layer's features.

These are the hooks every model-side component shares: :func:`unwrap` looks through
``DistributedDataParallel``/``DataParallel`` and ``torch.compile`` wrappers,
:func:`find_classifier` finds the layer whose input is the penultimate feature,
:func:`feature_module` says which module to hook for a ``layer=`` name, and
:class:`FeatureTap` records features during one forward pass with a hook that lives
only inside a ``with`` block. :func:`frozen_bn_stats` runs a measuring forward pass
that leaves batch-norm running statistics untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "FeatureTap",
    "feature_module",
    "find_classifier",
    "frozen_bn_stats",
    "model_device",
    "unwrap",
]

_CLASSIFIER_NAMES = ("fc", "classifier", "head", "last_linear")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel`` and ``torch.compile``
    wrappers (``OptimizedModule``, which keeps it as ``_orig_mod``), else ``model``."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def find_classifier(model: nn.Module) -> nn.Module:
    """The final classification layer of ``model``, whose input is the penultimate feature.

    timm models: ``model.get_classifier()`` (``fc`` for ResNets, ``head`` for ViTs...);
    otherwise the first of the attributes ``fc``, ``classifier``, ``head``,
    ``last_linear`` (torchvision ResNets use ``fc``, VGG/MobileNet/EfficientNet
    ``classifier``), else the last ``nn.Linear`` among the model's modules.
    """
    model = unwrap(model)
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, (tuple, list)) and head:
            head = head[0]
        if isinstance(head, nn.Module):
            return head
    for name in _CLASSIFIER_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    children = ", ".join(name for name, _ in model.named_children()) or "(none)"
    raise ValueError(
        f"cannot find the classifier of {type(model).__name__} (no get_classifier(), fc, "
        f"classifier, head or nn.Linear); pass the name of the module whose output is the "
        f"feature vector, e.g. layer='avgpool'. Top-level modules: {children}"
    )


def feature_module(model: nn.Module, layer: str = "auto") -> tuple[nn.Module, bool]:
    """The module to hook for features at ``layer``, and whether its *input* is read.

    ``"auto"``: the classifier found by :func:`find_classifier`, whose input is the
    penultimate feature (``True``); a dotted module name: that module, whose output is
    read (``False``).
    """
    model = unwrap(model)
    if layer == "auto":
        return find_classifier(model), True
    try:
        return model.get_submodule(layer), False
    except AttributeError as exc:
        raise ValueError(
            f"{type(model).__name__} has no submodule {layer!r} to take features from"
        ) from exc


def first_tensor(output: Any, layer: str) -> Tensor:
    """The tensor a hooked module produced (the first one of a tuple), or a clear TypeError."""
    out = output[0] if isinstance(output, (tuple, list)) and output else output
    if not torch.is_tensor(out):
        raise TypeError(
            f"module {layer!r} returned {type(output).__name__}, not a tensor; "
            "take features from another layer"
        )
    return out


class FeatureTap:
    """Capture penultimate features (or any submodule's output) during a forward pass.

    ``layer="auto"`` records the *input* of the classifier found by
    :func:`find_classifier` (timm's ``forward_head(pre_logits=True)``, torchvision's
    flattened ``avgpool`` output); a module name (``"global_pool"``, ``"layer4"``,
    ``"blocks.11"``) records that module's *output*. Features are flattened to
    ``(B, d)``. The first call of the module inside the ``with`` block is recorded;
    the hook is removed on exit, so the model is untouched outside it. (A timm model
    built with ``drop_rate > 0`` applies dropout before its classifier in train mode;
    pass ``layer="global_pool"`` to read the features before it.)::

        with FeatureTap(model) as tap:
            logits = model(x)
        z = tap.get()

    A hook that lives for one block is not seen by a model compiled before it
    (``torch.compile`` does not guard on hooks); :class:`mixkit.nn.ManifoldMixup`
    keeps persistent hooks instead and compiles.
    """

    def __init__(self, model: nn.Module, layer: str = "auto") -> None:
        self.model = unwrap(model)
        self.layer = layer
        self.features: Tensor | None = None
        self._handle = None

    def module(self) -> nn.Module:
        return feature_module(self.model, self.layer)[0]

    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        if self.features is None and args and torch.is_tensor(args[0]):
            self.features = args[0].flatten(1)

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.features is None:
            self.features = first_tensor(output, self.layer).flatten(1)

    def reset(self) -> None:
        self.features = None

    def __enter__(self) -> FeatureTap:
        self.features = None
        mod, reads_input = feature_module(self.model, self.layer)
        if reads_input:
            self._handle = mod.register_forward_pre_hook(self._pre_hook)
        else:
            self._handle = mod.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def get(self) -> Tensor:
        """The captured features; an error naming the layer if the forward never reached it."""
        if self.features is None:
            raise RuntimeError(
                f"the forward pass did not reach layer {self.layer!r} of "
                f"{type(self.model).__name__}; pass features_layer=/layer= naming a module it calls"
            )
        return self.features


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, batch-norm layers normalise with batch statistics as usual (train
    mode) but leave their running statistics unchanged (a forward pass that only measures)."""
    saved = []
    for m in unwrap(model).modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training:
            nbt = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, nbt))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, momentum, nbt in saved:
            m.momentum = momentum
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); ``None`` for a stateless model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None
