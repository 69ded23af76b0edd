"""Manifold mixup (Verma et al., 2019): a model wrapper that mixes hidden states with a mixer.

:class:`ManifoldMixup` wraps any ``nn.Module`` without touching its code. At each
training forward pass it draws one layer from a list of eligible layers (``"input"``,
the model's input, included; see :func:`mixkit.nn.layers.default_layers`) and mixes
that layer's output across the batch with a :class:`mixkit.Mixer`, through the mixer
contract: ``params = mixer.draw(n, h.shape, generator)``, ``h <- mixer.mix_inputs(h,
params)``, and the labels with ``mixer.mix_labels(y_soft, params)``, so hidden state
and labels are mixed by the same draw. In eval mode it is the bare model.

It is not a mixer itself (it must run the model): it is called in the training loop
as ``logits, y_soft = wrapper(x, y)``; ``wrapper(x, y, return_batch=True)`` returns
``(logits, MixedBatch)`` with the draw (``lam``, ``index``, the layer in ``info``) and
the detached penultimate features of the mixed batch in ``batch.x``, for a relabeler.

Why it compiles. The hooks are registered once, when the wrapper is built, on every
eligible layer (and on the feature layer), and stay: each forward pass arms the one
drawn layer. The decisions (which layer, the draw, whether the layer fired) run
outside the graph (``torch.compiler.disable``: each hook is a graph break at its
layer and a few microseconds of Python), so ``torch.compile`` on the wrapper, on the
inner model (``model.compile()`` or ``torch.compile(model)`` before wrapping) or on
both traces every layer the same way whatever the first draw was, and a new draw
never causes a recompile. (A hook registered per call, as before, is not seen by a
graph compiled without it: ``torch.compile`` does not guard on hooks.)
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import Tensor, nn

from mixkit._validation import check_seed
from mixkit.batch import MixedBatch
from mixkit.mixers.base import Mixer, MixParams
from mixkit.nn._generator import GeneratorOwner
from mixkit.nn.layers import INPUT, default_layers
from mixkit.nn.taps import feature_module, first_tensor, unwrap
from mixkit.random import make_generator
from mixkit.registry import resolve

__all__ = ["ManifoldMixup"]


class _Pass:
    """What the hooks of one forward pass share: armed by ``_begin``, read by ``_finish``."""

    __slots__ = ("features", "generator", "layer", "n", "params", "record", "target")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.target: str | None = None  # the hidden layer to mix at (armed)
        self.layer: str | None = None  # the layer that was mixed
        self.params: MixParams | None = None
        self.generator: torch.Generator | None = None
        self.n = 0
        self.record = False  # whether the feature hook records
        self.features: Tensor | None = None


class ManifoldMixup(GeneratorOwner):
    """Manifold mixup: mixes hidden states at a layer drawn per forward pass, with a mixer.

    Args:
        model: the classifier to wrap (any ``nn.Module``, possibly compiled; it is not
            modified apart from the persistent hooks, see :meth:`remove_hooks`).
        mixer: a registered mixer name (``"mixup"``, the default) or a
            :class:`mixkit.Mixer` instance that mixes any ``(B, ...)`` tensor
            (``mix_inputs``); the instance is not modified.
        alpha: Beta parameter given to a mixer built by name; ``None``: 2.0, the value
            of the official manifold mixup code for CIFAR. Refused with an instance.
        num_classes: number of classes (needed for class-id labels).
        layers: eligible layers, as dotted submodule names plus ``"input"`` for the
            input itself; ``None`` uses :func:`~mixkit.nn.layers.default_layers`. The
            output of the named module is mixed, so ``"layer1"`` means "after the first
            stage". Each forward pass draws one uniformly.
        features_layer: where the penultimate features of the mixed batch are read for
            a relabeler: ``"auto"`` (the input of the classifier), a module name (its
            output, flattened), or ``None`` to skip it.
        relabel: optional relabeler (``MixedBatch -> MixedBatch``, e.g. a
            :class:`mixkit.GenLabel` over features) applied to the batch whose ``x``
            holds the (detached) features; its labels are what ``forward`` returns.
        seed: seed of the wrapper's generator (:func:`mixkit.random.make_generator`).
        label_dtype, validate: given to a mixer built by name (see :class:`mixkit.Mixer`).
        **mixer_kwargs: more arguments for a mixer built by name (``per_sample=True``).

    Calls:
        ``wrapper(x, y)`` in train mode -> ``(logits, y_soft)``, mixed at a random
        eligible layer; ``wrapper(x, y, layer="layer1")`` forces the layer;
        ``wrapper(x, y, return_batch=True)`` -> ``(logits, MixedBatch)``.
        ``wrapper(x, y)`` in eval mode -> ``(model(x), y_soft)``, nothing mixed.
        ``wrapper(x)`` -> ``model(x)`` in either mode, nothing mixed.
        ``wrapper(x, features=True)`` -> ``(model(x), features)``, nothing mixed (the
        clean pass of :class:`mixkit.nn.OnlineGenLabel`).

    Randomness: the layer (``randint``, unless forced) and then the mixer's draw come
    from one CPU generator: ``generator=`` if given, else the wrapper's own (from
    ``seed``; the mixer's own generator is not used). Its state is saved in
    ``state_dict()`` (as extra state), so a resumed run repeats its draws. The wrapped
    model's weights are under the ``model.`` prefix.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mixer: str | Mixer = "mixup",
        alpha: float | None = None,
        num_classes: int | None = None,
        layers: list[str] | tuple[str, ...] | None = None,
        features_layer: str | None = "auto",
        relabel: Any = None,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
        validate: bool | None = None,
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"ManifoldMixup wraps an nn.Module, got {type(model).__name__}")
        self.model = model
        self.mixer = _resolve_mixer(mixer, alpha, num_classes, label_dtype, validate, mixer_kwargs)
        self.seed = check_seed(seed)
        self._generator: torch.Generator | None = None
        base = unwrap(model)
        self.layers = list(default_layers(base) if layers is None else layers)
        if not self.layers:
            raise ValueError("layers must name at least one eligible layer")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers lists a layer twice: {self.layers}")
        modules = {name: self._layer_module(name) for name in self.layers}  # fail now
        self.features_layer = features_layer
        self.relabel = relabel
        self._pass = _Pass()
        self._handles = []
        for name, module in modules.items():
            if module is not None:
                hook = functools.partial(self._mix_hook, name)
                self._handles.append(module.register_forward_hook(hook))
        if features_layer is not None:
            module, reads_input = feature_module(base, features_layer)
            self._handles.append(module.register_forward_pre_hook(self._feature_pre_hook)
                                 if reads_input else module.register_forward_hook(self._feature_hook))

    def extra_repr(self) -> str:
        return (f"mixer={self.mixer!r}, layers={self.layers}, "
                f"features_layer={self.features_layer!r}")

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(self.seed)
        return self._generator

    @generator.setter
    def generator(self, g: torch.Generator) -> None:
        self._generator = g

    def remove_hooks(self) -> None:
        """Remove the wrapper's hooks from the model (the wrapper cannot mix afterwards)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -- state: the generator's, so a resumed run repeats its draws --------------------------

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_pass"] = _Pass()  # a copy starts with no pass in flight
        return state

    def get_extra_state(self) -> dict[str, Any]:
        gen = self._generator
        return {"generator": None if gen is None else gen.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        gen_state = (state or {}).get("generator")
        if gen_state is not None:
            g = torch.Generator()
            g.set_state(gen_state)
            self._generator = g

    # -- layers -----------------------------------------------------------------------------

    def _layer_module(self, name: str) -> nn.Module | None:
        if name == INPUT:
            return None
        base = unwrap(self.model)
        try:
            return base.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(
                f"{type(base).__name__} has no submodule {name!r}; eligible layers are "
                f"'input' and dotted submodule names such as 'layer1' or 'blocks.3'"
            ) from exc

    # -- the pass, outside the graph -----------------------------------------------------------

    @torch.compiler.disable
    def _begin(self, x: Tensor, layer: str | None, generator: torch.Generator | None,
               mix: bool) -> Tensor:
        """Arm one pass: draw the layer (and mix the input there); returns the model input."""
        if not self._handles and (self.features_layer is not None or self.layers != [INPUT]):
            raise RuntimeError("the hooks of this ManifoldMixup were removed (remove_hooks)")
        p = self._pass
        p.clear()
        p.record = self.features_layer is not None
        p.n = x.shape[0]
        if not mix:
            return x
        g = generator if generator is not None else self.generator
        if layer is None:
            layer = self.layers[int(torch.randint(len(self.layers), (), generator=g))]
        elif layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not one of the eligible layers {self.layers}")
        p.generator = g
        if layer == INPUT:
            p.layer = INPUT
            p.params = self.mixer.draw(p.n, x.shape, g)
            return self.mixer.mix_inputs(x, p.params)
        p.target = layer
        return x

    @torch.compiler.disable
    def _mix_hook(self, name: str, module: nn.Module, args: tuple, output: Any) -> Any:
        p = self._pass
        if p.target != name or p.params is not None:  # not armed here, or mixed already
            return None
        if not torch.is_tensor(output):
            raise TypeError(
                f"layer {name!r} returned {type(output).__name__}; manifold mixup mixes "
                "modules that return one tensor: choose another layer"
            )
        if output.ndim < 1 or output.shape[0] != p.n:
            raise ValueError(
                f"layer {name!r} returned shape {tuple(output.shape)} but the batch has {p.n} "
                "samples; choose a layer whose output keeps the batch dimension first"
            )
        p.params = self.mixer.draw(p.n, output.shape, p.generator)
        p.layer = name
        return self.mixer.mix_inputs(output, p.params)

    @torch.compiler.disable
    def _feature_pre_hook(self, module: nn.Module, args: tuple) -> None:
        p = self._pass
        if p.record and p.features is None and args and torch.is_tensor(args[0]):
            p.features = args[0].flatten(1).detach()

    @torch.compiler.disable
    def _feature_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        p = self._pass
        if p.record and p.features is None:
            p.features = first_tensor(output, str(self.features_layer)).flatten(1).detach()

    @torch.compiler.disable
    def _abort(self) -> None:
        self._pass.clear()

    @torch.compiler.disable
    def _finish(self, y_soft: Tensor | None, labels: Tensor | None, mix: bool) -> Any:
        """Disarm the pass; the MixedBatch of a mixed pass, the features of a clean one."""
        p = self._pass
        target, layer, params, feats = p.target, p.layer, p.params, p.features
        p.clear()
        if mix and params is None:
            raise RuntimeError(
                f"layer {target!r} was not called during the forward pass of "
                f"{type(unwrap(self.model)).__name__}, so nothing was mixed; list only layers "
                f"the model runs (layers={self.layers})" + self._compiled_hint())
        if self.features_layer is not None and feats is None:
            raise RuntimeError(
                f"the forward pass did not reach the feature layer {self.features_layer!r} of "
                f"{type(unwrap(self.model)).__name__}; pass features_layer= naming a module it "
                "calls, or None" + self._compiled_hint())
        if y_soft is None:
            return feats
        dev = y_soft.device
        n = y_soft.shape[0]
        if not mix:  # eval mode: the batch as it is
            lam, index, y_mix, info = (torch.ones(n, device=dev), torch.arange(n, device=dev),
                                       y_soft, {"layer": None, "layer_index": -1})
        else:
            lam = params.lam.to(dev, torch.float32, non_blocking=True)
            index = params.index.to(dev, non_blocking=True)
            y_mix = self.mixer.mix_labels(y_soft, params)
            info = {"layer": layer, "layer_index": self.layers.index(layer)}
        batch = MixedBatch(feats, y_mix, lam, index, labels, y_mix.clone(), info=info)
        if mix and self.relabel is not None:
            if feats is None:
                raise RuntimeError("a relabeler needs features: set features_layer")
            batch = self.relabel(batch)
        return batch

    def _compiled_hint(self) -> str:
        base = unwrap(self.model)
        if self.model is base and getattr(base, "_compiled_call_impl", None) is None:
            return ""
        return (". The model is compiled: if it was called before it was wrapped, its compiled "
                "graph predates the wrapper's hooks (torch.compile does not guard on hooks); "
                "wrap it before its first call, or call torch.compiler.reset()")

    # -- forward ------------------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        layer: str | None = None,
        generator: torch.Generator | None = None,
        return_batch: bool = False,
        features: bool = False,
    ) -> Any:
        if features:
            if self.features_layer is None:
                raise RuntimeError("features=True needs a features_layer (it is None)")
            x_in = self._begin(x, None, None, False)
            try:
                logits = self.model(x_in)
            except BaseException:
                self._abort()
                raise
            return logits, self._finish(None, None, False)
        if y is None:
            return self.model(x)
        x_in, y_soft, labels = self.mixer.prepare(x, y)
        mix = self.training
        model_input = self._begin(x_in, layer, generator, mix)
        try:
            logits = self.model(model_input)
        except BaseException:
            self._abort()  # a failed pass leaves no layer armed for later calls of the model
            raise
        batch = self._finish(y_soft, labels, mix)
        return logits, (batch if return_batch else batch.y)


def _resolve_mixer(mixer: str | Mixer, alpha: float | None, num_classes: int | None,
                   label_dtype: torch.dtype, validate: bool | None,
                   mixer_kwargs: dict[str, Any]) -> Mixer:
    """The mixer of a ManifoldMixup: built from a name, or a checked instance (never changed)."""
    kwargs = dict(mixer_kwargs)
    if alpha is not None:
        kwargs["alpha"] = alpha
    if isinstance(mixer, str):
        kwargs.setdefault("alpha", 2.0)  # the official manifold mixup code's value
        kwargs.update(num_classes=num_classes, label_dtype=label_dtype, validate=validate)
        return resolve("mixer", mixer, Mixer, **kwargs)
    mixer = resolve("mixer", mixer, Mixer, **kwargs)
    if num_classes is not None and mixer.num_classes != num_classes:
        if mixer.num_classes is not None:
            raise ValueError(f"num_classes={num_classes} but the mixer has "
                             f"num_classes={mixer.num_classes}")
        mixer = copy.copy(mixer)  # the caller's mixer keeps its own setting
        mixer.num_classes = num_classes
    return mixer
