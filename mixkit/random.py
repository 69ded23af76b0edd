"""Seeded random draws: every draw takes a ``torch.Generator``.

Draws are made on the CPU and moved to the batch's device: they are a few
numbers per batch, and it keeps seeded runs identical on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor


def make_generator(seed: int | None = None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or from torch's global RNG when ``None``.

    Seeding from the global RNG means ``torch.manual_seed(s)`` makes the whole run repeat.
    """
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


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws from Beta(alpha, beta) in float64, seeded by ``generator``."""
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"Beta parameters must be positive, got alpha={alpha}, beta={beta}")
    if _dirichlet is not None:
        # one native op (~10 us) instead of a rejection loop of many small ops on every batch
        conc = torch.tensor([[float(alpha), float(beta)]], dtype=torch.float64).expand(n, 2)
        draw = _dirichlet(conc, generator=generator)[:, 0]
        if bool(torch.isfinite(draw).all()):
            return draw
    return _sample_beta_gamma(alpha, beta, n, generator)


# torch's own Dirichlet sampler takes a generator but is not public API: fall back if it goes
_dirichlet = getattr(torch, "_sample_dirichlet", None)


def _sample_beta_gamma(alpha: float, beta: float, n: int, generator: torch.Generator | None) -> Tensor:
    ga = sample_gamma(alpha, n, generator)
    gb = sample_gamma(beta, n, generator)
    total = ga + gb
    # both gammas can underflow to 0 for tiny alpha; then the draw is a fair coin flip
    coin = (torch.rand(n, dtype=torch.float64, generator=generator) < 0.5).double()
    return torch.where(total > 0, ga / total.clamp_min(1e-300), coin)
