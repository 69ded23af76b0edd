"""CutMix (Yun et al., 2019): paste a random box from the partner image."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit._validation import check_range
from mixkit.mixers.base import MixParams, fixed_lam, where_into
from mixkit.mixers.mixup import Mixup, partners


class CutMix(Mixup):
    """CutMix: paste a random box of the partner; lam is corrected to the pasted area.

    Args:
        alpha: Beta parameter of the target box area ``1 - lam``.
        num_classes: number of classes (needed for class-id labels).
        per_sample: one box per sample (vectorised masks) instead of one per batch.
        minmax: ``(min, max)`` shares of the image side (timm's ``cutmix_minmax``):
            box height and width are drawn uniformly between them, independently of
            ``alpha``, and lam is always the kept area.
        correct_lam: report the share of the image each sample kept once the box is
            clipped at the borders (default, as timm); ``False`` keeps the drawn lam.
        pairing, seed, label_dtype, validate, multi_label: see :class:`Mixup`.

    Inputs are ``(B, ..., H, W)`` (images ``(B, C, H, W)``); the box covers the
    last two dimensions. Boxes are drawn as timm's ``rand_bbox`` draws them:
    side ``int(H * sqrt(1 - lam))``, centre uniform over the image, clipped.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int | None = None,
        *,
        minmax: tuple[float, float] | None = None,
        correct_lam: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(alpha, num_classes, **kwargs)
        if minmax is not None:
            if isinstance(minmax, str) or not hasattr(minmax, "__len__") or len(minmax) != 2:
                raise ValueError(f"minmax must be (min, max) shares of the image side, got {minmax!r}")
            lo, hi = (check_range("minmax", v, 0.0, 1.0) for v in minmax)
            if not 0 < lo <= hi:
                raise ValueError(f"minmax must satisfy 0 < min <= max <= 1, got {minmax!r}")
            minmax = (lo, hi)
        self.minmax = minmax
        self.correct_lam = bool(correct_lam)

    def draw_box(self, lam: Tensor, h: int, w: int, generator: torch.Generator) -> Tensor:
        """Boxes ``(m, 4)`` long ``(top, bottom, left, right)`` of area ``1 - lam`` (before clipping)."""
        m = lam.shape[0]
        if self.minmax is not None:
            return self._draw_minmax_box(m, h, w, generator)
        cut = torch.sqrt(1.0 - lam)
        ch, cw = (cut * h).long(), (cut * w).long()
        cy = (torch.rand(m, dtype=torch.float64, generator=generator) * h).long()
        cx = (torch.rand(m, dtype=torch.float64, generator=generator) * w).long()
        top, bottom = (cy - ch // 2).clamp(0, h), (cy + (ch + 1) // 2).clamp(0, h)
        left, right = (cx - cw // 2).clamp(0, w), (cx + (cw + 1) // 2).clamp(0, w)
        return torch.stack([top, bottom, left, right], 1)

    def _draw_minmax_box(self, m: int, h: int, w: int, generator: torch.Generator) -> Tensor:
        lo, hi = self.minmax

        def side(size: int) -> Tensor:  # uniform integer in [int(size*lo), int(size*hi)), as timm
            a, b = int(size * lo), max(int(size * hi), int(size * lo) + 1)
            return a + (torch.rand(m, dtype=torch.float64, generator=generator) * (b - a)).long()

        ch, cw = side(h), side(w)
        top = (torch.rand(m, dtype=torch.float64, generator=generator) * (h - ch + 1)).long()
        left = (torch.rand(m, dtype=torch.float64, generator=generator) * (w - cw + 1)).long()
        return torch.stack([top, (top + ch).clamp(max=h), left, (left + cw).clamp(max=w)], 1)

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
        index = partners(n, self.pairing, generator)
        if self.correct_lam or self.minmax is not None:
            lam_t = 1.0 - ((box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])).double() / (h * w)
        return MixParams(lam_t.expand(n) if m == 1 else lam_t, index, box)

    def box_mask(self, box: Tensor, x: Tensor) -> Tensor:
        """``(m, 1.., H, W)`` bool mask of the boxes, broadcastable against ``x``."""
        h, w, dev = x.shape[-2], x.shape[-1], x.device
        rows = torch.arange(h, device=dev)[None, :, None]
        cols = torch.arange(w, device=dev)[None, None, :]
        t, b, l, r = (v.to(dev, non_blocking=True)[:, None, None] for v in box.unbind(1))
        mask = (rows >= t) & (rows < b) & (cols >= l) & (cols < r)  # (m, H, W)
        return mask.reshape((box.shape[0],) + (1,) * (x.ndim - 3) + (h, w))

    def mix_inputs(self, x: Tensor, params: MixParams, *, inplace: bool = False) -> Tensor:
        if x.ndim < 3:
            raise ValueError(f"cutmix needs spatial inputs (B, ..., H, W), got shape {tuple(x.shape)}")
        index = params.index.to(x.device, non_blocking=True)
        box = params.box
        if box is None:
            raise ValueError("these params hold no CutMix box (drawn by another mixer); pass params from CutMix.draw")
        if box.shape[0] == 1:  # one box for the batch: a slice, no mask (the box is on the CPU: no sync)
            t, b, l, r = (int(v) for v in box[0])
            out = x if inplace else x.clone()  # clone keeps the memory format and tensor subclass
            out[..., t:b, l:r] = x[..., t:b, l:r].index_select(0, index)  # the right side is a copy
            return out
        out = x if inplace else torch.empty_like(x)  # laid out like x
        return where_into(self.box_mask(box, x), x.index_select(0, index), x, out)
