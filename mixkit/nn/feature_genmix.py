"""GenMix in a hidden feature space (appendix F.4 of the GenLabel paper), as a module.

Appendix F.4 applies GenMix to the features ``z = f(x)`` of a network: for a class
pair it places ``z_mix`` on the segment between two samples' features where
``p_i(z) / (p_i(z) + p_j(z)) = lam`` under a class-conditional density of the
*features*, and labels it with that ratio (the same rule as :class:`mixkit.GenMix`
in input space). The paper then inverts a robust, invertible extractor to get an
input image back; without such an extractor the mixed features are used where they
are: they train the classifier head, as manifold mixup trains on mixed hidden
states. :class:`FeatureGenMix` does that, in the two settings of the paper's latent
GenLabel:

* **frozen** (``online=False``, Algorithm 2 style): ``features`` is a trained
  network's body, kept in eval mode and run without gradients; :meth:`FeatureGenMix.fit`
  fits the density (a :class:`mixkit.Gaussian` by default) on the training set's
  features once; only the head learns;
* **online** (``online=True``, Algorithm 3 style): the density (an
  :class:`mixkit.OnlineGaussian` by default) is updated from the clean batch's
  detached features at every training step, and the loss on the mixed features
  back-propagates into the extractor as well (the segment parameter ``t`` is a
  constant of the step, the features are not).

A training step is three lines::

    fgm = FeatureGenMix(head=model.fc, features=body, online=True, num_classes=10)
    out = fgm.mix(x, y)                   # clean + GenMix features through the head
    loss = out.loss()                     # soft-label cross-entropy, 0 on an empty batch
    opt.zero_grad(); loss.backward(); opt.step()

and ``fgm(x)`` is the classifier (``head(features(x))``) for evaluation. As in
Algorithm 4, the head trains on the clean features plus the mixed ones
(``include_clean=True``); pairs where a third class intrudes are discarded by default
(``intrusion="discard"``, so a batch may contribute no mixed row at all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkit._validation import as_class_ids, check_int, should_validate
from mixkit.batch import MixedBatch, to_soft_labels
from mixkit.data import iter_batches
from mixkit.densities.base import Density
from mixkit.mixers.base import MixParams
from mixkit.mixers.genmix import GenMix
from mixkit.registry import resolve

__all__ = ["FeatureGenMix", "FeatureMix"]


@dataclass
class FeatureMix:
    """What :meth:`FeatureGenMix.mix` returns for one batch.

    Attributes:
        logits: ``(n, K)`` head outputs: the ``B`` clean rows first (when
            ``include_clean``), then the ``M`` kept GenMix rows (``M <= B``).
        targets: ``(n, K)`` soft labels for ``logits`` (rows sum to 1).
        batch: the :class:`mixkit.MixedBatch` of the mixed *features* (``batch.x`` is
            ``(M, d)``; ``info["genmix"]`` holds the solver's counts).
        features: ``(B, d)`` clean features of the batch.
    """

    logits: Tensor
    targets: Tensor
    batch: MixedBatch
    features: Tensor

    def loss(self) -> Tensor:
        """Mean soft-label cross-entropy over the rows; ``0`` (with a graph) when there are none."""
        n = self.logits.shape[0]
        total = F.cross_entropy(self.logits, self.targets.to(self.logits.dtype), reduction="sum")
        return total / max(n, 1)


class FeatureGenMix(nn.Module):
    """GenMix in a feature space: mixed features placed by the likelihood ratio train the head.

    Args:
        head: the classifier on features ``(B, d) -> (B, K)`` (e.g. ``model.fc``).
        features: the extractor ``x -> (B, ...)`` (flattened to ``(B, d)``); ``None``:
            the inputs are features already (e.g. precomputed frozen features).
        density: a :class:`mixkit.Density` of the features or a registered name
            (``**density_kwargs`` build it; ``num_classes`` is passed on). ``None``:
            ``"online_gaussian"`` when ``online`` else ``"gaussian"``.
        online: update the density from every training batch and train the extractor
            through the mixed features (see the module docstring); ``False``: frozen.
        num_classes: number of classes (needed for an online density: a batch need
            not hold every class).
        alpha, lam, intrusion, same_class, method, tol, max_iter, seed: as
            :class:`mixkit.GenMix` (the mixer that places the features).
        include_clean: the head also trains on the clean features (Algorithm 4 trains
            on ``D`` plus the mixed points).
        batch_size: chunk size of the feature extraction in :meth:`fit`.

    The density is a submodule, so ``state_dict()`` carries it; :meth:`load_state_dict`
    restores a fitted density into a fresh instance (``torch.load(weights_only=True)``).
    """

    def __init__(
        self,
        head: nn.Module,
        features: nn.Module | None = None,
        density: str | Density | None = None,
        *,
        online: bool = False,
        num_classes: int | None = None,
        alpha: float = 1.0,
        lam: float | None = None,
        intrusion: str = "discard",
        same_class: str = "mixup",
        method: str = "auto",
        tol: float = 1e-4,
        max_iter: int | None = None,
        include_clean: bool = True,
        seed: int | None = None,
        batch_size: int = 512,
        **density_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(head, nn.Module):
            raise TypeError(f"head must be an nn.Module (the classifier on features), got {type(head).__name__}")
        if features is not None and not isinstance(features, nn.Module):
            raise TypeError(f"features must be an nn.Module or None, got {type(features).__name__}")
        num_classes = check_int("num_classes", num_classes, 1, allow_none=True)
        if density is None:
            density = "online_gaussian" if online else "gaussian"
        if isinstance(density, str) and num_classes is not None:
            density_kwargs.setdefault("num_classes", num_classes)
        density = resolve("density", density, Density, **density_kwargs)
        if online and type(density).update is Density.update:
            raise ValueError(
                f"online=True updates the density at every step, but {type(density).__name__} has "
                "no update(z, y); use density='online_gaussian' or online=False with fit()"
            )
        self.head = head
        self.features = features
        self.density = density
        self.online = bool(online)
        self.include_clean = bool(include_clean)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.mixer = GenMix(
            density, alpha, num_classes, lam=lam, intrusion=intrusion, same_class=same_class,
            method=method, tol=tol, max_iter=max_iter, seed=seed,
        )

    def extra_repr(self) -> str:
        return f"online={self.online}, include_clean={self.include_clean}, mixer={self.mixer!r}"

    # -- features --------------------------------------------------------------------------

    def train(self, mode: bool = True) -> FeatureGenMix:
        super().train(mode)
        if not self.online and self.features is not None:
            self.features.eval()  # a frozen extractor always scores in eval mode
        return self

    def extract(self, x: Tensor) -> Tensor:
        """Features ``(B, d)`` of ``x`` (no gradients and eval mode when frozen)."""
        if self.features is None:
            z = x
        elif self.online:
            z = self.features(x)
        else:
            if self.features.training:
                self.features.eval()
            with torch.no_grad():
                z = self.features(x)
        z = z.reshape(z.shape[0], math.prod(z.shape[1:]))  # not -1: a 0-row batch has no size to infer
        return z if z.is_floating_point() else z.float()

    def forward(self, x: Tensor) -> Tensor:
        """The classifier: ``head(features(x))``."""
        return self.head(self.extract(x))

    # -- the density -----------------------------------------------------------------------

    def fit(self, data: Any, y: Any = None) -> FeatureGenMix:
        """Fit the density on the features of a training set; returns ``self``.

        ``data``: inputs with labels ``y`` (tensors), or a ``Dataset`` / ``DataLoader`` /
        iterable of ``(x, y)`` batches (see :func:`mixkit.data.iter_batches`). Features
        are extracted in chunks of ``batch_size`` without gradients; an online density
        is reset and fitted on them the same way.
        """
        zs, ys = [], []
        with torch.no_grad():
            for xb, yb in iter_batches(data, y, batch_size=self.batch_size):
                xb = torch.as_tensor(xb)
                zs.append(self.extract(xb).detach())
                ys.append(self._class_ids(torch.as_tensor(yb, device=zs[-1].device)))
        if not zs:
            raise ValueError("fit got no batches: pass training inputs and labels")
        self.density.fit(torch.cat(zs), torch.cat(ys))
        if self.mixer.num_classes is None:
            self.mixer.num_classes = self.density.num_classes
        return self

    def _class_ids(self, y: Tensor) -> Tensor:
        if y.ndim == 2 and y.shape[1] > 1:
            return y.argmax(1)
        return as_class_ids(y, self.mixer.num_classes, check=should_validate(None, y))

    # -- a training step -------------------------------------------------------------------

    def mix(self, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None,
            lam: float | Tensor | None = None, params: MixParams | None = None) -> FeatureMix:
        """One training step's head inputs: clean features and their GenMix mixes.

        Online, the density is first updated with the batch's detached features (only
        in training mode). ``y``: class ids ``(B,)`` / ``(B, 1)`` or soft labels ``(B, K)``.
        ``generator``, ``lam`` and ``params`` go to the mixer (see :class:`mixkit.Mixer`).
        """
        z = self.extract(x)
        y = torch.as_tensor(y, device=z.device)
        if self.online and self.training:
            self.density.update(z.detach(), self._class_ids(y))
        batch = self.mixer(z, y, generator=generator, lam=lam, params=params)
        if self.include_clean:
            k = self.mixer.num_classes
            clean = to_soft_labels(y, k, batch.y.dtype, check=should_validate(None, y))
            rows = torch.cat([z, batch.x])
            targets = torch.cat([clean, batch.y])
        else:
            rows, targets = batch.x, batch.y
        return FeatureMix(self.head(rows), targets, batch, z)

    # -- state -----------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        # a fresh density has no fitted buffers yet: let it make room for them first
        prefix = "density."
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if own:
            self.density.load_state_dict(own, strict=strict)
            if self.mixer.num_classes is None:
                self.mixer.num_classes = self.density.num_classes
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
