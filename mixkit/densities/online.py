"""Streaming class-conditional Gaussians: the online density of Algorithm 3 of the GenLabel paper.

Algorithm 3 learns the generative model and the classifier at the same time: every
training step estimates each class's mean and (spherical) covariance of the model's
penultimate features from the clean batch, blends them with the previous estimate,
and relabels the mixed batch with the result. :class:`OnlineGaussian` is that
estimator, as a :class:`mixkit.Density` whose :meth:`~OnlineGaussian.update` is
called once per step.

The memory ratio. The paper states the rule twice and the two statements disagree on
which term ``beta`` multiplies: the prose of appendix A.1 says
``mu_c <- (1 - beta) mu_c^(t) + beta mu_c^(t-1)`` ("when beta = 0 it reduces to the
memoryless estimation"), while the pseudocode of Algorithm 3 writes
``mu_c <- (1 - beta) mu_c^(t-1) + beta mu_c^(t)``. We follow the prose, which is also
what the hyperparameter tables imply (memory ratios 0.95 to 0.99: the estimate is
mostly memory), and name the parameter ``memory`` so that its meaning is plain::

    mean_c <- memory * mean_c + (1 - memory) * batch_mean_c        (same for the variance)

``memory=0`` keeps only the last batch; ``memory=0.95`` is the paper's setting for
mixup + GenLabel on MNIST and CIFAR. To use the pseudocode's convention pass
``memory = 1 - beta``.

Other choices, documented because the paper leaves them open:

* the batch covariance of a class is taken around that class's *batch* mean
  (the prose's definition), then blended;
* a class absent from a batch keeps its previous estimate; before it is first seen
  it is ``N(0, I)``, the initial state of Algorithm 3;
* the pseudocode's ``p_c = det(Sigma)^(-1/2) exp(-(z - mu)^T Sigma^-1 (z - mu))`` lacks
  the usual factor 1/2 in the exponent; we score with the standard Gaussian density
  (pass ``temperature=0.5`` to :class:`mixkit.GenLabel` for a sharper posterior).

``memory=None`` keeps exact running sums instead (counts, sums and sums of squares
per class, in float64): after any sequence of updates the means and variances equal
the one-pass maximum-likelihood statistics of all the data seen.

Precision: batch statistics are taken about a per-class shift, so features far from 0
(offsets of 1e8 and more) keep their variances: the batch's own class means (a second
pass over the batch) in a single process, and the current estimate of each class mean
under ``torch.distributed`` (the same on every rank; a class's first batch there is
taken about 0). Running sums are kept about each class's first batch mean.

Host syncs: with validation off (``validate=False``, or the default on an accelerator)
``update`` reads no tensor on the host once ``num_classes`` and ``dim`` are known, so a
training step that calls it can stay asynchronous (counts are summed with
``index_add_``, not ``bincount``, which syncs on CUDA).

Under ``torch.distributed`` the per-batch sums and counts are all-reduced before
they are applied (see :mod:`mixkit.distributed`), so every rank applies the same
update and holds the same density; every rank must then call ``update`` equally often.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixkit._validation import as_class_ids, as_tensor, check_finite, check_id_range, should_validate
from mixkit.densities.base import Density
from mixkit.densities.gaussian import diagonal_log_prob
from mixkit.distributed import all_reduce_sum, is_distributed

COVARIANCE_TYPES = ("spherical", "diag")


class OnlineGaussian(Density):
    """Streaming class-conditional Gaussian (EMA with a memory ratio, or exact running sums).

    Args:
        num_classes: number of classes ``K``; inferred from the first batch when
            ``None`` (pass it: a batch need not contain every class).
        dim: feature dimension; inferred from the first batch when ``None``.
        memory: weight of the past in the exponential moving average, in ``[0, 1]``
            (the paper's memory ratio ``beta`` of appendix A.1, e.g. 0.95); ``None``
            keeps exact running sums (counts, sums, sums of squares) instead.
        covariance: ``"spherical"`` (``trace(Sigma)/d * I``, as in Algorithm 3) or
            ``"diag"``.
        reg_covar: added to every variance before scoring (a class seen once has a
            zero batch variance).
        sync: all-reduce the per-batch statistics across ranks when
            ``torch.distributed`` is initialized (a no-op otherwise).
        dtype: dtype of the stored statistics (float64; float32 where float64 is
            unavailable, e.g. on MPS).
        validate: check features (finite) and class ids (integral, in range) in
            ``update``; ``None`` (default) checks on the CPU only, where it costs no
            sync (see :func:`mixkit._validation.should_validate`).

    ``update(z, y)`` takes features ``(B, d)`` and class ids ``(B,)`` or ``(B, 1)`` of any
    integer dtype (or soft labels ``(B, K)``, reduced to their argmax); ``fit(z, y)`` is a
    reset followed by one update, and re-infers ``num_classes`` from ``y`` unless it was
    given.
    All statistics are buffers: ``state_dict()`` round-trips through
    ``torch.save``/``torch.load(weights_only=True)`` into a fresh instance built with
    the same arguments, and ``.to(device)`` moves them (``update`` also follows the
    device of the features it is given).
    """

    min_samples_per_class = 0  # a batch need not contain every class
    scores_are_clean = True  # NaN rows are "cannot say" (-inf) already

    def __init__(
        self,
        num_classes: int | None = None,
        dim: int | None = None,
        *,
        memory: float | None = 0.95,
        covariance: str = "spherical",
        reg_covar: float = 1e-6,
        sync: bool = True,
        dtype: torch.dtype = torch.float64,
        validate: bool | None = None,
    ) -> None:
        super().__init__(num_classes)
        if covariance not in COVARIANCE_TYPES:
            raise ValueError(f"covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if memory is not None and not 0.0 <= float(memory) <= 1.0:
            raise ValueError(
                f"memory (the weight of the past) must lie in [0, 1] or be None, got {memory}"
            )
        if reg_covar < 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}")
        if dim is not None and int(dim) < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.memory = None if memory is None else float(memory)
        self.covariance = covariance
        self.reg_covar = float(reg_covar)
        self.sync = bool(sync)
        self.stat_dtype = dtype
        self.validate = validate
        if self.num_classes is not None and dim is not None:
            self._allocate(int(dim), torch.device("cpu"))

    @property
    def mode(self) -> str:
        """``"ema"`` (a memory ratio) or ``"running"`` (exact running sums)."""
        return "running" if self.memory is None else "ema"

    def extra_repr(self) -> str:
        return (
            f"memory={self.memory}, covariance={self.covariance!r}, reg_covar={self.reg_covar}, "
            + super().extra_repr()
        )

    # -- state ------------------------------------------------------------------------------

    def _allocate(self, dim: int, device: torch.device) -> None:
        """Create the statistics for ``num_classes`` x ``dim`` in their initial (0, I) state."""
        k, dt = self.num_classes, self.stat_dtype
        self.dim = dim
        self.register_buffer("class_counts", torch.zeros(k, dtype=torch.long, device=device))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=device))
        if self.memory is None:
            # sums about ``centre`` (each class's first batch mean): no cancellation
            self.register_buffer("centre", torch.zeros(k, dim, dtype=dt, device=device))
            self.register_buffer("sums", torch.zeros(k, dim, dtype=dt, device=device))
            self.register_buffer("sumsq", torch.zeros(k, dim, dtype=dt, device=device))
        else:
            var_cols = 1 if self.covariance == "spherical" else dim
            self.register_buffer("ema_means", torch.zeros(k, dim, dtype=dt, device=device))
            self.register_buffer("ema_vars", torch.ones(k, var_cols, dtype=dt, device=device))

    def reset(self) -> OnlineGaussian:
        """Back to the initial state: every class ``N(0, I)``, nothing seen."""
        if self.dim is not None and "class_counts" in self._buffers:
            self._allocate(self.dim, self.class_counts.device)
        self.fitted = False
        self._touch()
        return self

    def _device(self) -> torch.device:
        buf = self._buffers.get("class_counts")
        return torch.device("cpu") if buf is None else buf.device

    # -- estimation -------------------------------------------------------------------------

    def fit(self, x: Tensor, y: Tensor) -> OnlineGaussian:
        """Reset, then one :meth:`update` with all of ``x``, ``y`` (one-pass statistics)."""
        x, y, k = self._check_fit_input(x, y)
        if k != self.num_classes or self.dim != x.shape[1]:
            self.num_classes, self.dim = k, None  # another class count or width starts over
            self._buffers.pop("class_counts", None)
        self.reset()
        return self.update(x, y)

    def batch_statistics(
        self, z: Tensor, y: Tensor, shift: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class count ``(K,)``, sum ``(K, d)`` and sum of squares ``(K, d)`` of a batch,
        of ``z - shift[y]`` (``shift`` ``(K, d)``, default 0).

        Computed with ``index_add_`` in the statistics dtype on ``z``'s device (no loop
        over classes, no host sync). These are what :meth:`apply_statistics` consumes and
        what is all-reduced across ranks.
        """
        z64 = z.detach().to(self.stat_dtype)
        k, d = self.num_classes, z.shape[1]
        counts = z64.new_zeros(k).index_add_(0, y, z64.new_ones(y.shape[0]))
        if shift is not None:
            z64 = z64 - shift.index_select(0, y)
        sums = z64.new_zeros(k, d).index_add_(0, y, z64)
        sumsq = z64.new_zeros(k, d).index_add_(0, y, z64 * z64)
        return counts, sums, sumsq

    def update(self, z: Tensor, y: Tensor) -> OnlineGaussian:
        """Fold one batch of features ``z`` ``(B, d)`` with labels ``y`` into the estimate.

        With ``sync=True`` under ``torch.distributed`` the batch statistics of all
        ranks are summed first (a collective: call it on every rank).
        """
        z, y = self._check_update_input(z, y)
        if self.dim is None or "class_counts" not in self._buffers:
            self._allocate(z.shape[1], z.device)
        elif z.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} holds {self.dim}-dimensional statistics but got features "
                f"of shape {tuple(z.shape)}; call reset() or build a new density for new features"
            )
        if self._device() != z.device:
            self.to(z.device)
        shift = self._batch_shift(z, y)
        counts, sums, sumsq = self.batch_statistics(z, y, shift)
        if self.sync:
            counts, sums, sumsq = all_reduce_sum(counts, sums, sumsq)
        return self.apply_statistics(counts, sums, sumsq, shift)

    def _batch_shift(self, z: Tensor, y: Tensor) -> Tensor:
        """The per-class point the batch's statistics are taken about (see the module doc)."""
        seen = (self.class_counts > 0)[:, None]
        current = self.centre if self.memory is None else self.ema_means
        if self.sync and is_distributed():
            return current  # identical on every rank, so the sums add up
        z64 = z.to(self.stat_dtype)
        counts = z64.new_zeros(self.num_classes).index_add_(0, y, z64.new_ones(y.shape[0]))
        local = z64.new_zeros(self.num_classes, self.dim).index_add_(0, y, z64)
        local = local / counts.clamp_min(1)[:, None]  # this batch's class means (0 if absent)
        return torch.where(seen, current, local) if self.memory is None else local

    def apply_statistics(
        self, counts: Tensor, sums: Tensor, sumsq: Tensor, shift: Tensor | None = None
    ) -> OnlineGaussian:
        """Apply batch statistics (already reduced across ranks, if any) to the estimate;
        ``sums``/``sumsq`` are about ``shift`` (``(K, d)``, default 0)."""
        dt = self.stat_dtype
        counts, sums, sumsq = counts.to(dt), sums.to(dt), sumsq.to(dt)
        shift = torch.zeros_like(sums) if shift is None else shift.to(dt)
        if self.memory is None:
            # re-express the batch about each class's centre (a class seen for the first
            # time takes this batch's shift as its centre)
            first = (self.class_counts == 0)[:, None]
            centre = torch.where(first, shift, self.centre)
            delta = shift - centre  # 0 wherever the shift is the centre
            n = counts[:, None]
            self.sumsq += sumsq + 2.0 * delta * sums + n * delta * delta
            self.sums += sums + n * delta
            self.centre.copy_(centre)
        else:
            seen = counts > 0
            n = counts.clamp_min(1)[:, None]
            offset = sums / n
            mean_b = shift + offset
            var_b = (sumsq / n - offset * offset).clamp_min_(0)
            if self.covariance == "spherical":
                var_b = var_b.mean(1, keepdim=True)
            m = self.memory
            new_means = self.ema_means * m + mean_b * (1.0 - m)
            new_vars = self.ema_vars * m + var_b * (1.0 - m)
            self.ema_means.copy_(torch.where(seen[:, None], new_means, self.ema_means))
            self.ema_vars.copy_(torch.where(seen[:, None], new_vars, self.ema_vars))
        self.class_counts += counts.round().long()
        self.steps += 1
        self.fitted = True
        return self

    def gaussian_parameters(self) -> tuple[Tensor, Tensor]:
        """Current ``means`` ``(K, d)`` and ``variances`` ``(K, d)`` (without ``reg_covar``).

        A class not yet seen is ``(0, 1)``. For ``"spherical"`` every column of a
        row of ``variances`` is the same ``trace/d``.
        """
        if "class_counts" not in self._buffers:
            raise RuntimeError(f"{type(self).__name__} has no statistics yet: call update(z, y)")
        k, d = self.num_classes, self.dim
        if self.memory is not None:
            return self.ema_means, self.ema_vars.expand(k, d)
        n = self.class_counts.to(self.stat_dtype)
        seen = n > 0
        n = n.clamp_min(1)[:, None]
        offset = self.sums / n
        means = self.centre + offset
        var = (self.sumsq / n - offset * offset).clamp_min(0)
        if self.covariance == "spherical":
            var = var.mean(1, keepdim=True).expand(k, d)
        means = torch.where(seen[:, None], means, torch.zeros_like(means))
        var = torch.where(seen[:, None], var, torch.ones_like(var))
        return means, var

    # -- scoring ----------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        means, var = self.gaussian_parameters()
        return diagonal_log_prob(x, means, var + self.reg_covar)

    # -- plumbing ---------------------------------------------------------------------------

    def _check_update_input(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        z = as_tensor(z, "features passed to update")
        y = as_tensor(y, "labels passed to update")
        if z.ndim != 2:
            raise ValueError(f"update expects features of shape (B, d), got {tuple(z.shape)}")
        if y.ndim == 0 or y.shape[0] != z.shape[0]:
            raise ValueError(f"update got {z.shape[0]} features but labels of shape {tuple(y.shape)}")
        z = z.detach()
        if not z.is_floating_point():
            z = z.to(torch.get_default_dtype())
        check = should_validate(self.validate, z, y)
        if check:
            check_finite(z, "features passed to update")
        y = y.detach().to(z.device)
        if y.ndim == 2 and y.shape[1] > 1:  # soft labels: their argmax
            y = y.argmax(1)
        y = as_class_ids(y, None, "labels", check=check)
        if self.num_classes is None:
            if not y.numel():
                raise ValueError("cannot infer num_classes from an empty batch; pass num_classes")
            check_id_range(y, int(y.max()) + 1)
            self.num_classes = int(y.max()) + 1
        if check:
            check_id_range(y, self.num_classes)
        return z, y

    def _loaded(self) -> None:
        if self.memory is None and "sums" in self._buffers and "centre" not in self._buffers:
            # a state saved before running sums were shifted: they are about 0
            self.register_buffer("centre", torch.zeros_like(self.sums))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "memory": self.memory, "covariance": self.covariance}

    def _build(self, config: dict[str, Any]) -> None:
        for key in ("memory", "covariance"):
            if key in config and config[key] != getattr(self, key):
                raise ValueError(
                    f"state was saved with {key}={config[key]!r} but this density has "
                    f"{key}={getattr(self, key)!r}; construct it with the same arguments"
                )


__all__ = ["OnlineGaussian"]
