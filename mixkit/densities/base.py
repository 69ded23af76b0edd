"""The Density base class: a class-conditional density ``log p_c(x)`` for every class.

Contract (kept by every built-in and plugin density):

* ``fit(x, y) -> self``: ``x`` is ``(N, d)`` float, ``y`` class ids ``(N,)`` in ``[0, K)``;
* ``log_prob(x) -> (B, K)``: ``log p_c(x_b)`` in ``x``'s dtype, on ``x``'s device;
  never NaN (a value that cannot be computed is ``-inf``, which GenLabel handles);
* ``state_dict()/load_state_dict()``: a fitted density round-trips through
  ``torch.save``/``torch.load(weights_only=True)`` into a *fresh* instance built
  with the same constructor arguments;
* ``.to(device)``: it is an ``nn.Module``, so its tensors follow the module.

Subclasses implement :meth:`_fit` and :meth:`_log_prob`, store fitted tensors
with ``register_buffer`` (or as parameters of submodules) and may override
:meth:`_config` / :meth:`_build` when submodules depend on the data shape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixkit.batch import check_finite, check_labels


class NotFittedError(RuntimeError):
    """Raised when a density is used before ``fit`` (or ``load_state_dict``)."""


class Density(nn.Module):
    """Base class of class-conditional densities (see the module docstring for the contract)."""

    #: fewer samples than this in a class is an error at ``fit`` time
    min_samples_per_class: int = 1

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = None if num_classes is None else int(num_classes)
        self.dim: int | None = None
        self.fitted = False
        self._cast_cache: dict[tuple, tuple[int, int, Tensor]] = {}

    # -- the public contract -------------------------------------------------------------

    def fit(self, x: Tensor, y: Tensor) -> Density:
        """Estimate ``p_c`` for every class from ``x`` ``(N, d)`` and class ids ``y`` ``(N,)``."""
        x, y = self._check_fit_input(x, y)
        self.dim = x.shape[1]
        self.register_buffer("class_counts", torch.bincount(y, minlength=self.num_classes).to(x.device))
        self._fit(x, y)
        self.fitted = True
        return self

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p_c(x_b)`` as ``(B, K)``, in ``x``'s dtype and on ``x``'s device."""
        self._check_fitted()
        if not torch.is_tensor(x):
            x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.dim}-dimensional data but got x of shape "
                f"{tuple(x.shape)}; flatten inputs to (B, {self.dim}) or apply the same feature map"
            )
        if not x.is_floating_point():
            x = x.float()
        out = self._log_prob(x)
        # NaN means "cannot say": treat as zero density so GenLabel falls back, never NaN
        return torch.nan_to_num(out, nan=-torch.inf, posinf=torch.finfo(out.dtype).max, neginf=-torch.inf)

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
        return {"num_classes": self.num_classes, "dim": self.dim, "fitted": self.fitted}

    def _build(self, config: dict[str, Any]) -> None:
        """Rebuild data-dependent submodules from :meth:`_config` before their weights load."""

    def cast(self, name: str, like: Tensor | torch.dtype) -> Tensor:
        """Buffer ``name`` in ``like``'s dtype (and device), converted once and cached.

        Scoring runs in the batch dtype while fitted buffers are float64; converting them on
        every call would cost more than the scoring itself for small batches. The cache is
        keyed on the buffer's storage and version, so a refit or load is never served stale.
        """
        buf = self._buffers[name]
        dtype = like if isinstance(like, torch.dtype) else like.dtype
        device = buf.device if isinstance(like, torch.dtype) else like.device
        if buf.dtype == dtype and buf.device == device:
            return buf
        key = (name, dtype, device)
        stamp = (buf.data_ptr(), buf._version)
        hit = self._cast_cache.get(key)
        if hit is None or hit[:2] != stamp:
            hit = (*stamp, buf.to(device=device, dtype=dtype))
            self._cast_cache[key] = hit
        return hit[2]

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

    def _check_fit_input(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        if not torch.is_tensor(y):
            y = torch.as_tensor(y)
        if x.ndim != 2:
            raise ValueError(f"fit expects x of shape (N, d), got {tuple(x.shape)}; flatten it first")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"fit expects class ids y of shape ({x.shape[0]},), got {tuple(y.shape)}"
                + ("; pass y.argmax(1) for soft labels" if y.ndim == 2 else "")
            )
        if not x.is_floating_point():
            x = x.float()
        check_finite(x, "x passed to fit")
        if y.is_floating_point() and bool((y == y.round()).all()):
            y = y.long()
        if self.num_classes is None:
            check_labels(y, int(y.max()) + 1 if y.numel() else 1)
            self.num_classes = int(y.max()) + 1
        check_labels(y, self.num_classes)
        counts = torch.bincount(y, minlength=self.num_classes)
        low = (counts < self.min_samples_per_class).nonzero().flatten().tolist()
        if low:
            detail = ", ".join(f"class {c}: {int(counts[c])}" for c in low[:10])
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_samples_per_class} sample(s) per class "
                f"but got {detail}; drop or merge those classes, or pass num_classes only for classes "
                "that occur"
            )
        return x, y

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call .fit(x, y) or .load_state_dict(...) first"
            )

    def get_extra_state(self) -> dict[str, Any]:
        return self._config()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.num_classes = state.get("num_classes")
        self.dim = state.get("dim")
        self.fitted = bool(state.get("fitted", False))
        self._build(state)

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        # fitted buffers are created by fit; make room for them in a fresh instance
        device = next((b.device for b in self.buffers()), None)
        for key, value in state_dict.items():
            if "." not in key and key != "_extra_state" and torch.is_tensor(value):
                current = self._buffers.get(key)
                if current is None or current.shape != value.shape or current.dtype != value.dtype:
                    self.register_buffer(key, torch.empty_like(value, device=device or value.device))
        extra = state_dict.get("_extra_state")
        if extra is not None:
            self.set_extra_state(extra)  # builds submodules before their weights are loaded
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}, fitted={self.fitted}"
