"""Mixup (Zhang et al., 2018): convex combinations of pairs, labels mixed alike."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit._validation import check_choice, check_positive
from mixkit.mixers.base import Mixer, MixParams, fixed_lam, lam_view
from mixkit.random import sample_beta

PAIRINGS = ("random", "flip")


def partners(n: int, pairing: str, generator: torch.Generator) -> Tensor:
    """``(n,)`` partner of each row: a random permutation, or timm's flipped batch (``i <-> n-1-i``)."""
    if pairing == "flip":
        return torch.arange(n - 1, -1, -1)
    return torch.randperm(n, generator=generator)


class Mixup(Mixer):
    """Mixup: x = lam*x_i + (1-lam)*x_j, y = lam*y_i + (1-lam)*y_j, lam ~ Beta(alpha, alpha).

    Args:
        alpha: Beta parameter; 1.0 draws lam uniformly.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one lam per sample instead of one per batch.
        pairing: each row's partner ``j``: ``"random"`` (a random permutation of the
            batch, the default) or ``"flip"`` (row ``B-1-i``, as timm pairs them).
        seed, label_dtype, validate, multi_label: see :class:`Mixer`.

    Works on any input shape ``(B, ...)`` and any batch size, 1 included (a
    single sample is mixed with itself, which leaves it unchanged). The output
    has the input's memory format (``channels_last`` included).
    """

    supports_inplace = True

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int | None = None,
        *,
        per_sample: bool = False,
        pairing: str = "random",
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
        validate: bool | None = None,
        multi_label: bool = False,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype, validate=validate,
                         multi_label=multi_label)
        self.alpha = check_positive("alpha", alpha)
        self.per_sample = bool(per_sample)
        self.pairing = check_choice("pairing", pairing, PAIRINGS)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}, per_sample={self.per_sample}"

    def draw_lam(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n,)`` float64 draws of lam: one per sample, or one expanded over the batch."""
        m = n if self.per_sample else 1
        return sample_beta(self.alpha, self.alpha, m, generator).expand(n)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        lam_t = self.draw_lam(n, generator) if lam is None else fixed_lam(lam, n)
        return MixParams(lam_t, partners(n, self.pairing, generator))

    def mix_inputs(self, x: Tensor, params: MixParams, *, inplace: bool = False) -> Tensor:
        index = params.index.to(x.device, non_blocking=True)
        partner = x.index_select(0, index)  # a fresh tensor: x is read, never written, unless inplace
        lam = params.lam
        if lam.stride(0) == 0 or lam.numel() == 1:  # one lam for the batch: a Python scalar (CPU, no sync)
            weight: Tensor | float = float(lam[0])
        else:
            weight = lam_view(lam.to(x.device, x.dtype, non_blocking=True), x)
        if inplace:  # x + (1 - lam) * (x_j - x): the caller's batch is the output, in its own layout
            return x.lerp_(partner, 1 - weight)
        if x.is_contiguous():  # x_j + lam * (x - x_j) into the fresh partner: one pass, no other buffer
            return partner.lerp_(x, weight)
        return torch.lerp(x, partner, 1 - weight)  # an output laid out like x (channels_last, strided)


__all__ = ["PAIRINGS", "Mixup", "partners"]
