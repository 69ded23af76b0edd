"""MixedBatch and the label helpers every mixer and relabeler shares."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mixkit._validation import as_class_ids, as_tensor, check_finite, check_id_range, check_soft_labels, is_compiling


@dataclass
class MixedBatch:
    """A mixed batch: what a mixer returns and a relabeler transforms.

    It unpacks, indexes and sizes like the ``(x, y)`` tuple a training loop
    expects (``x, y = batch``, ``batch[1]``, ``len(batch) == 2``); ``y`` and
    ``y_mix`` never share memory, so a relabeler can write into ``y`` safely.

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
            self.partner_labels = self.labels.index_select(0, self.index)
        if _shares_memory(self.y, self.y_mix):
            # a relabeler writing into y must never change the mixing label it reads
            self.y_mix = self.y_mix.clone()

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

    # `x, y = batch`, `batch[0]`, `len(batch)`: the (x, y_soft) pair a training loop expects

    def __iter__(self):
        yield self.x
        yield self.y

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int | slice) -> Any:
        return (self.x, self.y)[i]


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are views of one storage (no device sync: pointers only)."""
    if a is b:
        return True
    if is_compiling():  # storage pointers cannot be traced; inside a graph only identity is known
        return False
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.numel() > 0
    except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some subclasses)
        return False


def to_soft_labels(
    y: Tensor, num_classes: int | None = None, dtype: torch.dtype = torch.float32, *, check: bool = True
) -> Tensor:
    """Class ids ``(B,)`` / ``(B, 1)`` or soft labels ``(B, K)`` -> soft labels ``(B, K)`` of ``dtype``.

    With ``check`` (the default; it reads values, so the hot path passes
    :func:`mixkit._validation.should_validate`), class ids are checked against
    ``[0, num_classes)`` and soft labels must be finite, non-negative, with rows
    summing to 1 within 1e-3. Soft rows are renormalised to sum to 1 exactly.
    """
    y = as_tensor(y, "labels")
    # (B, 1) is a column of ids, not one-class soft labels, unless there is only one class
    if y.ndim == 2 and (y.shape[1] != 1 or (num_classes == 1 and y.is_floating_point())):
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"soft labels have {y.shape[1]} columns but num_classes={num_classes}")
        y = y.to(dtype)
        if check:
            check_soft_labels(y)
        return y / y.sum(1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    if y.ndim not in (1, 2):
        raise ValueError(f"labels must be class ids (B,) or soft labels (B, K); got shape {tuple(y.shape)}")
    ids = as_class_ids(y, num_classes, check=check)
    if num_classes is None:
        raise ValueError(
            "labels are class ids, so num_classes is needed to build soft labels "
            "(pass num_classes=K, the number of classes in the dataset)"
        )
    # scatter instead of F.one_hot: one_hot reads min/max of the ids (a host sync on CUDA)
    out = torch.zeros((ids.shape[0], num_classes), dtype=dtype, device=ids.device)
    return out.scatter_(1, ids[:, None], 1.0)


def check_labels(y: Tensor, num_classes: int) -> None:
    """Raise a ValueError unless ``y`` holds integer class ids in ``[0, num_classes)``."""
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"class ids must be an integer tensor, got {y.dtype}")
    check_id_range(y.long(), num_classes)


def class_ids(y: Tensor) -> Tensor:
    """Class ids ``(B,)`` from class ids (``(B,)`` or ``(B, 1)``) or soft labels ``(B, K)`` (argmax)."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y.reshape(-1).long()
    return y.argmax(1) if y.ndim == 2 else y.reshape(-1).long()


__all__ = ["MixedBatch", "check_finite", "check_labels", "class_ids", "to_soft_labels"]
