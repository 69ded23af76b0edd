"""Seeded random draws and the seeds of every process: every draw takes a ``torch.Generator``.

Draws are made on the CPU and moved to the batch's device: they are a few
numbers per batch, and it keeps seeded runs identical on every device.

**Which stream a process draws** (one rule for every mixkit component):

* an explicit seed wins: the stream is that seed on rank 0 in the main process
  and ``derive_seed(seed, rank, worker)`` everywhere else, so a seeded run
  repeats exactly while DDP ranks and DataLoader workers still differ;
* without a seed, the stream is drawn from torch's global RNG (so
  ``torch.manual_seed`` / ``lightning.seed_everything`` repeat a run) and then
  derived with the rank and worker id, because those tools seed every rank,
  and DataLoader seeds every rank's workers, alike.

This is the rule of every mixer's generator (``make_generator(seed,
per_process=True)``); data generation (``make_generator(seed)``: synthetic
sets, ``genmix_dataset``) keeps the seed as given, so every rank builds the
same data. :class:`mixkit.MixCollate` refines the rule for DataLoader workers
(see :mod:`mixkit.collate`).

The rank is :func:`current_rank`: ``torch.distributed``'s when a process group
is initialised, else the ``RANK`` environment variable that torchrun and
Lightning set, else 0.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import get_worker_info

_SEED_MASK = (1 << 63) - 1


def derive_seed(*parts: int | str | None) -> int:
    """A 63-bit seed hashed from ``parts`` (ints, strings): equal parts give equal seeds."""
    digest = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _SEED_MASK


def current_rank() -> int:
    """The global rank of this process: torch.distributed's, else ``$RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", 0))
    except ValueError:
        return 0


def current_worker() -> int | None:
    """The DataLoader worker id of this process, ``None`` in the main process."""
    info = get_worker_info()
    return None if info is None else info.id


def process_seed(seed: int | None = None) -> int:
    """The seed of this process's stream under the module's rule (see the module docstring)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    rank, worker = current_rank(), current_worker()
    if rank == 0 and worker is None:
        return int(seed)
    return derive_seed(int(seed), rank, worker)


def make_generator(seed: int | None = None, *, per_process: bool = False) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or from torch's global RNG when ``None``.

    Args:
        seed: the seed; ``None`` draws one from torch's global RNG, so
            ``torch.manual_seed(s)`` makes the whole run repeat.
        per_process: derive the stream per DDP rank and DataLoader worker (see the
            module docstring). Every mixer's own generator is made this way
            (:attr:`mixkit.Mixer.generator`), so mixers, manifold mixup and
            ``OnlineGenLabel`` get rank-aware streams by default. Off by default
            here because data generation (synthetic sets, ``genmix_dataset``) must
            give the same data on every rank.
    """
    if per_process:
        return torch.Generator().manual_seed(process_seed(seed))
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return torch.Generator().manual_seed(int(seed))


def sample_gamma(shape: float | Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws from Gamma(shape, 1) in float64 (Marsaglia & Tsang), seeded by ``generator``."""
    shape_t = torch.as_tensor(shape, dtype=torch.float64).expand(n).clone()
    boost = shape_t < 1  # Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1
    a = torch.where(boost, shape_t + 1, shape_t)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while todo.numel():  # accepts ~96% per round for a >= 1, so two or three rounds at most
        z = torch.randn(todo.numel(), dtype=torch.float64, generator=generator)
        u = torch.rand(todo.numel(), dtype=torch.float64, generator=generator)
        v = (1 + c[todo] * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d[todo] - d[todo] * v + d[todo] * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = (d[todo] * v)[ok]
        todo = todo[~ok]
    if bool(boost.any()):
        u = torch.rand(n, dtype=torch.float64, generator=generator)
        out = torch.where(boost, out * u.clamp_min(1e-300) ** (1.0 / shape_t), out)
    return out


# Below this shape, Gamma draws underflow to 0 often enough (U^(1/a) < 1e-308) that the
# ratio G_a / (G_a + G_b) degenerates (an atom at 0.5); the log-space path is exact there.
_LOG_SPACE_BELOW = 0.25
# Concentration tensors per (alpha, beta, n): building one costs more than the draw itself.
_CONCENTRATION: dict[tuple[float, float, int], Tensor] = {}
_CACHE_LIMIT = 64


def _concentration(alpha: float, beta: float, n: int) -> Tensor:
    key = (alpha, beta, n)
    conc = _CONCENTRATION.get(key)
    if conc is None:
        if len(_CONCENTRATION) >= _CACHE_LIMIT:
            _CONCENTRATION.clear()
        conc = torch.tensor([[alpha, beta]], dtype=torch.float64).expand(n, 2).contiguous()
        _CONCENTRATION[key] = conc
    return conc


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws from Beta(alpha, beta) in float64, seeded by ``generator``.

    One native Dirichlet op on a cached ``(n, 2)`` concentration for ordinary
    parameters; for parameters below 0.25 the draw is made in log space,
    ``lam = sigmoid(log G_a - log G_b)`` with ``log G_a = log G_{a+1} + log(U) / a``,
    which keeps the distribution right down to alpha = 1e-6 (draws that are
    closer to 0 or 1 than float64 resolves become exactly 0 or 1).
    """
    alpha, beta = float(alpha), float(beta)
    if not (alpha > 0 and beta > 0) or alpha == float("inf") or beta == float("inf"):
        raise ValueError(f"Beta parameters must be positive finite numbers, got alpha={alpha}, beta={beta}")
    if min(alpha, beta) < _LOG_SPACE_BELOW:
        return _sample_beta_log(alpha, beta, n, generator)
    if _dirichlet is not None:
        return _dirichlet(_concentration(alpha, beta, n), generator=generator)[:, 0]
    return _sample_beta_gamma(alpha, beta, n, generator)


# torch's own samplers take a generator but are not public API: fall back if they go
_dirichlet = getattr(torch, "_sample_dirichlet", None)
_standard_gamma = getattr(torch, "_standard_gamma", None)


def _log_gamma(shape: float, n: int, generator: torch.Generator | None) -> Tensor:
    """``log G`` for ``G ~ Gamma(shape)``, ``shape < 1``, without underflow."""
    boosted = (
        _standard_gamma(torch.full((n,), shape + 1.0, dtype=torch.float64), generator=generator)
        if _standard_gamma is not None else sample_gamma(shape + 1.0, n, generator)
    )
    u = torch.rand(n, dtype=torch.float64, generator=generator).clamp_min(torch.finfo(torch.float64).tiny)
    return boosted.log() + u.log() / shape


def _sample_beta_log(alpha: float, beta: float, n: int, generator: torch.Generator | None) -> Tensor:
    la = _log_gamma(alpha, n, generator) if alpha < 1 else sample_gamma(alpha, n, generator).log()
    lb = _log_gamma(beta, n, generator) if beta < 1 else sample_gamma(beta, n, generator).log()
    return torch.sigmoid(la - lb)


def _sample_beta_gamma(alpha: float, beta: float, n: int, generator: torch.Generator | None) -> Tensor:
    ga = sample_gamma(alpha, n, generator)
    gb = sample_gamma(beta, n, generator)
    total = ga + gb
    # both gammas can underflow to 0 for tiny alpha; then the draw is a fair coin flip
    coin = (torch.rand(n, dtype=torch.float64, generator=generator) < 0.5).double()
    return torch.where(total > 0, ga / total.clamp_min(1e-300), coin)


__all__ = ["current_rank", "current_worker", "derive_seed", "make_generator", "process_seed", "sample_beta",
           "sample_gamma"]
