"""The Density base class: a class-conditional density ``log p_c(x)`` for every class.

Contract (kept by every built-in and plugin density):

* ``fit(x, y) -> self``: ``x`` is ``(N, d)`` real, ``y`` class ids ``(N,)`` or ``(N, 1)`` of
  any integer dtype (or integral floats) in ``[0, K)``. ``x`` is detached: no autograd
  graph is stored. ``K`` is ``num_classes`` when the constructor was given it, else
  ``max(y) + 1``, re-inferred on every fit. ``fit_batches(batches)`` fits from an
  iterable of ``(x, y)`` batches (streamed where the density knows how, see there).
* ``log_prob(x) -> (B, K)``: ``log p_c(x_b)`` in ``promote_types(x.dtype, float32)`` (half
  precision queries are scored and returned in float32, so nothing overflows), on
  ``x``'s device. Never NaN: ``-inf`` in every column of a row means "cannot say"
  (the density has no finite value there, or rounding leaves the classes it cannot
  tell apart), and GenLabel then keeps the mixing label for that row.
* ``state_dict()/load_state_dict()``: a fitted density round-trips through
  ``torch.save``/``torch.load(weights_only=True)`` into a *fresh* instance built
  with the same constructor arguments; a state saved by another density class (or with
  other settings) is refused at load time, naming both.
* ``.to(device)``: it is an ``nn.Module``, so its tensors follow the module.

Subclasses implement :meth:`_fit` and :meth:`_log_prob` (which receives ``x`` already in
the scoring dtype), store fitted tensors with ``register_buffer`` (or as parameters of
submodules) and may override :meth:`_config` / :meth:`_build` when submodules depend on
the data shape, and :meth:`_loaded` to rebuild derived buffers after a load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from mixkit._validation import (
    as_class_ids,
    as_tensor,
    check_finite,
    check_id_range,
    is_compiling,
)

#: a row whose log-densities may be off by more than this many nats (from rounding) is
#: resolved only if one class wins by far more than the error; see :func:`cannot_say`
ROUNDING_TOLERANCE = 1.0
#: "by far": the winner's lower bound leads every other class's upper bound by this much
#: (exp(-30) ~ 1e-13: the posterior is one-hot to float precision either way)
DECISIVE_MARGIN = 30.0


class NotFittedError(RuntimeError):
    """Raised when a density is used before ``fit`` (or ``load_state_dict``)."""


def scoring_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a query of ``dtype`` is scored and returned in: at least float32."""
    if not dtype.is_floating_point:
        return torch.float32
    return torch.promote_types(dtype, torch.float32)


def cannot_say(
    log_p: Tensor,
    error: Tensor,
    tol: float = ROUNDING_TOLERANCE,
    margin: float = DECISIVE_MARGIN,
) -> Tensor:
    """``log_p`` ``(B, K)`` with the rows its rounding ``error`` leaves undecided set to ``-inf``.

    ``error`` (``(B, K)`` or ``(B, 1)``) bounds the absolute error of each entry. A row is
    kept when every class that could still matter (whose upper bound reaches within
    ``margin`` of the best lower bound) is accurate to ``tol`` nats, or when only one class
    can matter (then the posterior is one-hot whatever the rounding). Otherwise the
    posterior read from the row could be confidently wrong, so the row says "cannot say";
    so does a row holding a NaN.
    No host sync off the CPU; on the CPU the common case (every error within ``tol``)
    returns after one reduction.
    """
    if log_p.shape[1] < 2:  # one class: the posterior is 1 wherever the value is a number
        return log_p.masked_fill(log_p.isnan(), -math.inf)
    if log_p.device.type == "cpu" and not is_compiling() and bool(error.detach().amax() <= tol):
        return log_p  # (a NaN fails the comparison and takes the full path)
    best = (log_p - error).amax(1, keepdim=True)
    relevant = (log_p + error) >= best - margin
    loose = (relevant & (error > tol)).any(1)
    bad = (loose & (relevant.sum(1) > 1)) | log_p.isnan().any(1)
    return log_p.masked_fill(bad[:, None], -math.inf)


class Density(nn.Module):
    """Base class of class-conditional densities (see the module docstring for the contract)."""

    #: fewer samples than this in a class is an error at ``fit`` time
    min_samples_per_class: int = 1
    #: a subclass whose ``_log_prob`` never returns NaN or +inf sets this, saving a pass
    scores_are_clean: bool = False

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = None if num_classes is None else int(num_classes)
        # what the user asked for: None means "infer from y at every fit"
        self._given_num_classes = self.num_classes
        self.dim: int | None = None
        self.fitted = False
        # bumped by fit, load and set_parameters: the cast cache is keyed on it
        self._state_version = 0
        self._cast_cache: dict[tuple, tuple[Tensor, int, int, Tensor]] = {}
        self._extra_done = False

    # -- the public contract -------------------------------------------------------------

    def fit(self, x: Tensor, y: Tensor) -> Density:
        """Estimate ``p_c`` for every class from ``x`` ``(N, d)`` and class ids ``y`` ``(N,)``."""
        x, y, k = self._check_fit_input(x, y)
        self.num_classes, self.dim = k, x.shape[1]
        self.register_buffer("class_counts", torch.bincount(y, minlength=k))
        self._fit(x, y)
        self.fitted = True
        self._touch()
        return self

    def fit_batches(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Density:
        """Fit from an iterable of ``(x, y)`` batches, e.g. a DataLoader of features.

        The default concatenates the batches and calls :meth:`fit`. A density with a
        ``max_points_per_class`` attribute (the KDE) keeps at most that many points per
        class instead, as a uniform random sample of the stream (bottom-k reservoir: every
        point gets a uniform key from a ``torch.Generator`` seeded with the density's
        ``seed`` attribute, or 0, and each class keeps its smallest keys), so memory stays
        at ``K * max_points_per_class`` points plus one batch; the class prior
        (``class_counts``) still counts every point seen. Densities with exact streaming
        statistics (the Gaussian) override this.
        """
        cap = getattr(self, "max_points_per_class", None)
        xs: list[Tensor] = []
        ys: list[Tensor] = []
        keys = None
        total: Tensor | None = None
        gen = None
        for xb, yb in _checked_batches(batches):
            if cap is None:
                xs.append(xb)
                ys.append(yb)
                continue
            if gen is None:
                gen = torch.Generator().manual_seed(int(getattr(self, "seed", 0) or 0))
            kb = torch.rand(yb.numel(), generator=gen, dtype=torch.float64).to(yb.device)
            counts = torch.bincount(yb)
            total = counts if total is None else _add_counts(total, counts)
            if xs:
                xb, yb, kb = torch.cat([xs[0], xb]), torch.cat([ys[0], yb]), torch.cat([keys, kb])
            keep = _smallest_keys_per_class(yb, kb, int(cap))
            xs, ys, keys = [xb[keep]], [yb[keep]], kb[keep]
        if not xs:
            raise ValueError("fit_batches got no batches; pass an iterable of (x, y) pairs")
        x = torch.cat(xs) if len(xs) > 1 else xs[0]
        y = torch.cat(ys) if len(ys) > 1 else ys[0]
        self.fit(x, y)
        if total is not None:  # the prior counts every point seen, not only those kept
            k = self.num_classes
            total = torch.cat([total, total.new_zeros(max(0, k - total.numel()))])[:k]
            self.register_buffer("class_counts", total.to(self.class_counts.device))
        return self

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p_c(x_b)`` as ``(B, K)`` in ``promote_types(x.dtype, float32)``, on ``x``'s
        device; ``-inf`` across a row means "cannot say" (see the module docstring)."""
        self._check_fitted()
        x = as_tensor(x, "x passed to log_prob")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.dim}-dimensional data but got x of shape "
                f"{tuple(x.shape)}; flatten inputs to (B, {self.dim}) or apply the same feature map"
            )
        dtype = scoring_dtype(x.dtype)
        if x.shape[0] == 0:  # an empty batch (ExcludeIntrusion, GenMix's discard) scores to nothing
            return x.new_zeros(0, self.num_classes, dtype=dtype)
        out = self._log_prob(x if x.dtype == dtype else x.to(dtype))
        if out.dtype != dtype:
            out = out.to(dtype)
        if self.scores_are_clean:
            return out
        # NaN means "cannot say": treat as zero density so GenLabel falls back, never NaN
        return torch.nan_to_num(out, nan=-math.inf, posinf=torch.finfo(dtype).max, neginf=-math.inf)

    def update(self, x: Tensor, y: Tensor) -> Density:
        """Streaming estimation from a new batch; densities that support it override this."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming updates")

    # -- for subclasses ------------------------------------------------------------------

    def _fit(self, x: Tensor, y: Tensor) -> None:
        raise NotImplementedError

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Shape information stored in the state dict; extend to rebuild submodules."""
        return {
            "density": type(self).__name__,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "fitted": self.fitted,
        }

    def _build(self, config: dict[str, Any]) -> None:
        """Check :meth:`_config` against this instance and rebuild data-dependent submodules
        before their weights load; raise ValueError on a mismatch."""

    def _loaded(self) -> None:
        """Called after a state dict was loaded: rebuild derived (non-persistent) buffers."""

    def _touch(self) -> None:
        """Mark the fitted state as changed: converted copies of buffers are dropped."""
        self._state_version += 1
        self._cast_cache.clear()

    def cast(self, name: str, like: Tensor | torch.dtype) -> Tensor:
        """Buffer ``name`` in ``like``'s dtype (and device), converted once and cached.

        Scoring runs in the batch dtype while fitted buffers are float64; converting them on
        every call would cost more than the scoring itself for small batches. A cached copy
        is used only while its source is the very same buffer object (held by the cache, so
        its memory cannot be reused by another tensor), unmodified in place, and no fit,
        load or ``set_parameters`` happened since.
        """
        buf = self._buffers[name]
        dtype = like if isinstance(like, torch.dtype) else like.dtype
        device = buf.device if isinstance(like, torch.dtype) else like.device
        if buf.dtype == dtype and buf.device == device:
            return buf
        key = (name, dtype, device)
        hit = self._cast_cache.get(key)
        if is_compiling():
            # a tensor's _version cannot be guarded on: a compiled graph uses the copy made by
            # an eager call (fit, load and set_parameters bump the int it guards on), or
            # converts in the graph when there is none yet
            if hit is not None and hit[2] == self._state_version:
                return hit[3]
            return buf.to(device=device, dtype=dtype)
        if hit is None or hit[0] is not buf or hit[1] != buf._version or hit[2] != self._state_version:
            hit = (buf, buf._version, self._state_version, buf.to(device=device, dtype=dtype))
            self._cast_cache[key] = hit
        return hit[3]

    def follow_device(self, device: torch.device, user: str = "the density") -> None:
        """Move to ``device`` if needed: densities follow the batch, on whatever device it is.

        Refuses to use CUDA inside a DataLoader worker (forked workers cannot), saying what
        to do instead; ``user`` names the caller in that message.
        """
        # every fitted density has class_counts; walking all buffers each batch costs more
        current = self._buffers.get("class_counts")
        if current is None:
            current = next(iter(self.buffers()), None) or next(iter(self.parameters()), None)
        if current is None or current.device == device:
            return
        from torch.utils.data import get_worker_info

        if current.device.type == "cuda" and get_worker_info() is not None:
            raise RuntimeError(
                f"{user}'s density is on CUDA but is being used inside a DataLoader worker, where "
                "CUDA cannot run. Keep the density on the CPU for the collate_fn path, or mix and "
                "relabel on the GPU inside the training loop: `x, y = mix(x.cuda(), y.cuda())` or "
                "`mixkit.on_device(loader, mix, 'cuda')`."
            )
        self.to(device)

    # -- plumbing ------------------------------------------------------------------------

    def class_prior(self) -> Tensor:
        """Share of each class in the data the density was fitted on, ``(K,)``."""
        self._check_fitted()
        counts = self.class_counts.double()
        return counts / counts.sum()

    def _check_fit_input(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, int]:
        """``x`` detached and floating, ``y`` long ids on ``x``'s device, and the class count."""
        x = as_tensor(x, "x passed to fit")
        y = as_tensor(y, "class ids y passed to fit")
        if x.ndim != 2:
            raise ValueError(f"fit expects x of shape (N, d), got {tuple(x.shape)}; flatten it first")
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(
                f"fit expects class ids y of shape ({x.shape[0]},), got {tuple(y.shape)}; "
                "pass y.argmax(1) for soft labels"
            )
        y = as_class_ids(y, None, "class ids y passed to fit")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"fit expects class ids y of shape ({x.shape[0]},), got {tuple(y.shape)}")
        if x.shape[0] == 0:
            raise ValueError("fit got 0 samples; pass at least one sample per class")
        x = x.detach()  # a density stores statistics, never an autograd graph
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        check_finite(x, "x passed to fit")
        y = y.detach().to(x.device)
        k = self._given_num_classes
        if k is None:
            if int(y.min()) < 0:
                check_id_range(y, int(y.max()) + 1, "class ids y passed to fit")
            k = int(y.max()) + 1
        check_id_range(y, k, "class ids y passed to fit")
        counts = torch.bincount(y, minlength=k)
        low = (counts < self.min_samples_per_class).nonzero().flatten().tolist()
        if low:
            detail = ", ".join(f"class {c}: {int(counts[c])}" for c in low[:10])
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_samples_per_class} sample(s) per class "
                f"but got {detail}; drop or merge those classes, or pass num_classes only for classes "
                "that occur"
            )
        return x, y, k

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call .fit(x, y) or .load_state_dict(...) first"
            )

    def __getstate__(self) -> dict[str, Any]:
        # converted copies are rebuilt on demand: a pickled density (DataLoader workers,
        # deepcopy) does not carry them, nor the originals they hold alive
        state = self.__dict__.copy()
        state["_cast_cache"] = {}
        return state

    def get_extra_state(self) -> dict[str, Any]:
        return self._config()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self._extra_done:  # already applied before the buffers were loaded
            self._extra_done = False
            return
        saved_by = state.get("density") if isinstance(state, dict) else None
        if saved_by is None:
            raise ValueError(
                f"this state dict names no density class, so it cannot be loaded into a {type(self).__name__}; "
                "load a state saved by `density.state_dict()` of the same class"
            )
        if saved_by != type(self).__name__:
            raise ValueError(
                f"this state dict was saved by a {saved_by} density and cannot be loaded into a "
                f"{type(self).__name__}; build a {saved_by} with the same arguments to load it"
            )
        before = (self.num_classes, self.dim, self.fitted)
        self.num_classes = state.get("num_classes")
        self.dim = state.get("dim")
        self.fitted = bool(state.get("fitted", False))
        try:
            self._build(state)
        except Exception:
            self.num_classes, self.dim, self.fitted = before
            raise

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # the settings are checked (and submodules built) before anything changes, and the
        # fitted buffers, created by fit, get room in a fresh instance
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:
            self.set_extra_state(extra)
            self._extra_done = True
            if strict:  # buffers of an earlier fit that the loaded state does not have (another kernel...)
                for name in [n for n in self._buffers if n not in self._non_persistent_buffers_set]:
                    if prefix + name not in state_dict:
                        del self._buffers[name]
        device = next((b.device for b in self.buffers()), None)
        for key, value in state_dict.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if "." not in name and name != "_extra_state" and torch.is_tensor(value):
                current = self._buffers.get(name)
                if name in self._parameters:
                    continue
                if current is None or current.shape != value.shape or current.dtype != value.dtype:
                    self.register_buffer(name, torch.empty_like(value, device=device or value.device))
        try:
            super()._load_from_state_dict(
                state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
            )
        finally:
            self._extra_done = False
        self._touch()
        if self.fitted:
            self._loaded()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, fitted={self.fitted}"


# -- helpers of fit_batches -----------------------------------------------------------------


def _checked_batches(batches: Iterable[tuple[Tensor, Tensor]]):
    """``(x, y)`` pairs as detached floating ``(n, d)`` and long ids, with clear errors."""
    dim = None
    for i, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(
                f"fit_batches expects (x, y) pairs; batch {i} is a {type(batch).__name__}. "
                "Use mixkit.data.iter_batches to stream a Dataset or dict batches"
            )
        x = as_tensor(batch[0], "x").detach()
        y = as_tensor(batch[1], "y")
        if x.ndim != 2:
            raise ValueError(f"batch {i}: x must have shape (n, d), got {tuple(x.shape)}")
        if dim is not None and x.shape[1] != dim:
            raise ValueError(f"batch {i} has {x.shape[1]} features but the first had {dim}")
        dim = x.shape[1]
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(f"batch {i}: pass class ids, not soft labels (y.argmax(1))")
        y = as_class_ids(y, None, f"class ids of batch {i}").to(x.device)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"batch {i} has {x.shape[0]} samples but {y.shape[0]} class ids")
        if y.numel() and int(y.min()) < 0:
            check_id_range(y, int(y.max()) + 1, f"class ids of batch {i}")
        yield x, y


def _add_counts(a: Tensor, b: Tensor) -> Tensor:
    n = max(a.numel(), b.numel())
    return torch.cat([a, a.new_zeros(n - a.numel())]) + torch.cat([b, b.new_zeros(n - b.numel())])


def _smallest_keys_per_class(y: Tensor, keys: Tensor, cap: int) -> Tensor:
    """Indices of the (at most) ``cap`` smallest ``keys`` of every class (no loop over classes)."""
    order = torch.argsort(keys)
    order = order[torch.argsort(y[order], stable=True)]  # by class, by key within a class
    counts = torch.bincount(y)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(y.numel(), device=y.device) - starts[y[order]]
    return order[rank < cap]
