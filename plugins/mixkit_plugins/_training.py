"""Helpers shared by the first-party density plugins (flow, vae, gan).

Written against torch only, so that importing a plugin module stays cheap:
seeding (a ``seed`` constructor argument drives every random draw of a fit),
lazy imports of optional dependencies with an actionable error, a stratified
held-out split, a minibatch training loop with early stopping on the
held-out loss, an optional tqdm progress bar, and numeric guards for scores.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from mixkit import Density


def require(module: str, extra: str, package: str, density: str) -> ModuleType:
    """Import an optional dependency, or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {density!r} density needs {package}, which is not installed; "
            f'install it with: pip install "mixkit[{extra}]"'
        ) from exc


def resolve_seed(seed: int | None) -> int:
    """``seed`` itself, or a seed drawn from torch's global RNG (so ``torch.manual_seed`` repeats a run)."""
    if seed is None:
        return int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return int(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: draws are made on the CPU and moved, so a seed means the same on every device."""
    return torch.Generator().manual_seed(int(seed) % 2**63)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run module construction under ``torch.manual_seed(seed)`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) % 2**63)
        yield


def randn(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal draws from ``generator`` (CPU), in ``like``'s dtype and on its device."""
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def buffer_device(module: nn.Module) -> torch.device | None:
    """Device of the module's first buffer or parameter, ``None`` for an empty module."""
    for tensor in module.buffers():
        return tensor.device
    for tensor in module.parameters():
        return tensor.device
    return None


def freeze(module: nn.Module) -> nn.Module:
    """Fitted weights are data, not trainable parameters: scores stay differentiable in ``x`` only."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def standardization(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and standard deviation (computed in float64, floored for constant features)."""
    x64 = x.double()
    mean = x64.mean(0)
    std = x64.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(mean)
    scale = float(std.max()) if std.numel() else 1.0
    std = std.clamp_min(max(scale, 1.0) * 1e-6)
    return mean.float(), std.float()


def stratified_split(
    y: Tensor, num_classes: int, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random held-out split keeping about ``fraction`` of every class (CPU index tensors).

    Every class keeps at least one training sample; a class too small to spare
    one for validation contributes none.
    """
    y = y.cpu()
    n = y.numel()
    perm = torch.randperm(n, generator=generator)
    ys, order = torch.sort(y[perm], stable=True)
    perm = perm[order]
    counts = torch.bincount(ys, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[ys]
    n_val = torch.minimum(torch.floor(counts.double() * fraction).long(), (counts - 1).clamp_min(0))
    is_val = rank < n_val[ys]
    return perm[~is_val], perm[is_val]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool | None, desc: str) -> Any:
    """A tqdm bar when ``enabled`` (``None``: only when stderr is a terminal) and tqdm is installed."""
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_minibatch(
    module: nn.Module,
    train_loss: Callable[[Tensor, Tensor, torch.Generator, int], Tensor],
    val_loss: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int,
    val_fraction: float,
    max_epochs: int,
    patience: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    progress: bool | None,
    desc: str,
    clip_grad: float = 10.0,
    min_epochs: int = 0,
) -> dict[str, Any]:
    """Train ``module`` with Adam on minibatches, early-stopped on a stratified held-out split.

    ``train_loss(xb, yb, generator, epoch)`` returns the mean loss of a
    minibatch (it may draw noise from ``generator``); ``val_loss(x, y)`` the
    mean held-out loss, deterministic. The weights of the best held-out epoch
    are restored; epochs before ``min_epochs`` (a warm-up) never stop training.
    With no held-out points (``val_fraction=0`` or tiny classes), it trains
    ``max_epochs`` epochs and keeps the last weights. Returns a small history.
    """
    generator = make_generator(seed)
    train_idx, val_idx = stratified_split(y, num_classes, val_fraction, generator)
    device = x.device
    x_tr, y_tr = x[train_idx.to(device)], y[train_idx.to(device)]
    x_va, y_va = x[val_idx.to(device)], y[val_idx.to(device)]
    n = x_tr.shape[0]
    batch_size = max(1, min(int(batch_size), n))
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch, bad_epochs = math.inf, None, -1, 0
    history: dict[str, Any] = {"train_loss": [], "val_loss": []}
    bar = progress_bar(max_epochs, progress, desc)
    module.train()
    try:
        for epoch in range(max_epochs):
            perm = torch.randperm(n, generator=generator).to(device)
            total, diverged = 0.0, False
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                loss = train_loss(x_tr[idx], y_tr[idx], generator, epoch)
                if not torch.isfinite(loss):
                    diverged = True
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad:
                    nn.utils.clip_grad_norm_(params, clip_grad)
                optimizer.step()
                total += float(loss.detach()) * idx.numel()
            if diverged:
                warnings.warn(
                    f"{desc}: the training loss became non-finite at epoch {epoch}; keeping the "
                    "best weights so far (lower lr, or check the data for extreme values)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            history["train_loss"].append(total / n)
            postfix = {"train": f"{total / n:.3f}"}
            if x_va.shape[0]:
                module.eval()
                with torch.no_grad():
                    current = float(val_loss(x_va, y_va))
                module.train()
                history["val_loss"].append(current)
                postfix["val"] = f"{current:.3f}"
                improved = best_state is None or current < best - 1e-4 * abs(best)
                if epoch + 1 < min_epochs:
                    pass  # warm-up: neither kept nor counted
                elif math.isfinite(current) and improved:
                    best, best_state, best_epoch, bad_epochs = current, snapshot(module), epoch, 0
                else:
                    bad_epochs += 1
            bar.set_postfix(**postfix)
            bar.update()
            if x_va.shape[0] and bad_epochs >= patience:
                break
    finally:
        bar.close()
        module.eval()
    if best_state is not None:
        module.load_state_dict(best_state)
    history.update(best_epoch=best_epoch, epochs=len(history["train_loss"]), best_val_loss=best)
    return history


def floor_scores(out: Tensor) -> Tensor:
    """The last guard of a score: NaN becomes -inf ("cannot say"), +inf the largest finite value.

    A score too negative for its dtype stays -inf rather than being floored to the dtype's
    lowest value: flooring every class there gave a uniform label, a confident wrong answer,
    where GenLabel should fall back.
    """
    return torch.nan_to_num(out, nan=-math.inf, neginf=-math.inf, posinf=torch.finfo(out.dtype).max)


def score_dtype(x: Tensor) -> torch.dtype:
    """The dtype a score of ``x`` is returned in: ``x``'s, at least float32 (half precision
    overflows at 65504, which is an ordinary log-density far from the data)."""
    return torch.promote_types(x.dtype, torch.float32)


def mlp(inputs: int, outputs: int, hidden: int, layers: int, act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` with activation ``act``, then a linear output."""
    mods: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), act()]
        width = hidden
    mods.append(nn.Linear(width, outputs))
    return nn.Sequential(*mods)


def one_hot_all_classes(b: int, k: int, like: Tensor) -> Tensor:
    """Context rows for ``x.repeat_interleave(k, 0)``: one-hot class 0..k-1 for each of ``b`` samples."""
    return torch.eye(k, dtype=like.dtype, device=like.device).repeat(b, 1)


class NeuralDensity(Density):
    """A density whose network is built at fit time from the data's shape.

    Subclasses name their architecture arguments in ``architecture``, the attribute that
    holds the network in ``network_attr``, and implement ``_make_network``; the state dict
    then records what is needed to rebuild the network in a fresh instance before its
    weights are loaded.
    """

    architecture: tuple[str, ...] = ()
    network_attr = "net"
    fitted_seed: int | None = None

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__(num_classes)
        self._num_classes_arg = self.num_classes  # None: inferred again at every fit

    def fit(self, x: Tensor, y: Tensor) -> NeuralDensity:
        """Fit on ``x`` ``(N, d)`` and ``y`` ``(N,)``; a refit may see another class count (unless
        ``num_classes`` was given), and ``x`` is detached: no autograd graph is stored."""
        self.num_classes = self._num_classes_arg
        if torch.is_tensor(x):
            x = x.detach()
        return super().fit(x, y)

    def _make_network(self, dim: int, num_classes: int, seed: int) -> nn.Module:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        arch = {name: getattr(self, name) for name in self.architecture}
        return {**super()._config(), **arch, "fitted_seed": self.fitted_seed}

    def _build(self, config: dict[str, Any]) -> None:
        for name in self.architecture:
            if name in config and config[name] != getattr(self, name):
                raise ValueError(
                    f"state was saved with {name}={config[name]!r} but this density has "
                    f"{name}={getattr(self, name)!r}; construct it with the same arguments"
                )
        self.fitted_seed = config.get("fitted_seed")
        if config.get("fitted") and self.dim is not None and self.num_classes is not None:
            net = self._make_network(self.dim, self.num_classes, int(self.fitted_seed or 0))
            setattr(self, self.network_attr, freeze(net.to(buffer_device(self) or "cpu")))
