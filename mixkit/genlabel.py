"""GenLabel: relabel mixed points with the posterior of class-conditional densities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mixkit.batch import MixedBatch
from mixkit.densities.base import Density
from mixkit.registry import create_density


class GenLabel:
    """Relabel a :class:`MixedBatch` with ``gamma * y_gen + (1 - gamma) * y_mix``.

    ``y_gen = softmax_c((log p_c(z) + log prior_c) / temperature)`` where
    ``z = feature_map(x_mix)`` (the input itself by default, flattened), as in
    Algorithms 1 and 2 of the GenLabel paper; with ``top_k=2`` only the two most
    probable classes keep mass, the rule of Algorithm 3.

    Args:
        density: a registered density name (``"gaussian"``, ``"kde"``, ...) or a
            :class:`mixkit.Density` instance (fitted or not).
        gamma: weight of the generative label; 0 gives back the mixing label.
        top_k: keep only the ``top_k`` most likely classes (``None``: all).
        prior: ``"uniform"`` (the paper), ``"empirical"`` (class shares seen by
            ``fit``, for imbalanced data) or a ``(K,)`` tensor of priors.
        temperature: divides the log-posterior; > 1 softens, < 1 sharpens.
        feature_map: optional callable applied to inputs before the density
            (e.g. a frozen feature extractor), under ``torch.no_grad``.
        **density_kwargs: passed to the density when it is given by name.

    A sample whose log-densities are all ``-inf`` (far outside every class for
    a density with bounded support) keeps its mixing label; such fallbacks,
    and labels whose top-1 class changed, are counted per call in
    ``batch.info["genlabel"]`` and in total in :meth:`stats`.
    """

    def __init__(
        self,
        density: str | Density = "gaussian",
        gamma: float = 1.0,
        *,
        top_k: int | None = None,
        prior: str | Tensor = "uniform",
        temperature: float = 1.0,
        feature_map: Callable[[Tensor], Tensor] | None = None,
        **density_kwargs: Any,
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive int or None, got {top_k}")
        if isinstance(prior, str) and prior not in ("uniform", "empirical"):
            raise ValueError(f"prior must be 'uniform', 'empirical' or a tensor, got {prior!r}")
        if isinstance(density, str):
            density = create_density(density, **density_kwargs)
        elif density_kwargs:
            raise TypeError("density keyword arguments are only accepted with a density name")
        self.density = density
        self.gamma = float(gamma)
        self.top_k = top_k
        self.prior = prior
        self.temperature = float(temperature)
        self.feature_map = feature_map
        self.reset_stats()

    def __repr__(self) -> str:
        return (
            f"GenLabel(density={self.density!r}, gamma={self.gamma}, top_k={self.top_k}, "
            f"prior={self.prior if isinstance(self.prior, str) else 'tensor'}, "
            f"temperature={self.temperature})"
        )

    def fit(self, x: Tensor, y: Tensor) -> GenLabel:
        """Fit the density on training inputs (mapped by ``feature_map``) and class ids."""
        if torch.is_tensor(y) and y.ndim == 2:
            y = y.argmax(1)
        self.density.fit(self.features(torch.as_tensor(x)), y)
        return self

    def features(self, x: Tensor) -> Tensor:
        """What the density sees: ``feature_map(x)``, flattened to ``(B, d)``."""
        if self.feature_map is not None:
            with torch.no_grad():
                x = self.feature_map(x)
        return x.reshape(x.shape[0], -1)

    def log_posterior(self, x: Tensor) -> Tensor:
        """``(log p_c(z) + log prior_c) / temperature`` for every class, ``(B, K)``."""
        self.density.follow_device(x.device, "GenLabel")
        logits = self.density.log_prob(self.features(x))
        log_prior = self._log_prior(logits)
        if log_prior is not None:
            logits = logits + log_prior
        if self.temperature != 1.0:
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[1]:
            kth = logits.topk(self.top_k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        return logits

    def posterior(self, x: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """The generative label ``y_gen`` ``(B, K)`` and a ``(B,)`` mask of rows with no finite
        log-density (their ``y_gen`` row is NaN: use a fallback label there)."""
        logits = self.log_posterior(x)
        # a row of -inf (or one poisoned by NaN) softmaxes to all-NaN: that marks the fallbacks
        y_gen = torch.softmax(logits, dim=1, dtype=torch.promote_types(dtype, logits.dtype)).to(dtype)
        return y_gen, y_gen[:, 0].isnan()

    def __call__(self, batch: MixedBatch) -> MixedBatch:
        y_mix = batch.y_mix
        if self.gamma == 0.0:
            return batch.replace(y=y_mix)
        y_gen, dead = self.posterior(batch.x, y_mix.dtype)
        if y_gen.shape[1] != y_mix.shape[1]:
            raise ValueError(
                f"the density knows {y_gen.shape[1]} classes but the batch has {y_mix.shape[1]}; "
                "fit it on data with all classes or set num_classes"
            )
        y = torch.where(dead[:, None], y_mix, y_gen)
        if self.gamma != 1.0:
            y = torch.lerp(y_mix, y, self.gamma)
        # counted on the device: reading them would force a sync on every batch
        changed = (y.argmax(1) != y_mix.argmax(1)).sum()
        fallback = dead.sum()
        self._changed = self._changed + changed
        self._fallback = self._fallback + fallback
        self._seen += y.shape[0]
        self._calls += 1
        info = {**batch.info, "genlabel": {"changed": changed, "fallback": fallback, "n": y.shape[0]}}
        return batch.replace(y=y, info=info)

    def stats(self) -> dict[str, int]:
        """Totals since construction or :meth:`reset_stats` (syncs with the device)."""
        return {
            "calls": self._calls,
            "samples": self._seen,
            "changed": int(self._changed),
            "fallback": int(self._fallback),
        }

    def reset_stats(self) -> None:
        self._calls = 0
        self._seen = 0
        self._changed: Tensor | int = 0
        self._fallback: Tensor | int = 0

    def _log_prior(self, like: Tensor) -> Tensor | None:
        if isinstance(self.prior, str):
            if self.prior == "uniform":
                return None
            return torch.log(self.density.class_prior()).to(like)
        prior = torch.as_tensor(self.prior, dtype=torch.float64)
        if prior.shape != (like.shape[1],) or bool((prior < 0).any()) or float(prior.sum()) <= 0:
            raise ValueError(f"prior must be a non-negative ({like.shape[1]},) tensor with positive sum")
        return torch.log(prior / prior.sum()).to(like)
