"""Synthetic 2D/3D datasets of the GenLabel paper (appendix E.1).

Every generator returns ``(x, y)``: ``x`` float32 ``(N, d)``, ``y`` int64 ``(N,)`` with
classes ``0..K-1``, rows shuffled. Randomness comes from ``seed``: an int (the same int
gives the same data), a ``torch.Generator`` (drawn from, so successive calls differ), or
``None`` (seeded from torch's global RNG, so ``torch.manual_seed`` makes a run repeat).
Draws are made in float64 on the CPU and cast at the end, so a seed gives the same data
on every machine.

Use a different seed for a test set than for its training set: the same seed returns
the same points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mixkit.random import make_generator

Seed = int | torch.Generator | None

__all__ = [
    "SYNTHETIC",
    "circle",
    "cube2d",
    "cube3d",
    "cube_centers",
    "gaussian9",
    "gaussian9_means",
    "gaussians",
    "load_synthetic",
    "make_circles",
    "make_moons",
    "moon",
    "two_circle",
]


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return make_generator(seed)


def _laplace(shape: tuple[int, ...], scale: float, gen: torch.Generator) -> Tensor:
    """Laplace(0, scale) draws as scale * (E1 - E2), E exponential(1).

    Written with uniforms in (0, 1] rather than the inverse CDF so that no draw can hit
    log(0); ``torch.distributions.Laplace`` takes no generator.
    """
    u1 = 1.0 - torch.rand(shape, dtype=torch.float64, generator=gen)
    u2 = 1.0 - torch.rand(shape, dtype=torch.float64, generator=gen)
    return scale * (torch.log(u2) - torch.log(u1))


def _shuffle(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(x.shape[0], generator=gen)
    return x[perm].to(torch.float32).contiguous(), y[perm].to(torch.int64).contiguous()


def make_circles(
    n: int = 100, *, factor: float = 0.8, noise: float = 0.0, seed: Seed = None
) -> tuple[Tensor, Tensor]:
    """scikit-learn's ``make_circles`` with Laplace noise of scale ``noise``.

    Outer circle of radius 1 is class 0 (``n // 2`` points), inner circle of radius
    ``factor`` class 1; points evenly spaced in angle as in scikit-learn.
    """
    if not 0 <= factor < 1:
        raise ValueError(f"factor must be in [0, 1), got {factor}")
    gen = _generator(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = torch.linspace(0, 2 * math.pi, n_out + 1, dtype=torch.float64)[:-1]  # endpoint=False
    t_in = torch.linspace(0, 2 * math.pi, n_in + 1, dtype=torch.float64)[:-1]
    x = torch.cat(
        [
            torch.stack([torch.cos(t_out), torch.sin(t_out)], dim=1),
            factor * torch.stack([torch.cos(t_in), torch.sin(t_in)], dim=1),
        ]
    )
    y = torch.cat([torch.zeros(n_out, dtype=torch.int64), torch.ones(n_in, dtype=torch.int64)])
    if noise > 0:
        x = x + _laplace(tuple(x.shape), noise, gen)
    return _shuffle(x, y, gen)


def make_moons(n: int = 100, *, noise: float = 0.0, seed: Seed = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's ``make_moons`` with Laplace noise of scale ``noise``.

    Upper half circle (centre (0, 0)) is class 0, lower one (centre (1, 0.5)) class 1.
    """
    gen = _generator(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
    t_in = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
    x = torch.cat(
        [
            torch.stack([torch.cos(t_out), torch.sin(t_out)], dim=1),
            torch.stack([1 - torch.cos(t_in), 1 - torch.sin(t_in) - 0.5], dim=1),
        ]
    )
    y = torch.cat([torch.zeros(n_out, dtype=torch.int64), torch.ones(n_in, dtype=torch.int64)])
    if noise > 0:
        x = x + _laplace(tuple(x.shape), noise, gen)
    return _shuffle(x, y, gen)


def circle(
    n: int = 1000, *, noise: float = 0.02, factor: float = 0.8, seed: Seed = None
) -> tuple[Tensor, Tensor]:
    """Circle (Table 1): ``make_circles`` + Laplace noise, scale ("decay") 0.02; 2 classes."""
    return make_circles(n, factor=factor, noise=noise, seed=seed)


def moon(n: int = 1000, *, noise: float = 0.1, seed: Seed = None) -> tuple[Tensor, Tensor]:
    """Moon (Table 1): ``make_moons`` + Laplace noise, scale ("decay") 0.1; 2 classes."""
    return make_moons(n, noise=noise, seed=seed)


def two_circle(
    n: int = 1000,
    *,
    noise: float = 0.01,
    shift: float = 3.0,
    factor: float = 0.8,
    seed: Seed = None,
) -> tuple[Tensor, Tensor]:
    """Two-circle (Table 1, Fig. 6): two circle sets side by side with flipped labels.

    ``n`` points per circle set (``2 * n`` in all). The second set is an independent
    realization shifted right by ``shift`` with labels flipped, so its outer ring is
    class 1 and its inner ring class 0. Each set spans about ``[-1, 1]`` in x, so
    ``shift=3`` leaves a gap of about 1 between the two outer rings: adjacent (mixing
    across the sets lands on the other set's rings), never overlapping (noise of scale
    0.01 would need a ~50-sigma draw to cross).
    """
    gen = _generator(seed)
    x1, y1 = make_circles(n, factor=factor, noise=noise, seed=gen)
    x2, y2 = make_circles(n, factor=factor, noise=noise, seed=gen)
    x2 = x2 + torch.tensor([shift, 0.0], dtype=x2.dtype)
    return _shuffle(torch.cat([x1, x2]), torch.cat([y1, 1 - y2]), gen)


def cube_centers(dim: int) -> Tensor:
    """Centres of the ``2**dim`` unit-side-2 cubes around the origin, one per class.

    Class ``i`` has centre coordinates in {-1, 1} in ``itertools.product`` order, first
    coordinate most significant: class 0 is (-1, ..., -1), class ``2**dim - 1`` is (1, ..., 1).
    """
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=dim)), dtype=torch.float32)


def _cubes(dim: int, n_per_class: int, seed: Seed) -> tuple[Tensor, Tensor]:
    gen = _generator(seed)
    centers = cube_centers(dim).to(torch.float64)
    k = centers.shape[0]
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = centers[y] + 2 * torch.rand(k * n_per_class, dim, dtype=torch.float64, generator=gen) - 1
    return _shuffle(x, y, gen)


def cube2d(n_per_class: int = 20, *, seed: Seed = None) -> tuple[Tensor, Tensor]:
    """2D cube: class 0 uniform on the square of side 2 centred (-1, 0), class 1 on (1, 0).

    The paper trains on 20 points per class and tests on 10000 per class.
    """
    gen = _generator(seed)
    centers = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.arange(2).repeat_interleave(n_per_class)
    x = centers[y] + 2 * torch.rand(2 * n_per_class, 2, dtype=torch.float64, generator=gen) - 1
    return _shuffle(x, y, gen)


def cube3d(n_per_class: int = 20, *, seed: Seed = None) -> tuple[Tensor, Tensor]:
    """3D cube: 8 classes, uniform on the cubes of side 2 in the 8 octants.

    Class ``i`` sits at ``cube_centers(3)[i]`` (class 0 at (-1, -1, -1)).
    """
    return _cubes(3, n_per_class, seed)


def gaussians(
    means: Tensor | Sequence[Sequence[float]],
    cov: float | Tensor | Sequence,
    n_per_class: int,
    *,
    seed: Seed = None,
) -> tuple[Tensor, Tensor]:
    """Class ``c`` drawn from N(``means[c]``, cov), ``n_per_class`` points each.

    ``cov``: a scalar variance (``cov * I``), a ``(d,)`` diagonal, a shared ``(d, d)``
    matrix, or per-class ``(K, d, d)`` matrices.
    """
    gen = _generator(seed)
    mu = torch.as_tensor(means, dtype=torch.float64)
    if mu.ndim != 2:
        raise ValueError(f"means must be (K, d), got shape {tuple(mu.shape)}")
    k, d = mu.shape
    c = torch.as_tensor(cov, dtype=torch.float64)
    if c.ndim == 0:
        c = c * torch.eye(d, dtype=torch.float64)
    elif c.ndim == 1:
        c = torch.diag(c)
    if c.ndim == 2 and tuple(c.shape) == (d, d):
        c = c.expand(k, d, d)
    if tuple(c.shape) != (k, d, d):
        raise ValueError(f"cov must be scalar, (d,), (d, d) or (K, d, d); got {tuple(c.shape)}")
    chol = torch.linalg.cholesky(c)  # raises on a non positive-definite covariance
    y = torch.arange(k).repeat_interleave(n_per_class)
    z = torch.randn(k * n_per_class, d, dtype=torch.float64, generator=gen)
    x = mu[y] + torch.einsum("nij,nj->ni", chol[y], z)
    return _shuffle(x, y, gen)


def gaussian9_means() -> Tensor:
    """Centres of the 9-class Gaussian data, ``(9, 2)``: {-10, 0, 10}^2, class 0 at (-10, -10),
    class 1 at (-10, 0), ..., class 8 at (10, 10)."""
    return torch.tensor(list(itertools.product((-10.0, 0.0, 10.0), repeat=2)), dtype=torch.float32)


def gaussian9(
    n_per_class: int = 5000, *, variance: float = 0.1, seed: Seed = None
) -> tuple[Tensor, Tensor]:
    """9-class Gaussian (Fig. 6): covariance ``0.1 * I`` around ``gaussian9_means()``."""
    return gaussians(gaussian9_means(), variance, n_per_class, seed=seed)


SYNTHETIC: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "circle": circle,
    "moon": moon,
    "two_circle": two_circle,
    "cube2d": cube2d,
    "cube3d": cube3d,
    "gaussian9": gaussian9,
}


def load_synthetic(name: str, n: int | None = None, seed: Seed = None) -> tuple[Tensor, Tensor]:
    """The synthetic dataset ``name`` (a key of ``SYNTHETIC``).

    ``n`` is the generator's own size argument (``None``: the paper's training size):
    total points for circle/moon, points per circle set for two_circle, points per
    class for the cubes and gaussian9.
    """
    key = name.lower().replace("-", "_")
    if key not in SYNTHETIC:
        raise KeyError(f"unknown synthetic dataset {name!r}; choose from {sorted(SYNTHETIC)}")
    fn = SYNTHETIC[key]
    return fn(seed=seed) if n is None else fn(n, seed=seed)
