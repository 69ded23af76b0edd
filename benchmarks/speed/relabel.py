"""Relabeling: each density's ``log_prob`` and GenLabel's relabel against the arithmetic they must do.

Floors (timed in the same run, same dtype and device):

* Gaussian full/tied: the cheaper of the two GEMMs that score every class, ``(B, d) @ (d, K*d)``
  (whitening) and ``(B, d(d+1)/2 + d) @ (., K)`` (quadratic features);
* Gaussian diag/spherical: ``(B, 2d) @ (2d, K)`` (the features ``[x^2, x]``);
* KDE: the kernel sum, ``(B, d) @ (d, K*n)`` and a log-sum-exp over the ``n`` points of each class.
"""

from __future__ import annotations

import time

import torch

import mixkit
from benchmarks.speed.timing import row, timeit


def _data(n: int, d: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    return torch.randn(n, d, generator=g) + 2 * torch.randn(k, d, generator=g)[y], y


def _floor(kind: str, b: int, d: int, k: int, n_per_class: int, device: torch.device, budget: float) -> float:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(b, d, generator=g).to(device)
    if kind == "full":
        w = torch.randn(d, k * d, generator=g).to(device)
        t = d * (d + 1) // 2 + d
        feats = torch.randn(b, t, generator=g).to(device)
        wq = torch.randn(t, k, generator=g).to(device)
        return min(timeit(lambda: x @ w, device, budget), timeit(lambda: feats @ wq, device, budget))
    if kind == "diag":
        x2 = torch.randn(b, 2 * d, generator=g).to(device)
        w = torch.randn(2 * d, k, generator=g).to(device)
        return timeit(lambda: x2 @ w, device, budget)
    pts = torch.randn(d, k * n_per_class, generator=g).to(device)
    return timeit(lambda: torch.logsumexp((x @ pts).view(b, k, n_per_class), 2), device, budget)


def density_rows(device: torch.device, budget: float, quick: bool) -> list[dict]:
    """log_prob and relabel time of gaussian (full, diag) and kde over a grid of (d, K, B)."""
    dims = (2, 20, 512) if quick else (2, 20, 128, 512)
    classes = (10,) if quick else (10, 100)
    batches = (128,) if quick else (128, 1024)
    densities = {
        "gaussian full": ("full", {"density": "gaussian", "covariance": "full", "reg_covar": 1e-3}),
        "gaussian diag": ("diag", {"density": "gaussian", "covariance": "diag"}),
        "kde (200 pts/class)": ("kde", {"density": "kde", "bandwidth": "scott", "max_points_per_class": 200}),
    }
    rows = []
    for d in dims:
        for k in classes:
            x, y = _data(max(2000, 200 * k), d, k, seed=d * 1000 + k)
            for label, (kind, kwargs) in densities.items():
                kwargs = dict(kwargs)
                # the lean hot path (no per-batch value checks, no counts): what is being measured
                gl = mixkit.GenLabel(kwargs.pop("density"), validate=False, diagnostics=False, **kwargs).fit(x, y)
                gl.density.to(device)
                n_pc = 200
                for b in batches:
                    idx = torch.randint(0, x.shape[0], (b,), generator=torch.Generator().manual_seed(b))
                    batch = mixkit.Mixup(num_classes=k, seed=0)(x[idx].to(device), y[idx].to(device))
                    lp = timeit(lambda gl=gl, mb=batch: gl.density.log_prob(mb.x), device, budget, repeats=3)
                    rl = timeit(lambda gl=gl, mb=batch: gl(mb), device, budget, repeats=3)
                    fl = _floor(kind, b, d, k, n_pc, device, budget)
                    case = f"d={d}, K={k}, B={b}"
                    rows.append(row("density", case, label, rl, log_prob_us=lp * 1e6, floor_us=fl * 1e6,
                                    log_prob_vs_floor=lp / fl, relabel_vs_floor=rl / fl, d=d, K=k, B=b))
    return rows


def neural_rows(device: torch.device, budget: float, quick: bool) -> list[dict]:
    """The plugin densities (flow, vae, gan) at low dimension, K = 10, where they are meant to run."""
    available = mixkit.available("density")
    rows = []
    for d in ((2,) if quick else (2, 20)):
        x, y = _data(2000, d, 10, seed=d)
        for name in ("flow", "vae", "gan"):
            if name not in available:
                continue
            gl = mixkit.GenLabel(name).fit(x, y)
            gl.density.to(device)
            for b in ((128,) if quick else (128, 1024)):
                idx = torch.randint(0, x.shape[0], (b,), generator=torch.Generator().manual_seed(b))
                batch = mixkit.Mixup(num_classes=10, seed=0)(x[idx].to(device), y[idx].to(device))
                rl = timeit(lambda gl=gl, mb=batch: gl(mb), device, budget, repeats=2)
                rows.append(row("neural", f"d={d}, K=10, B={b}", name, rl, d=d, B=b))
    return rows


def fit_rows(quick: bool) -> list[dict]:
    """Fit time by n (d = 20, K = 10) on the CPU, where densities are fitted."""
    rows = []
    for n in ((1000, 10000) if quick else (1000, 10000, 50000)):
        x, y = _data(n, 20, 10, seed=n)
        for label, kwargs in (("gaussian full", {"covariance": "full"}), ("gaussian diag", {"covariance": "diag"}),
                              ("kde (default bandwidth)", {})):
            name = "kde" if label.startswith("kde") else "gaussian"
            density = mixkit.create_density(name, **kwargs)
            start = time.perf_counter()
            density.fit(x, y)
            rows.append(row("fit", f"n={n}, d=20, K=10", label, time.perf_counter() - start, n=n))
    return rows


def relabel_vs_matmul(device: torch.device, budget: float) -> dict:
    """The acceptance case: GenLabel(gaussian full) at K=10, d=20, B=128 against the bare GEMM.

    Timed lean (``validate=False, diagnostics=False``: the hot path itself, and what an
    accelerator gets apart from the diagnostics, which are sync-free there) and at the
    defaults (on the CPU: value checks of every batch, and the changed/fallback counts).
    """
    x, y = _data(2000, 20, 10, seed=3)
    lean = mixkit.GenLabel("gaussian", covariance="full", validate=False, diagnostics=False).fit(x, y)
    default = mixkit.GenLabel("gaussian", covariance="full").fit(x, y)
    for gl in (lean, default):
        gl.density.to(device)
    batch = mixkit.Mixup(num_classes=10, seed=0)(x[:128].to(device), y[:128].to(device))
    w = torch.randn(20, 200).to(device)
    xb = batch.x
    # the tensor ops the lean relabel must dispatch (scores by whitening, class-major softmax,
    # fallback mask, blend into row-major labels) on ready-made operands, with no Python
    # around them: what eager PyTorch can do at best, whatever the library code
    g = torch.Generator().manual_seed(5)
    wt, bias = torch.randn(200, 20, generator=g).to(device), torch.randn(200, 1, generator=g).to(device)
    const, y_prev = torch.randn(10, 1, generator=g).to(device), batch.y

    def op_chain() -> torch.Tensor:
        maha = torch.addmm(bias, wt, (xb - xb[:1]).T).square_().view(10, 20, xb.shape[0]).sum(1)
        y_t = torch.softmax(torch.add(const, maha, alpha=-0.5), 0)
        return torch.where(y_t[0].isnan()[:, None], y_prev, y_t.T)

    relabel = timeit(lambda: lean(batch), device, budget)
    chain = timeit(op_chain, device, budget)
    relabel_default = timeit(lambda: default(batch), device, budget)
    log_prob = timeit(lambda: lean.density.log_prob(xb), device, budget)
    gemm = timeit(lambda: xb @ w, device, budget)
    return {"relabel_us": relabel * 1e6, "relabel_default_us": relabel_default * 1e6, "log_prob_us": log_prob * 1e6,
            "gemm_us": gemm * 1e6, "op_chain_us": chain * 1e6, "ratio": relabel / gemm,
            "ratio_default": relabel_default / gemm}
