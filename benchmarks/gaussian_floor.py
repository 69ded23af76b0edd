"""Gaussian log_prob against its arithmetic floor (issue 11, point 1): a script, not a test.

For every (d, K, B) in {2, 20, 128, 512} x {10, 100} x {128, 1024}, one torch thread,
float32 queries, ratios within one run (the machine's speed cancels out):

* ``full``: ``Gaussian("full").log_prob`` with the form :func:`use_quadratic_form` picks,
  and each form forced, against
  - ``gemm``: the bare GEMM of the whitening shape, ``(B, d) @ (d, K d)`` (acceptance:
    full at d = 512, K = 10, B = 128 within 1.5x of it);
  - ``floor``: the cheapest formulation's unavoidable kernels: the whitening GEMM plus
    the per-class squared norm of its ``(B, K, d)`` output, or the quadratic form's
    ``(K, T + d) @ (T + d, B)`` GEMM on ready-made features, whichever is faster
    (acceptance: within 2x everywhere);
* ``tied`` and ``diag`` against their own floors (``(B, d) @ (d, d)`` + ``(B, d) @ (d, K)``;
  ``(B, d) @ (d, K)`` twice);
* minor page faults per call (``ru_minflt``) and the float32 error against float64.

Run: ``PYTHONPATH=. python benchmarks/gaussian_floor.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from mixkit.densities import gaussian as gaussian_module
from mixkit.densities.gaussian import Gaussian


def best_times(fns: dict, budget: float = 1.0, passes: int = 4, calls: int = 5) -> dict[str, float]:
    """Minimum wall time of each callable: ``passes`` rounds over all of them (so load from
    other processes hits all alike), each timing ``calls`` consecutive calls after a warm-up
    call (so each is timed with its own temporaries recycled, as in a training loop)."""
    best = {name: math.inf for name in fns}
    start = time.perf_counter()
    done = 0
    while done < passes or (time.perf_counter() - start < budget and done < 50):
        for name, fn in fns.items():
            fn()
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        done += 1
    return best


def faults(fn, calls: int = 5) -> float:
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def random_gaussian(d: int, k: int, covariance: str, gen: torch.Generator, quadratic=None) -> Gaussian:
    means = torch.randn(k, d, generator=gen, dtype=torch.float64) * 2.0
    if covariance in ("full", "tied"):
        a = torch.randn(k if covariance == "full" else 1, d, d, generator=gen, dtype=torch.float64)
        cov = a @ a.mT / d + 0.5 * torch.eye(d, dtype=torch.float64)
        cov = cov.expand(k, d, d).contiguous()
    else:
        cov = torch.rand(k, d, generator=gen, dtype=torch.float64) + 0.5
    chooser = gaussian_module.use_quadratic_form
    if quadratic is not None:
        gaussian_module.use_quadratic_form = lambda dim, num_classes: quadratic
    try:
        return Gaussian(covariance).set_parameters(means, cov)
    finally:
        gaussian_module.use_quadratic_form = chooser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="d <= 128 and B = 128 only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    dims = (2, 20, 128) if args.quick else (2, 20, 128, 512)
    batches = (128,) if args.quick else (128, 1024)
    print("times in ms; ratios = log_prob / reference, same run, 1 thread, float32 queries")
    header = (
        f"{'d':>4} {'K':>4} {'B':>5} | {'form':>9} {'full':>8} {'whiten':>8} {'quad':>8} "
        f"{'gemm':>8} {'floor':>8} {'/gemm':>6} {'/floor':>6} {'flt':>5} | "
        f"{'tied':>7} {'/floor':>6} | {'diag':>7} {'/floor':>6} | {'err32':>8}"
    )
    print(header)
    for d in dims:
        for k in (10, 100):
            for b in batches:
                print(row(d, k, b, gen), flush=True)


def row(d: int, k: int, b: int, gen: torch.Generator) -> str:
    x64 = torch.randn(b, d, generator=gen, dtype=torch.float64) * 2.0
    x = x64.float()
    g = random_gaussian(d, k, "full", gen)
    gw = random_gaussian(d, k, "full", gen, quadratic=False)
    w = torch.randn(d, k * d, generator=gen)
    gt = random_gaussian(d, k, "tied", gen)
    wt, mt = torch.randn(d, d, generator=gen), torch.randn(d, k, generator=gen)
    gd = random_gaussian(d, k, "diag", gen)
    fns = {
        "full": lambda: g.log_prob(x),
        "whiten": lambda: gw.log_prob(x),
        "gemm": lambda: torch.mm(x, w),
        "wfloor": lambda: torch.mm(x, w).view(b, k, d).square().sum(-1),
        "tied": lambda: gt.log_prob(x),
        "tfloor": lambda: torch.mm(torch.mm(x, wt), mt),
        "diag": lambda: gd.log_prob(x),
        "dfloor": lambda: (torch.mm(x * x, mt), torch.mm(x, mt)),
    }
    if d <= 180:
        gq = random_gaussian(d, k, "full", gen, quadratic=True)
        t = (d + 1) * (d + 2) // 2
        wq, fq = torch.randn(k, t, generator=gen), torch.randn(t, b, generator=gen)
        fns["quad"] = lambda: gq.log_prob(x)
        fns["qfloor"] = lambda: torch.mm(wq, fq)
    big = d * k * b >= 2**24  # a call takes a second or more: fewer repeats
    t = best_times(fns, budget=0.0 if big else 1.0, passes=3 if big else 4, calls=2 if big else 5)
    t.setdefault("quad", math.nan)
    floor = min(t["wfloor"], t.get("qfloor", math.inf))
    flt = faults(lambda: g.log_prob(x))
    err = (g.log_prob(x).double() - g.log_prob(x64)).abs().max().item()
    ms = 1e3
    return (
        f"{d:>4} {k:>4} {b:>5} | {g._form:>9} {t['full'] * ms:8.3f} {t['whiten'] * ms:8.3f} "
        f"{t['quad'] * ms:8.3f} {t['gemm'] * ms:8.3f} {floor * ms:8.3f} "
        f"{t['full'] / t['gemm']:6.2f} {t['full'] / floor:6.2f} {flt:5.0f} | "
        f"{t['tied'] * ms:7.3f} {t['tied'] / t['tfloor']:6.2f} | {t['diag'] * ms:7.3f} "
        f"{t['diag'] / t['dfloor']:6.2f} | {err:8.1e}"
    )


if __name__ == "__main__":
    main()
