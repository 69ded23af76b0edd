"""The relabeling baselines of the GenLabel paper, usable wherever GenLabel is.

* :class:`ExcludeIntrusion` drops mixed points that intrude on a third class
  (the nearest-neighbour rule of section 3.1);
* :class:`LogisticLabel` replaces the linear label by the logistic label of
  section 3.2, ``rho * y_i + (1 - rho) * y_j`` with
  ``rho = sigmoid(2 (lam - 1/2) / sigma^2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit.batch import MixedBatch, check_finite, check_labels

# pairwise-distance blocks are kept near this many elements
_CHUNK_ELEMENTS = 1 << 24


def nearest_labels(x: Tensor, x_ref: Tensor, y_ref: Tensor) -> Tensor:
    """Label of the nearest reference point (Euclidean) for every row of ``x``, in chunks."""
    chunk = max(1, _CHUNK_ELEMENTS // max(1, x_ref.shape[0]))
    out = []
    for start in range(0, x.shape[0], chunk):  # bounded memory, not a per-sample loop
        d = torch.cdist(x[start:start + chunk], x_ref)
        out.append(y_ref[d.argmin(1)])
    return torch.cat(out) if out else y_ref.new_empty(0)


class ExcludeIntrusion:
    """Mixup excluding manifold intrusion: drop mixed points whose nearest training
    point belongs to neither of the two mixed classes (section 3.1 of the paper).

    ``fit(x, y)`` stores the training set. The returned batch has fewer rows;
    ``batch.info["excluded"]`` counts the dropped ones. If every row intrudes,
    the batch is empty: skip the step (its loss would be the mean of nothing).
    """

    def __init__(self) -> None:
        self.x_ref: Tensor | None = None
        self.y_ref: Tensor | None = None

    def fit(self, x: Tensor, y: Tensor) -> ExcludeIntrusion:
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if y.ndim == 2:
            y = y.argmax(1)
        if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"fit expects x (N, ...) and class ids y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        x = x.reshape(x.shape[0], -1).float()
        check_finite(x, "x passed to fit")
        check_labels(y.long(), int(y.max()) + 1)
        self.x_ref, self.y_ref = x, y.long()
        return self

    def intrudes(self, batch: MixedBatch) -> Tensor:
        """``(B,)`` bool: the nearest training point's class is neither mixed class."""
        if self.x_ref is None:
            raise RuntimeError("ExcludeIntrusion is not fitted: call .fit(x_train, y_train) first")
        x = batch.x.reshape(batch.x.shape[0], -1)
        if x.shape[1] != self.x_ref.shape[1]:
            raise ValueError(f"fitted on {self.x_ref.shape[1]} features, batch has {x.shape[1]}")
        if self.x_ref.device != x.device:
            self.x_ref, self.y_ref = self.x_ref.to(x.device), self.y_ref.to(x.device)
        nn = nearest_labels(x.to(self.x_ref.dtype), self.x_ref, self.y_ref)
        return (nn != batch.labels) & (nn != batch.partner_labels)

    def __call__(self, batch: MixedBatch) -> MixedBatch:
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
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"LogisticLabel(sigma={self.sigma})"

    def __call__(self, batch: MixedBatch) -> MixedBatch:
        k = batch.num_classes
        dtype = batch.y.dtype
        lam = batch.lam.to(dtype)
        rho = torch.sigmoid(2.0 * (lam - 0.5) / self.sigma**2)[:, None]
        y_i = torch.nn.functional.one_hot(batch.labels, k).to(dtype)
        y_j = torch.nn.functional.one_hot(batch.partner_labels, k).to(dtype)
        return batch.replace(y=rho * y_i + (1 - rho) * y_j)
