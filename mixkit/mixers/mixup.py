"""Mixup (Zhang et al., 2018): convex combinations of pairs, labels mixed alike."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit._validation import check_positive
from mixkit.mixers.base import Mixer, MixParams, fixed_lam, lam_view, random_partners
from mixkit.random import sample_beta


class Mixup(Mixer):
    """Mixup: x = lam*x_i + (1-lam)*x_j, y = lam*y_i + (1-lam)*y_j, lam ~ Beta(alpha, alpha).

    Args:
        alpha: Beta parameter; 1.0 draws lam uniformly.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one lam per sample instead of one per batch.
        seed, label_dtype, validate: see :class:`Mixer`.

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
        validate: bool | None = None,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype, validate=validate)
        self.alpha = check_positive("alpha", alpha)
        self.per_sample = bool(per_sample)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, per_sample={self.per_sample}"

    def draw_lam(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n,)`` float64 draws of lam: one per sample, or one expanded over the batch."""
        m = n if self.per_sample else 1
        return sample_beta(self.alpha, self.alpha, m, generator).expand(n)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        lam_t = self.draw_lam(n, generator) if lam is None else fixed_lam(lam, n)
        return MixParams(lam_t, torch.randperm(n, generator=generator))

    def mix_inputs(self, x: Tensor, params: MixParams) -> Tensor:
        index = params.index.to(x.device, non_blocking=True)
        partner = x.index_select(0, index)  # a fresh tensor: the in-place lerp never touches x
        lam = params.lam
        if lam.stride(0) == 0 or lam.numel() == 1:  # one lam for the batch: a Python scalar
            weight: Tensor | float = float(lam[0])
        else:
            weight = lam_view(lam.to(x.device, x.dtype, non_blocking=True), x)
        # x_j + lam * (x_i - x_j) = lam * x_i + (1 - lam) * x_j in one pass over the batch
        return partner.lerp_(x, weight)


__all__ = ["Mixup", "random_partners"]
