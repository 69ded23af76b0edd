"""CutMix (Yun et al., 2019): paste a random box from the partner image."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit.mixers.base import MixParams, fixed_lam
from mixkit.mixers.mixup import Mixup


class CutMix(Mixup):
    """CutMix: paste a random box of the partner; lam is corrected to the pasted area.

    Args:
        alpha: Beta parameter of the target box area ``1 - lam``.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one box per sample (vectorised masks) instead of one per batch.
        seed, label_dtype, validate: see :class:`mixkit.Mixer`.

    Same arguments as :class:`Mixup`, whose Beta draw and pairing it shares.
    Inputs are ``(B, ..., H, W)`` (images ``(B, C, H, W)``); the box covers the
    last two dimensions. The returned ``lam`` is the share of each image that
    kept its own pixels, and the labels use that corrected value.
    """

    def draw_box(self, lam: Tensor, h: int, w: int, generator: torch.Generator) -> Tensor:
        """Boxes ``(m, 4)`` long ``(top, bottom, left, right)`` of area ``1 - lam`` (before clipping)."""
        m = lam.shape[0]
        cut = torch.sqrt(1.0 - lam)
        ch, cw = (cut * h).long(), (cut * w).long()
        cy = (torch.rand(m, dtype=torch.float64, generator=generator) * h).long()
        cx = (torch.rand(m, dtype=torch.float64, generator=generator) * w).long()
        top, bottom = (cy - ch // 2).clamp(0, h), (cy + ch // 2).clamp(0, h)
        left, right = (cx - cw // 2).clamp(0, w), (cx + cw // 2).clamp(0, w)
        return torch.stack([top, bottom, left, right], 1)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        if len(shape) < 3:
            raise ValueError(
                f"cutmix needs spatial inputs (B, ..., H, W), got shape {tuple(shape)}; "
                "use mixup for tabular data"
            )
        h, w = int(shape[-2]), int(shape[-1])
        m = n if self.per_sample else 1
        lam_t = self.draw_lam(m, generator)[:m] if lam is None else fixed_lam(lam, n)[:m]
        box = self.draw_box(lam_t.contiguous(), h, w, generator)
        index = torch.randperm(n, generator=generator)
        area = ((box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])).double() / (h * w)
        return MixParams((1.0 - area).expand(n) if m == 1 else 1.0 - area, index, box)

    def box_mask(self, box: Tensor, x: Tensor) -> Tensor:
        """``(m, 1.., H, W)`` bool mask of the boxes, broadcastable against ``x``."""
        h, w, dev = x.shape[-2], x.shape[-1], x.device
        rows = torch.arange(h, device=dev)[None, :, None]
        cols = torch.arange(w, device=dev)[None, None, :]
        t, b, l, r = (v.to(dev, non_blocking=True)[:, None, None] for v in box.unbind(1))
        mask = (rows >= t) & (rows < b) & (cols >= l) & (cols < r)  # (m, H, W)
        return mask.reshape((box.shape[0],) + (1,) * (x.ndim - 3) + (h, w))

    def mix_inputs(self, x: Tensor, params: MixParams) -> Tensor:
        if x.ndim < 3:
            raise ValueError(f"cutmix needs spatial inputs (B, ..., H, W), got shape {tuple(x.shape)}")
        index = params.index.to(x.device, non_blocking=True)
        box = params.box
        if box.shape[0] == 1:  # one box for the batch: a slice, no mask
            t, b, l, r = (int(v) for v in box[0])
            out = x.clone()
            out[..., t:b, l:r] = x[..., t:b, l:r].index_select(0, index)
            return out
        return torch.where(self.box_mask(box, x), x.index_select(0, index), x)
