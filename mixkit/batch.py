"""MixedBatch and the label helpers every mixer and relabeler shares."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class MixedBatch:
    """A mixed batch: what a mixer returns and a relabeler transforms.

    Attributes:
        x: mixed inputs, same shape as the input batch (float).
        y: soft labels ``(B, K)``, float32 (or float64 if asked), rows sum to 1.
        lam: ``(B,)`` weight of each sample's own input in its mix
            (``x[i] = lam[i] * x_in[i] + (1 - lam[i]) * x_in[index[i]]`` for mixup).
        index: ``(B,)`` long, the partner of each sample.
        labels: ``(B,)`` long, the original class id of each sample (argmax of
            the input label when soft labels were given).
        y_mix: ``(B, K)`` the mixing label, kept when a relabeler replaces ``y``.
        info: diagnostics added by relabelers (counts, not tensors on the hot path).
        partner_labels: ``(B,)`` class id of each sample's partner; derived from
            ``labels[index]`` when not given, and kept when rows are selected.
    """

    x: Tensor
    y: Tensor
    lam: Tensor
    index: Tensor
    labels: Tensor
    y_mix: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    partner_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.partner_labels is None:
            self.partner_labels = self.labels[self.index]

    @property
    def num_classes(self) -> int:
        return self.y.shape[1]

    def replace(self, **changes: Any) -> MixedBatch:
        """A copy with some fields changed (tensors are shared, not copied)."""
        return replace(self, **changes)

    def select(self, keep: Tensor) -> MixedBatch:
        """The rows where the boolean mask ``keep`` is true.

        ``index`` still refers to rows of the *input* batch, so it is kept as is;
        ``partner_labels`` carries the partners' classes.
        """
        return replace(
            self,
            x=self.x[keep],
            y=self.y[keep],
            lam=self.lam[keep],
            index=self.index[keep],
            labels=self.labels[keep],
            y_mix=self.y_mix[keep],
            partner_labels=self.partner_labels[keep],
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MixedBatch:
        def mv(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return replace(self, x=mv(self.x), y=mv(self.y), lam=mv(self.lam), index=mv(self.index),
                       labels=mv(self.labels), y_mix=mv(self.y_mix),
                       partner_labels=mv(self.partner_labels))

    def __iter__(self):
        # `x, y = batch` unpacks like the (x, y_soft) pair a training loop expects
        yield self.x
        yield self.y


def check_finite(x: Tensor, what: str = "x") -> None:
    """Raise a ValueError naming ``what`` if ``x`` holds NaN or Inf."""
    # NaN and Inf propagate into the sum, so one reduction (no bool tensor) checks the batch;
    # float32 accumulation keeps a half-precision batch from overflowing into a false alarm
    if x.is_floating_point() and not bool(torch.isfinite(x.sum(dtype=torch.float32 if x.itemsize < 4 else None))):
        n_bad = int((~torch.isfinite(x)).sum())
        if n_bad == 0:
            return  # the values are finite; only their sum overflowed
        raise ValueError(
            f"{what} contains {n_bad} NaN/Inf value(s); clean or impute them before mixing "
            "(e.g. torch.nan_to_num, or drop those rows)"
        )


def to_soft_labels(
    y: Tensor, num_classes: int | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Class ids ``(B,)`` or soft labels ``(B, K)`` -> soft labels ``(B, K)`` of ``dtype``.

    Class ids are checked against ``[0, num_classes)``; soft labels must be
    non-negative with rows summing to 1 (within 1e-3).
    """
    if not torch.is_tensor(y):
        y = torch.as_tensor(y)
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and not y.is_floating_point()):
        y = y.reshape(-1)
        if y.is_floating_point():
            if not bool(torch.all(y == y.round())):
                raise ValueError("1-D labels must be integer class ids; pass soft labels as (B, K)")
            y = y.long()
        if num_classes is None:
            raise ValueError(
                "labels are class ids, so num_classes is needed to build soft labels "
                "(pass num_classes=K, the number of classes in the dataset)"
            )
        check_labels(y, num_classes)
        return torch.nn.functional.one_hot(y.long(), num_classes).to(dtype)
    if y.ndim == 2:
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(
                f"soft labels have {y.shape[1]} columns but num_classes={num_classes}"
            )
        y = y.to(dtype)
        check_finite(y, "soft labels")
        if bool((y < 0).any()) or not torch.allclose(
            y.sum(1), torch.ones((), dtype=dtype, device=y.device), atol=1e-3
        ):
            raise ValueError("soft labels must be non-negative with rows summing to 1")
        return y
    raise ValueError(f"labels must be class ids (B,) or soft labels (B, K); got shape {tuple(y.shape)}")


def check_labels(y: Tensor, num_classes: int) -> None:
    """Raise a ValueError unless ``y`` holds integer class ids in ``[0, num_classes)``."""
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"class ids must be an integer tensor, got {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) but range over [{int(y.min())}, {int(y.max())}]; "
            "check num_classes or remap the labels to 0..K-1"
        )


def class_ids(y: Tensor) -> Tensor:
    """Class ids ``(B,)`` from class ids or soft labels (argmax)."""
    return y.argmax(1) if y.ndim == 2 else y.reshape(-1).long()
