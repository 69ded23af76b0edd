"""CutMix (Yun et al., 2019): paste a random box from the partner image."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit.batch import MixedBatch
from mixkit.mixers.mixup import Mixup
from mixkit.random import sample_beta


class CutMix(Mixup):
    """CutMix: paste a random box of the partner; lam is corrected to the pasted area.

    Args:
        alpha: Beta parameter of the target box area ``1 - lam``.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one box per sample (vectorised masks) instead of one per batch.
        seed: seed of the mixer's generator.

    Same arguments as :class:`Mixup`, whose Beta draw and pairing it shares.
    Inputs are ``(B, ..., H, W)`` (images ``(B, C, H, W)``); the box covers the
    last two dimensions. The returned ``lam`` is the share of each image that
    kept its own pixels, and the labels use that corrected value.
    """

    def draw_boxes(self, n: int, h: int, w: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        """Boxes ``(top, bottom, left, right)`` (CPU long, each ``(m,)``) with m = n or 1."""
        m = n if self.per_sample else 1
        lam = sample_beta(self.alpha, self.alpha, m, generator)
        cut = torch.sqrt(1.0 - lam)
        ch, cw = (cut * h).long(), (cut * w).long()
        cy = (torch.rand(m, dtype=torch.float64, generator=generator) * h).long()
        cx = (torch.rand(m, dtype=torch.float64, generator=generator) * w).long()
        top, bottom = (cy - ch // 2).clamp(0, h), (cy + ch // 2).clamp(0, h)
        left, right = (cx - cw // 2).clamp(0, w), (cx + cw // 2).clamp(0, w)
        return top, bottom, left, right

    def mix(self, x: Tensor, y_soft: Tensor, labels: Tensor, generator: torch.Generator) -> MixedBatch:
        if x.ndim < 3:
            raise ValueError(
                f"cutmix needs spatial inputs (B, ..., H, W), got shape {tuple(x.shape)}; "
                "use mixup for tabular data"
            )
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        top, bottom, left, right = self.draw_boxes(n, h, w, generator)
        index = torch.randperm(n, generator=generator).to(x.device, non_blocking=True)
        area = ((bottom - top) * (right - left)).double() / (h * w)
        lam64 = (1.0 - area).expand(n)
        x_mix = x.clone()
        if self.per_sample:
            dev = x.device
            rows = torch.arange(h, device=dev)[None, :, None]
            cols = torch.arange(w, device=dev)[None, None, :]
            t, b, l, r = (v.to(dev)[:, None, None] for v in (top, bottom, left, right))
            box = (rows >= t) & (rows < b) & (cols >= l) & (cols < r)  # (B, H, W)
            box = box.reshape((n,) + (1,) * (x.ndim - 3) + (h, w))
            x_mix = torch.where(box, x[index], x_mix)
        else:
            t, b, l, r = int(top[0]), int(bottom[0]), int(left[0]), int(right[0])
            x_mix[..., t:b, l:r] = x[..., t:b, l:r][index]
        lam_y = lam64.to(x.device, y_soft.dtype)[:, None]
        y_mix = y_soft.index_select(0, index).lerp_(y_soft, lam_y)
        return MixedBatch(x_mix, y_mix, lam64.to(x.device, torch.float32), index, labels, y_mix)
