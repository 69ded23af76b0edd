"""GenLabel in a model's latent space: frozen features (Algorithm 2) and online (Algorithm 3).

* :func:`frozen_features` turns a trained network into a feature map for
  :class:`mixkit.GenLabel` (Algorithm 2): ``GenLabel("gaussian", feature_map=
  frozen_features(phi)).fit(X_train, y_train)`` relabels mixed inputs by the density
  of their penultimate features under the frozen network ``phi``.
* :class:`OnlineGenLabel` is Algorithm 3 (the variant the paper uses on images): the
  density of the *training* model's penultimate features is re-estimated at every
  step from the clean batch (:class:`mixkit.densities.online.OnlineGaussian`) and the
  mixed batch is relabeled with it, top-2 classes by default. With a timm or
  torchvision model the training loop stays three lines::

      online = OnlineGenLabel(num_classes=10, memory=0.95, gamma=0.1)
      for x, y in loader:
          logits, y_soft = online.step(model, x, y)      # model: any nn.Module,
          loss = F.cross_entropy(logits, y_soft)         # or ManifoldMixup(model)
          opt.zero_grad(); loss.backward(); opt.step()

* :class:`FeatureTap` captures the input of a model's classifier (its penultimate
  features) or the output of any named submodule, with a forward hook that lives
  only inside a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from mixkit.batch import MixedBatch
from mixkit.densities.online import OnlineGaussian
from mixkit.genlabel import GenLabel
from mixkit.registry import create_mixer

if TYPE_CHECKING:  # mixkit.mixers imports this module (manifold mixup): no import cycle
    from mixkit.mixers.base import Mixer

__all__ = [
    "FeatureTap",
    "FrozenFeatures",
    "OnlineGenLabel",
    "find_classifier",
    "frozen_bn_stats",
    "frozen_features",
    "unwrap",
]

_CLASSIFIER_NAMES = ("fc", "classifier", "head", "last_linear")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel`` wrappers, else ``model``."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
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
        z = tap.features
    """

    def __init__(self, model: nn.Module, layer: str = "auto") -> None:
        self.model = unwrap(model)
        self.layer = layer
        self.features: Tensor | None = None
        self._handle = None

    def module(self) -> nn.Module:
        if self.layer == "auto":
            return find_classifier(self.model)
        try:
            return self.model.get_submodule(self.layer)
        except AttributeError as exc:
            raise ValueError(
                f"{type(self.model).__name__} has no submodule {self.layer!r} to take features from"
            ) from exc

    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        if self.features is None and args and torch.is_tensor(args[0]):
            self.features = args[0].flatten(1)

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.features is None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not torch.is_tensor(out):
                raise TypeError(
                    f"module {self.layer!r} returned {type(output).__name__}, not a tensor; "
                    "take features from another layer"
                )
            self.features = out.flatten(1)

    def reset(self) -> None:
        self.features = None

    def __enter__(self) -> FeatureTap:
        self.features = None
        mod = self.module()
        if self.layer == "auto":
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


def _model_device(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


class FrozenFeatures:
    """A frozen network as a feature map ``x -> (B, d)`` (see :func:`frozen_features`)."""

    def __init__(self, model: nn.Module, layer: str = "auto", batch_size: int = 512) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model.eval()
        self.layer = layer
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        return f"FrozenFeatures({type(unwrap(self.model)).__name__}, layer={self.layer!r})"

    def __call__(self, x: Tensor) -> Tensor:
        model = self.model
        if model.training:
            model.eval()  # somebody switched it back: a frozen extractor scores in eval mode
        device = _model_device(model) or x.device
        outs = []
        with torch.no_grad(), FeatureTap(model, self.layer) as tap:
            for chunk in x.split(self.batch_size):
                tap.reset()
                model(chunk.to(device))
                outs.append(tap.get())
        return torch.cat(outs).to(x.device)


def frozen_features(model: nn.Module, layer: str | None = None, *, batch_size: int = 512
                    ) -> FrozenFeatures:
    """A feature map for ``GenLabel(feature_map=...)`` from a trained network (Algorithm 2).

    The model is put in eval mode and called under ``torch.no_grad`` in chunks of
    ``batch_size`` (so ``GenLabel.fit`` on a whole training set fits in memory), on
    the model's device; the features come back flattened ``(B, d)`` on the input's
    device. ``layer=None`` takes the penultimate features (the classifier's input);
    a module name takes that module's output.

    Example::

        phi = train_vanilla(timm.create_model("resnet18", num_classes=10))
        gl = mixkit.GenLabel("gaussian", covariance="diag", gamma=1.0,
                             feature_map=frozen_features(phi)).fit(x_train, y_train)
        collate = mixkit.MixCollate("mixup", num_classes=10, relabel=gl)

    In DataLoader workers keep ``phi`` on the CPU; with a GPU extractor relabel in the
    loop instead (``mixkit.on_device``).
    """
    return FrozenFeatures(model, "auto" if layer is None else layer, batch_size=batch_size)


class OnlineGenLabel:
    """Algorithm 3 of the GenLabel paper: relabel with a density of the model's own features.

    Each :meth:`step` (1) runs the clean batch through the model without gradients and
    folds its penultimate features into an :class:`OnlineGaussian` (EMA with memory
    ratio ``memory``, or exact running sums with ``memory=None``); (2) mixes the batch
    (input mixup by default, or the hidden-state mixing of a
    :class:`mixkit.mixers.manifold.ManifoldMixup` passed as the model) and runs it
    through the model, capturing its penultimate features; (3) relabels: ``y =
    gamma * y_gen + (1 - gamma) * y_mix`` with ``y_gen`` the posterior restricted to
    the ``top_k`` most likely classes (2, as in Algorithm 3). The cross-entropy of
    Algorithm 3, ``gamma * CE(y_gen) + (1 - gamma) * CE(y_mix)``, equals the
    cross-entropy with this blended target.

    Args:
        num_classes: number of classes.
        feature_dim: penultimate feature size (inferred on the first step when ``None``).
        memory: weight of the past in the EMA (the paper's memory ratio: 0.95 for
            mixup, 0.95-0.99 for manifold mixup); ``None`` for exact running sums.
        gamma: weight of the generative label (the paper's loss ratio, 0.1-0.15).
        top_k: classes that keep mass in ``y_gen`` (``None``: all).
        covariance: ``"spherical"`` (Algorithm 3) or ``"diag"``.
        reg_covar, prior, temperature: see :class:`OnlineGaussian` / :class:`mixkit.GenLabel`.
        mixer: for plain models, a registered mixer name (``"mixup"``, ``"cutmix"``) or
            a :class:`mixkit.Mixer`; ``**mixer_kwargs`` (e.g. ``alpha=1.0``) go to it.
        seed: seed of the mixer's generator (use a per-rank seed under DDP).
        features: where the penultimate features are read (``"auto"``: the classifier's
            input, see :class:`FeatureTap`); ignored for a ManifoldMixup model, which
            has its own ``features_layer``.
        clean_pass: ``"train"`` (default): the clean forward runs in the model's current
            mode, but batch-norm running statistics are left untouched by it (see
            :func:`frozen_bn_stats`), so the features match those of the mixed
            forward and the model's state is as if only the mixed batch had been seen;
            ``"eval"``: the clean forward runs in eval mode.
        sync: all-reduce the statistics across ranks under ``torch.distributed``.

    Cost: one extra forward pass without gradients per step (the clean batch), about
    a third of the compute of a forward-backward step; the density update and the
    relabel are ``O(B K d)`` and negligible next to it. If features of the clean batch
    are at hand already, skip :meth:`step` and call :meth:`update` and :meth:`relabel`.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int | None = None,
        *,
        memory: float | None = 0.95,
        gamma: float = 1.0,
        top_k: int | None = 2,
        covariance: str = "spherical",
        reg_covar: float = 1e-6,
        prior: str | Tensor = "uniform",
        temperature: float = 1.0,
        mixer: str | Mixer = "mixup",
        seed: int | None = None,
        features: str = "auto",
        clean_pass: str = "train",
        sync: bool = True,
        **mixer_kwargs: Any,
    ) -> None:
        if clean_pass not in ("train", "eval"):
            raise ValueError(f"clean_pass must be 'train' or 'eval', got {clean_pass!r}")
        self.num_classes = int(num_classes)
        self.density = OnlineGaussian(
            self.num_classes, feature_dim, memory=memory, covariance=covariance,
            reg_covar=reg_covar, sync=sync,
        )
        self.genlabel = GenLabel(self.density, gamma=gamma, top_k=top_k, prior=prior,
                                 temperature=temperature)
        if isinstance(mixer, str):
            mixer = create_mixer(mixer, num_classes=self.num_classes, seed=seed, **mixer_kwargs)
        elif mixer_kwargs:
            raise TypeError("mixer keyword arguments are only accepted with a mixer name")
        elif seed is not None:
            mixer.seed = seed
        self.mixer = mixer
        self.features = features
        self.clean_pass = clean_pass
        self.last_batch: MixedBatch | None = None

    def __repr__(self) -> str:
        return (f"OnlineGenLabel(density={self.density!r}, gamma={self.genlabel.gamma}, "
                f"top_k={self.genlabel.top_k}, mixer={self.mixer!r})")

    # -- the three building blocks ----------------------------------------------------------

    def update(self, z: Tensor, y: Tensor) -> OnlineGenLabel:
        """Fold clean features ``z`` ``(B, d)`` (detached) with labels ``y`` into the density."""
        self.density.update(z.detach(), y)
        return self

    def relabel(self, batch: MixedBatch) -> MixedBatch:
        """Relabel a mixed batch whose ``x`` holds the *features* of the mixed points."""
        return self.genlabel(batch.replace(x=batch.x.detach()))

    def posterior(self, z: Tensor) -> Tensor:
        """The generative label ``y_gen`` ``(B, K)`` of features ``z`` under the current density."""
        return self.genlabel.posterior(z.detach())[0]

    # -- the whole step ---------------------------------------------------------------------

    def clean_features(self, model: nn.Module, x: Tensor) -> Tensor:
        """Penultimate features of the clean batch: no gradients, BN running stats untouched."""
        from mixkit.mixers.manifold import ManifoldMixup

        inner = unwrap(model)
        target, layer = inner, self.features
        if isinstance(inner, ManifoldMixup):
            target, layer = inner.model, inner.features_layer or "auto"
        was_training = target.training
        with torch.no_grad(), FeatureTap(target, layer) as tap:
            if self.clean_pass == "eval" and was_training:
                target.eval()
                try:
                    model(x)
                finally:
                    target.train(was_training)
            else:
                with frozen_bn_stats(target):
                    model(x)  # through the wrapper(s): DDP keeps its buffers in step
            return tap.get()

    def step(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Algorithm 3 for one batch: returns ``(logits, y_soft)`` for the loss.

        ``model`` is any classifier (the batch is mixed at the input by ``mixer``), a
        :class:`~mixkit.mixers.manifold.ManifoldMixup` (it mixes hidden states itself),
        or either one inside ``DistributedDataParallel``. In eval mode nothing is mixed,
        the density is not updated and ``y_soft`` is the one-hot label.
        """
        from mixkit.mixers.manifold import ManifoldMixup

        inner = unwrap(model)
        manifold = isinstance(inner, ManifoldMixup)
        if not inner.training:
            logits = model(x)
            return logits, self.mixer.prepare(x, y)[1]
        labels = y.argmax(1) if y.ndim == 2 else y
        self.update(self.clean_features(model, x), labels)
        if manifold:
            logits, _ = model(x, y)
            batch = inner.last_mix
            if batch is None or batch.x is None:
                raise RuntimeError("ManifoldMixup did not capture features: set features_layer")
        else:
            mixed = self.mixer(x, y)
            with FeatureTap(inner, self.features) as tap:
                logits = model(mixed.x)
            batch = mixed.replace(x=tap.get())
        batch = self.relabel(batch)
        self.last_batch = batch
        if manifold:
            inner.last_mix = batch
        return logits, batch.y

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Density state and the mixer's generator state (loads with ``weights_only=True``)."""
        gen = getattr(self.mixer, "_generator", None)
        return {
            "density": self.density.state_dict(),
            "mixer_generator": None if gen is None else gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> OnlineGenLabel:
        self.density.load_state_dict(state["density"])
        gen_state = state.get("mixer_generator")
        if gen_state is not None:
            g = torch.Generator()
            g.set_state(gen_state)
            self.mixer.generator = g
        return self

    def to(self, device: torch.device | str) -> OnlineGenLabel:
        self.density.to(device)
        return self

    def stats(self) -> dict[str, int]:
        """Relabeling counts (see :meth:`mixkit.GenLabel.stats`)."""
        return self.genlabel.stats()
