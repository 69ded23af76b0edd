"""Group samples by class into one padded tensor, so per-class statistics are batched."""

from __future__ import annotations

import torch
from torch import Tensor


def group_by_class(x: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Pack ``x`` ``(N, d)`` into ``(K, n_max, d)`` by class, with a ``(K, n_max)`` validity mask.

    Rows past a class's count are zero, so sums over the padded axis equal sums
    over the class; one ``bmm`` then gives every class's scatter matrix.
    """
    counts = torch.bincount(y, minlength=num_classes)
    n_max = int(counts.max())
    order = torch.argsort(y, stable=True)
    ys = y[order]
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(y.numel(), device=y.device) - starts[ys]
    packed = x.new_zeros((num_classes, n_max, x.shape[1]))
    packed[ys, slot] = x[order]
    mask = torch.zeros((num_classes, n_max), dtype=torch.bool, device=x.device)
    mask[ys, slot] = True
    return packed, mask


def class_moments(x: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-class ``(packed, mask, counts, means, centred)`` from :func:`group_by_class`.

    ``centred`` is ``packed`` minus its class mean, zero on padding, so
    ``centred.mT @ centred`` is every class's scatter matrix in one ``bmm``.
    """
    packed, mask = group_by_class(x, y, num_classes)
    counts = mask.sum(1).to(x.dtype)
    means = packed.sum(1) / counts[:, None]
    centred = (packed - means[:, None]) * mask[..., None]
    return packed, mask, counts, means, centred
