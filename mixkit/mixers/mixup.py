"""Mixup (Zhang et al., 2018): convex combinations of pairs, labels mixed alike."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit.batch import MixedBatch
from mixkit.mixers.base import Mixer, lam_view, random_partners
from mixkit.random import sample_beta


class Mixup(Mixer):
    """Mixup: x = lam*x_i + (1-lam)*x_j, y = lam*y_i + (1-lam)*y_j, lam ~ Beta(alpha, alpha).

    Args:
        alpha: Beta parameter; 1.0 draws lam uniformly.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one lam per sample instead of one per batch.
        seed: seed of the mixer's generator (see :class:`Mixer`).

    Works on any input shape ``(B, ...)`` and any batch size, 1 included (a
    single sample is mixed with itself, which leaves it unchanged).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int | None = None,
        *,
        per_sample: bool = False,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype)
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = float(alpha)
        self.per_sample = bool(per_sample)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, per_sample={self.per_sample}"

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw ``lam`` ``(n,)`` (float64, CPU) and the partner permutation (CPU)."""
        m = n if self.per_sample else 1
        lam = sample_beta(self.alpha, self.alpha, m, generator).expand(n)
        return lam, torch.randperm(n, generator=generator)

    def mix(self, x: Tensor, y_soft: Tensor, labels: Tensor, generator: torch.Generator) -> MixedBatch:
        n = x.shape[0]
        lam64, perm = self.draw(n, generator)
        index = perm.to(x.device, non_blocking=True)
        partner = x.index_select(0, index)  # a fresh tensor: the in-place lerp never touches x
        if self.per_sample:
            weight = lam_view(lam64.to(x.device, x.dtype, non_blocking=True), x)
        else:
            weight = float(lam64[0])
        # x_j + lam * (x_i - x_j) = lam * x_i + (1 - lam) * x_j in one pass over the batch
        x_mix = partner.lerp_(x, weight)
        lam_y = lam64.to(x.device, y_soft.dtype, non_blocking=True)[:, None]
        y_mix = y_soft.index_select(0, index).lerp_(y_soft, lam_y)
        return MixedBatch(x_mix, y_mix, lam64.to(x.device, torch.float32), index, labels, y_mix)


__all__ = ["Mixup", "random_partners"]
