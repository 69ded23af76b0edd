"""Manifold mixup (Verma et al., 2019): mix hidden states inside a model, with hooks.

:class:`ManifoldMixup` wraps any ``nn.Module`` without touching its code. At each
training forward pass it draws one layer from a list of eligible layers ("input",
the model's input, included), mixes that layer's output across the batch with a
forward hook, ``h <- lam * h + (1 - lam) * h[index]``, and mixes the labels with
the same ``lam`` and ``index``. In eval mode it is the bare model.

It is a :class:`mixkit.Mixer` (``num_classes``, ``seed``/``generator``, label
validation, registered as ``"manifold_mixup"``) but, because it must run the model,
its call signature differs: it is an ``nn.Module`` called as ``wrapper(x, y) ->
(logits, soft_targets)`` inside the training loop, not ``mixer(x, y) -> MixedBatch``
in a ``collate_fn``. The record of the last mix (``lam``, ``index``, the layer, and
the penultimate features of the mixed batch for a relabeler) is ``wrapper.last_mix``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixkit.batch import MixedBatch
from mixkit.latent import FeatureTap, unwrap
from mixkit.mixers.base import Mixer, lam_view
from mixkit.random import sample_beta

__all__ = ["ManifoldMixup", "default_layers", "resnet_layers"]

INPUT = "input"


def resnet_layers(model: nn.Module, stem: bool = True) -> list[str]:
    """Every eligible layer of a timm or torchvision ResNet: the input, the stem output
    (``maxpool``) and the four stages ``layer1..layer4``."""
    model = unwrap(model)
    names = [INPUT]
    if stem and isinstance(getattr(model, "maxpool", None), nn.Module):
        names.append("maxpool")
    names += [f"layer{i}" for i in range(1, 5) if isinstance(getattr(model, f"layer{i}", None),
                                                             nn.Module)]
    return names


def default_layers(model: nn.Module) -> list[str]:
    """The layers manifold mixup draws from by default.

    ResNets (timm and torchvision, recognised by ``layer1``/``layer2``):
    ``["input", "layer1", "layer2"]``, as the official implementation, which mixes
    at the input or after the first or second residual stage. Other timm models: the
    input and the first two entries of ``model.feature_info``. Anything else must
    pass ``layers=``.
    """
    model = unwrap(model)
    if all(isinstance(getattr(model, f"layer{i}", None), nn.Module) for i in (1, 2)):
        return [INPUT, "layer1", "layer2"]
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


class _MixState:
    """What the hidden-state hook needs; lives for one forward pass."""

    def __init__(self, lam: Tensor | float, index: Tensor, n: int, layer: str) -> None:
        self.lam = lam
        self.index = index
        self.n = n
        self.layer = layer
        self.done = False
        self.mixed: Tensor | None = None


class ManifoldMixup(nn.Module, Mixer):
    """Manifold mixup: mixes hidden states at a layer drawn per forward pass, via hooks.

    Args:
        model: the classifier to wrap (any ``nn.Module``; it is not modified).
        alpha: Beta parameter of ``lam ~ Beta(alpha, alpha)``; 2.0 is the value of the
            official manifold mixup code for CIFAR.
        num_classes: number of classes (needed for class-id labels).
        layers: eligible layers, as dotted submodule names plus ``"input"`` for the
            input itself (index 0 when first); ``None`` uses :func:`default_layers`
            (``["input", "layer1", "layer2"]`` for ResNets; :func:`resnet_layers` lists
            all of them). The output of the named module is mixed, so ``"layer1"``
            means "after the first stage". Each forward pass draws one uniformly.
        features_layer: where the penultimate features of the mixed batch are read for
            a relabeler: ``"auto"`` (the input of the classifier: timm's
            ``forward_head(pre_logits=True)``, torchvision's flattened ``avgpool``), a
            module name (its output, flattened), or ``None`` to skip it.
        relabel: optional relabeler (``MixedBatch -> MixedBatch``, e.g. a
            :class:`mixkit.GenLabel` over features) applied to :attr:`last_mix`, whose
            ``x`` holds those (detached) features; its labels are what ``forward``
            returns.
        per_sample: one ``lam`` per sample instead of one per batch.
        seed: seed of the generator (see :class:`mixkit.Mixer`).
        label_dtype: dtype of the soft labels.

    Calls:
        ``wrapper(x, y)`` in train mode -> ``(logits, y_soft)``, mixed at a random
        eligible layer; ``wrapper(x, y, layer="layer1")`` forces the layer.
        ``wrapper(x, y)`` in eval mode -> ``(model(x), one_hot(y))``, nothing mixed.
        ``wrapper(x)`` -> ``model(x)`` in either mode, nothing mixed, no hook fires.

    Randomness: the layer (``randint``), ``lam`` (:func:`mixkit.random.sample_beta`)
    and the permutation (``randperm``) are drawn, in that order, from the CPU
    generator; the same permutation mixes the hidden state and the labels. The
    generator state is saved in ``state_dict()`` (as extra state) so a resumed run
    repeats its draws. The wrapped model's own weights are under the ``model.``
    prefix; save ``wrapper.model.state_dict()`` for the bare model.
    """

    def __init__(
        self,
        model: nn.Module,
        alpha: float = 2.0,
        num_classes: int | None = None,
        *,
        layers: list[str] | tuple[str, ...] | None = None,
        features_layer: str | None = "auto",
        relabel: Any = None,
        per_sample: bool = False,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
    ) -> None:
        nn.Module.__init__(self)
        Mixer.__init__(self, num_classes, seed=seed, label_dtype=label_dtype)
        if not isinstance(model, nn.Module):
            raise TypeError(f"ManifoldMixup wraps an nn.Module, got {type(model).__name__}")
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.model = model
        self.alpha = float(alpha)
        self.per_sample = bool(per_sample)
        self.layers = list(default_layers(model) if layers is None else layers)
        if not self.layers:
            raise ValueError("layers must name at least one eligible layer")
        for name in self.layers:
            self._layer_module(name)  # fail now, not in the middle of training
        self.features_layer = features_layer
        self.relabel = relabel
        self.last_mix: MixedBatch | None = None

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, num_classes={self.num_classes}, layers={self.layers}, "
                f"features_layer={self.features_layer!r}, per_sample={self.per_sample}")

    # -- pickling / state (nn.Module and Mixer both have opinions) ---------------------------

    def __getstate__(self) -> dict:
        return Mixer.__getstate__(self)

    def __setstate__(self, state: dict) -> None:
        gen_state = state.pop("_generator_state", None)
        nn.Module.__setstate__(self, state)
        self._generator = None
        if gen_state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(gen_state)

    def get_extra_state(self) -> dict[str, Any]:
        gen = self._generator
        return {"generator": None if gen is None else gen.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        gen_state = (state or {}).get("generator")
        if gen_state is not None:
            g = torch.Generator()
            g.set_state(gen_state)
            self._generator = g

    # -- mixing -----------------------------------------------------------------------------

    def mix(self, x: Tensor, y_soft: Tensor, labels: Tensor, generator: torch.Generator):
        raise TypeError(
            "ManifoldMixup mixes hidden states inside the model, so it cannot mix a batch on its "
            "own (e.g. in a collate_fn); call the wrapper in the training loop: "
            "`logits, y_soft = wrapper(x, y)`"
        )

    def _layer_module(self, name: str) -> nn.Module | None:
        if name == INPUT:
            return None
        try:
            return self.model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(
                f"{type(self.model).__name__} has no submodule {name!r}; eligible layers are "
                f"'input' and dotted submodule names such as 'layer1' or 'blocks.3'"
            ) from exc

    def draw(self, n: int, generator: torch.Generator) -> tuple[int, Tensor, Tensor]:
        """Draw the position in :attr:`layers`, ``lam`` (float64, CPU) and the permutation."""
        k = int(torch.randint(len(self.layers), (), generator=generator))
        m = n if self.per_sample else 1
        lam = sample_beta(self.alpha, self.alpha, m, generator).expand(n)
        return k, lam, torch.randperm(n, generator=generator)

    @staticmethod
    def _mix_tensor(h: Tensor, state: _MixState) -> Tensor:
        lam, index = state.lam, state.index.to(h.device, non_blocking=True)
        if torch.is_tensor(lam):
            lh = lam_view(lam.to(h.device, h.dtype, non_blocking=True), h)
            return lh * h + (1 - lh) * h[index]
        return lam * h + (1.0 - lam) * h[index]

    def _hook(self, state: _MixState):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if state.done:  # a module called twice in one pass is mixed once
                return None
            if not torch.is_tensor(output):
                raise TypeError(
                    f"layer {state.layer!r} returned {type(output).__name__}; manifold mixup mixes "
                    "modules that return one tensor: choose another layer"
                )
            if output.shape[0] != state.n:
                raise ValueError(
                    f"layer {state.layer!r} returned a batch of {output.shape[0]} but the input "
                    f"has {state.n}; choose a layer whose output keeps the batch dimension first"
                )
            state.done = True
            state.mixed = self._mix_tensor(output, state)
            return state.mixed

        return hook

    def forward(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        layer: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Any:
        if y is None:
            return self.model(x)
        x_in, y_soft, labels = self.prepare(x, y)
        if not self.training:
            self.last_mix = None
            return self.model(x), y_soft
        n = x_in.shape[0]
        k, lam64, perm = self.draw(n, generator if generator is not None else self.generator)
        if layer is not None:
            if layer not in self.layers and layer != INPUT:
                self._layer_module(layer)  # an error for names the model lacks
            k = self.layers.index(layer) if layer in self.layers else -1
        name = layer if layer is not None else self.layers[k]
        index = perm.to(x_in.device, non_blocking=True)
        lam: Tensor | float = lam64 if self.per_sample else float(lam64[0])
        state = _MixState(lam, index, n, name)
        handle = None
        if name == INPUT:
            state.mixed = self._mix_tensor(x_in, state)
            model_input = state.mixed
        else:
            handle = self._layer_module(name).register_forward_hook(self._hook(state))
            model_input = x_in
        tap = FeatureTap(self.model, self.features_layer) if self.features_layer else None
        try:
            if tap is not None:
                with tap:
                    logits = self.model(model_input)
            else:
                logits = self.model(model_input)
        finally:
            if handle is not None:
                handle.remove()
        if name != INPUT and not state.done:
            raise RuntimeError(
                f"layer {name!r} was not called during the forward pass of "
                f"{type(self.model).__name__}; list only layers the model runs"
            )
        lam_y = lam64.to(y_soft.device, y_soft.dtype, non_blocking=True)[:, None]
        y_mix = y_soft[index].mul_(1 - lam_y).add_(lam_y * y_soft)
        feats = tap.get().detach() if tap is not None else None
        batch = MixedBatch(
            feats, y_mix, lam64.to(y_soft.device, torch.float32), index, labels, y_mix,
            info={"layer": name, "layer_index": k},
        )
        if self.relabel is not None:
            if feats is None:
                raise RuntimeError("a relabeler needs features: set features_layer")
            batch = self.relabel(batch)
        self.last_mix = batch
        return logits, batch.y
