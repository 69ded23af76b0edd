"""The relabeling baselines of the GenLabel paper, usable wherever GenLabel is.

* :class:`ExcludeIntrusion` drops mixed points that intrude on a third class
  (the nearest-neighbour rule of section 3.1);
* :class:`LogisticLabel` replaces the linear label by the logistic label of
  section 3.2, ``rho * y_i + (1 - rho) * y_j`` with
  ``rho = sigmoid(2 (lam - 1/2) / sigma^2)``.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor, nn

from mixkit import chunking
from mixkit._validation import as_class_ids, as_tensor, check_batch, check_finite, check_positive
from mixkit.batch import MixedBatch
from mixkit.chunking import row_chunks


def nearest_labels(x: Tensor, x_ref: Tensor, y_ref: Tensor) -> Tensor:
    """Label of the nearest reference point (Euclidean) for every row of ``x``, in chunks
    of rows whose ``(rows, N_ref)`` distance block stays within ``chunking.MAX_ELEMENTS``."""
    out = [y_ref[torch.cdist(x[rows], x_ref).argmin(1)]  # bounded memory, not a per-sample loop
           for rows in row_chunks(x.shape[0], x_ref.shape[0], budget=chunking.MAX_ELEMENTS)]
    return torch.cat(out) if out else y_ref.new_empty(0)


class ExcludeIntrusion(nn.Module):
    """Mixup excluding manifold intrusion: drop mixed points whose nearest training
    point belongs to neither of the two mixed classes (section 3.1 of the paper).

    ``fit(x, y)`` stores the training set (as buffers: the module's ``state_dict``
    carries it, and ``.to()`` moves it). The returned batch has fewer rows;
    ``batch.info["excluded"]`` counts the dropped ones. If every row intrudes, the
    batch is empty (0 rows, which GenLabel passes through): skip the step (its loss
    would be the mean of nothing).
    """

    x_ref: Tensor | None
    y_ref: Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("x_ref", None)
        self.register_buffer("y_ref", None)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        # the reference set is created by fit: make room for it in a fresh instance
        for name in ("x_ref", "y_ref"):
            value = state_dict.get(prefix + name)
            if torch.is_tensor(value):
                current = self._buffers.get(name)
                if current is None or current.shape != value.shape or current.dtype != value.dtype:
                    self._buffers[name] = torch.empty_like(value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, x: Tensor, y: Tensor) -> ExcludeIntrusion:
        x = as_tensor(x, "x passed to fit").detach()
        y = as_tensor(y, "y passed to fit").detach()
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(1)
        if x.ndim < 2 or x.shape[0] == 0 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"fit expects x (N, ...) with N > 0 and class ids y (N,), got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        x = x.reshape(x.shape[0], math.prod(x.shape[1:])).float()
        check_finite(x, "x passed to fit")
        ids = as_class_ids(y, what="y passed to fit")  # refuses float ids that are not integral
        if int(ids.min()) < 0:
            raise ValueError(f"y passed to fit must hold class ids >= 0, got {int(ids.min())}")
        self.x_ref, self.y_ref = x, ids
        return self

    def intrudes(self, batch: MixedBatch) -> Tensor:
        """``(B,)`` bool: the nearest training point's class is neither mixed class."""
        check_batch(batch, "ExcludeIntrusion")
        if self.x_ref is None:
            raise RuntimeError("ExcludeIntrusion is not fitted: call .fit(x_train, y_train) first")
        # math.prod, not -1: a 0-row batch has no size for -1 to infer
        x = batch.x.detach().reshape(batch.x.shape[0], math.prod(batch.x.shape[1:]))
        if x.shape[1] != self.x_ref.shape[1]:
            raise ValueError(f"fitted on {self.x_ref.shape[1]} features, batch has {x.shape[1]}")
        if self.x_ref.device != x.device:
            self.x_ref, self.y_ref = self.x_ref.to(x.device), self.y_ref.to(x.device)
        near = nearest_labels(x.to(self.x_ref.dtype), self.x_ref, self.y_ref)
        return (near != batch.labels) & (near != batch.partner_labels)

    def forward(self, batch: MixedBatch) -> MixedBatch:
        keep = ~self.intrudes(batch)
        out = batch.select(keep)
        out.info = {**batch.info, "excluded": (~keep).sum()}
        return out


class LogisticLabel:
    """Logistic labeling (section 3.2): ``rho*y_i + (1-rho)*y_j``, ``rho = sigmoid(2(lam-1/2)/sigma^2)``.

    It is GenLabel's label for two 1-D Gaussian classes with variance
    ``sigma^2 / 2`` (Proposition 1); small ``sigma`` approaches a hard label.
    ``y_i`` and ``y_j`` are the one-hot labels of the two mixed classes.
    """

    def __init__(self, sigma: float = 0.5) -> None:
        self.sigma = check_positive("sigma", sigma)
        # the slope 2 / sigma^2, capped at the largest double: at sigma = 1e-200 it would be
        # inf, and inf * (lam - 1/2) at lam = 1/2 is NaN; capped, lam = 1/2 gives rho = 1/2
        self._slope = min(2.0 / self.sigma / self.sigma, sys.float_info.max)

    def __repr__(self) -> str:
        return f"LogisticLabel(sigma={self.sigma})"

    def __call__(self, batch: MixedBatch) -> MixedBatch:
        check_batch(batch, "LogisticLabel")
        y = batch.y
        # in float64: a float32 slope would overflow for sigma < ~1e-19
        rho = torch.sigmoid((batch.lam.double() - 0.5) * self._slope).to(y.dtype)[:, None]
        # scatter instead of F.one_hot: one_hot reads the ids' max (a host sync on CUDA)
        y_i = torch.zeros_like(y).scatter_(1, batch.labels[:, None], 1.0)
        y_j = torch.zeros_like(y).scatter_(1, batch.partner_labels[:, None], 1.0)
        return batch.replace(y=torch.lerp(y_j, y_i, rho))
