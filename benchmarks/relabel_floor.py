"""GenLabel's relabel against its arithmetic floor (issue 11, point 2). A script, not a test.

    PYTHONPATH=$PWD python benchmarks/relabel_floor.py [--k 10] [--d 20] [--b 128]

Prints, for a full-covariance Gaussian at K classes, d features, batch B (one thread):
the bare matmul of the relabel's shape (``(B, d) @ (d, K*d)``), ``density.log_prob``
alone, and GenLabel's relabel with and without diagnostics; the relabel as a ratio of
the matmul, GenLabel's own overhead (relabel minus ``log_prob``), and how many aten
ops each part dispatches. Ratios within one run are what to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mixkit


def timeit_all(cases: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, float]]:
    """``(min, median)`` seconds of single calls of each case over ``rounds`` rounds, the cases
    interleaved call by call: on a shared machine a busy moment then hits every case alike,
    and the minimum is the figure that noise cannot inflate."""
    for fn in cases.values():
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter
    for _ in range(rounds):
        for name, fn in cases.items():
            start = clock()
            fn()
            samples[name].append(clock() - start)
    return {name: (min(v), statistics.median(v)) for name, v in samples.items()}


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> tuple[int, Counter[str]]:
    with CountOps() as c:
        fn()
    return sum(c.ops.values()), c.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--b", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    k, d, b = args.k, args.d, args.b
    g = torch.Generator().manual_seed(0)
    n = max(20 * k, 2000)
    y = torch.arange(n) % k
    x = torch.randn(n, d, generator=g) + 2 * torch.randn(k, d, generator=g)[y]
    batch = mixkit.Mixup(num_classes=k, seed=0)(x[:b], y[:b])
    w = torch.randn(d, k * d, generator=g)
    xb = batch.x

    def make(**kw: Any) -> Any:
        try:
            return mixkit.GenLabel("gaussian", covariance="full", validate=False, **kw).fit(x, y)
        except TypeError:  # an older GenLabel without these switches
            kw.pop("diagnostics", None)
            return mixkit.GenLabel("gaussian", covariance="full", **kw).fit(x, y)

    on, off = make(), make(diagnostics=False)
    density = on.density
    cases = {
        "bare matmul (B, d) @ (d, K*d)": lambda: xb @ w,
        "density.log_prob": lambda: density.log_prob(xb),
        "GenLabel, diagnostics on": lambda: on(batch),
        "GenLabel, diagnostics off": lambda: off(batch),
        "GenLabel gamma=.7 top_k=2, diagnostics off": (lambda gl: lambda: gl(batch))(
            make(gamma=0.7, top_k=2, diagnostics=False)),
        "GenLabel default (validate on the CPU)": (lambda gl: lambda: gl(batch))(
            mixkit.GenLabel("gaussian", covariance="full").fit(x, y)),
    }
    timed = timeit_all(cases, args.rounds)
    times = {name: t[0] for name, t in timed.items()}
    ops = {name: count_ops(fn)[0] for name, fn in cases.items()}
    floor, lp = times["bare matmul (B, d) @ (d, K*d)"], times["density.log_prob"]
    print(f"K={k}, d={d}, B={b}, torch {torch.__version__}, 1 thread")
    print("us per call: min (median) of single calls; ratios and overhead from the minima")
    print(f"{'case':46s} {'us':>16s} {'/ matmul':>9s} {'- log_prob us':>14s} {'aten ops':>9s}")
    for name, t in times.items():
        own = f"{(t - lp) * 1e6:14.1f}" if name.startswith("GenLabel") else " " * 14
        med = f"{t * 1e6:7.1f} ({timed[name][1] * 1e6:6.1f})"
        print(f"{name:46s} {med:>16s} {t / floor:9.2f} {own} {ops[name]:9d}")
    print("GenLabel's own aten ops (diagnostics off):",
          dict(count_ops(cases["GenLabel, diagnostics off"])[1] - count_ops(cases["density.log_prob"])[1]))


if __name__ == "__main__":
    main()
