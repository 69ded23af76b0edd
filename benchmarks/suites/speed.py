"""Speed: mixing and relabeling cost, as ratios against timm, torchvision and naive references.

Everything is timed in one run on the same machine and thread count, so the
ratios are comparable even where the absolute times are not. Timing: after a
warm-up, the best of several repeats of the mean over many calls.

Rows:
* ``mix``: one batch ``(128, 3, 32, 32)`` with 10 classes mixed by mixkit's
  ``MixCollate("mixup")`` (called on tensors, as in the training loop), timm's
  ``Mixup`` (which mixes in place), torchvision's ``v2.MixUp`` and a naive
  per-sample Python loop;
* ``relabel``: the GenLabel relabel of a mixed batch of 128 with a full-covariance
  Gaussian (d = 20, K = 10 and 100) against a naive per-class
  ``scipy.stats.multivariate_normal.logpdf`` relabel and against one bare matrix
  product doing the relabel's arithmetic (``B*K*d^2`` multiply-adds);
* ``scaling`` (full mode): relabel time of every density over batch sizes
  32..4096 and dimensions up to 512.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import mixkit


def timeit(fn: Callable[[], Any], budget: float = 0.25, repeats: int = 5) -> float:
    """Seconds per call: best of ``repeats`` means, each over about ``budget`` seconds."""
    for _ in range(3):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    n = max(1, int(budget / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def mix_rows(budget: float) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    collate = mixkit.MixCollate("mixup", num_classes=10, alpha=1.0, seed=0)
    timings = {"mixkit MixCollate(mixup)": timeit(lambda: collate(x, y), budget)}
    try:
        from timm.data import Mixup as TimmMixup

        timm_mix = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, label_smoothing=0.0, num_classes=10)
        x_timm = x.clone()  # timm mixes in place, so it gets its own copy (mixes of mixes stay finite)
        timings["timm Mixup (in place)"] = timeit(lambda: timm_mix(x_timm, y), budget)
    except ImportError:
        pass
    try:
        from torchvision.transforms import v2

        tv_mix = v2.MixUp(alpha=1.0, num_classes=10)
        timings["torchvision v2.MixUp"] = timeit(lambda: tv_mix(x, y), budget)
    except ImportError:
        pass

    def naive() -> tuple:
        lam = float(np.random.beta(1.0, 1.0))
        perm = torch.randperm(128)
        out = torch.empty_like(x)
        y1 = torch.nn.functional.one_hot(y, 10).float()
        ys = torch.empty_like(y1)
        for i in range(128):
            out[i] = lam * x[i] + (1 - lam) * x[perm[i]]
            ys[i] = lam * y1[i] + (1 - lam) * y1[perm[i]]
        return out, ys

    timings["naive per-sample loop"] = timeit(naive, budget)
    ref = timings.get("torchvision v2.MixUp")
    return [
        {"group": "mix", "case": "batch (128, 3, 32, 32), K=10", "method": name, "us": t * 1e6,
         "ratio_vs_torchvision": None if ref is None else t / ref}
        for name, t in timings.items()
    ]


def relabel_rows(budget: float, k: int, d: int = 20, b: int = 128) -> list[dict]:
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(k)
    n = max(20 * k, 2000)
    y = torch.arange(n) % k
    x = torch.randn(n, d, generator=g) + 2 * torch.randn(k, d, generator=g)[y]
    genlabel = mixkit.GenLabel("gaussian", covariance="full").fit(x, y)
    batch = mixkit.Mixup(num_classes=k, seed=0)(x[:b], y[:b])
    density = genlabel.density
    means = density.means.numpy()
    covs = density.covariances.numpy()
    xb = batch.x.numpy()

    def naive() -> np.ndarray:
        logp = np.stack([multivariate_normal(means[c], covs[c]).logpdf(xb) for c in range(k)], 1)
        logp -= logp.max(1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(1, keepdims=True)

    w = torch.randn(d, k * d, generator=g)
    xt = batch.x
    timings = {
        "mixkit GenLabel(gaussian full)": timeit(lambda: genlabel(batch), budget),
        "naive scipy per-class logpdf": timeit(naive, budget),
        "bare matmul (B*K*d^2 MACs)": timeit(lambda: xt @ w, budget),
    }
    ours = timings["mixkit GenLabel(gaussian full)"]
    return [
        {"group": "relabel", "case": f"B={b}, d={d}, K={k}", "method": name, "us": t * 1e6,
         "ratio_vs_genlabel": t / ours}
        for name, t in timings.items()
    ]


def scaling_rows(budget: float, quick: bool) -> list[dict]:
    """Relabel time of each density across batch sizes and dimensions (K = 10)."""
    k = 10
    batch_sizes = (32, 256, 4096) if quick else (32, 128, 512, 1024, 4096)
    dims = (2, 20) if quick else (2, 20, 128, 512)
    densities: dict[str, dict] = {
        "gaussian full": {"density": "gaussian", "covariance": "full"},
        "gaussian diag": {"density": "gaussian", "covariance": "diag"},
        "kde (1000 pts/class)": {"density": "kde", "bandwidth": "scott", "max_points_per_class": 1000},
    }
    available = mixkit.available("density")
    for name, kwargs in (("flow", {"max_epochs": 1}), ("vae", {"max_epochs": 1}), ("gan", {"steps": 10})):
        if name in available:
            densities[name] = {"density": name, **kwargs}
    rows = []
    g = torch.Generator().manual_seed(1)
    for d in dims:
        n = 2000
        y = torch.arange(n) % k
        x = torch.randn(n, d, generator=g) + 2 * torch.randn(k, d, generator=g)[y]
        for label, kwargs in densities.items():
            if label in ("flow", "vae", "gan") and d > 20:
                continue  # the neural densities are meant for low-dimensional or latent data
            kwargs = dict(kwargs)
            try:
                genlabel = mixkit.GenLabel(kwargs.pop("density"), **kwargs).fit(x, y)
            except TypeError as exc:  # a plugin with other argument names: say so, don't guess
                rows.append({"group": "scaling", "density": label, "d": d, "B": None, "error": str(exc)})
                continue
            for b in batch_sizes:
                idx = torch.randint(0, n, (b,), generator=g)
                batch = mixkit.Mixup(num_classes=k, seed=0)(x[idx], y[idx])
                t = timeit(lambda gl=genlabel, mb=batch: gl(mb), budget / 2, repeats=3)
                rows.append({"group": "scaling", "density": label, "d": d, "B": b, "us": t * 1e6,
                             "us_per_sample": t * 1e6 / b})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["", "## Mixing one batch", "", "| method | µs / batch | ratio vs torchvision |", "|---|---:|---:|"]
    for r in rows:
        if r["group"] == "mix":
            ratio = "" if r["ratio_vs_torchvision"] is None else f"{r['ratio_vs_torchvision']:.2f}"
            lines.append(f"| {r['method']} | {r['us']:.1f} | {ratio} |")
    lines += ["", "## GenLabel relabel of one mixed batch", "",
              "| case | method | µs / batch | time / GenLabel's |", "|---|---|---:|---:|"]
    for r in rows:
        if r["group"] == "relabel":
            lines.append(f"| {r['case']} | {r['method']} | {r['us']:.1f} | {r['ratio_vs_genlabel']:.2f} |")
    scaling = [r for r in rows if r["group"] == "scaling"]
    if scaling:
        lines += ["", "## Relabel cost by density, batch size and dimension (K = 10)", "",
                  "| density | d | B | µs / batch | µs / sample |", "|---|---:|---:|---:|---:|"]
        for r in scaling:
            if "error" in r:
                lines.append(f"| {r['density']} | {r['d']} | - | not run: {r['error']} | |")
            else:
                lines.append(f"| {r['density']} | {r['d']} | {r['B']} | {r['us']:.1f} | {r['us_per_sample']:.2f} |")
    return "\n".join(lines) + "\n"


def run(args: Any) -> dict:  # args: benchmarks.args.SuiteArgs
    quick, smoke = args.quick, args.smoke
    budget = 0.02 if smoke else 0.1 if quick else 0.3
    rows = mix_rows(budget)
    for k in (10, 100):
        rows += relabel_rows(budget, k)
    if not smoke:
        rows += scaling_rows(budget, quick)
    summary = {
        "mixkit_vs_torchvision": next((r["ratio_vs_torchvision"] for r in rows
                                       if r["method"].startswith("mixkit MixCollate")), None),
    }
    for k in (10, 100):
        case = [r for r in rows if r["group"] == "relabel" and r["case"].endswith(f"K={k}")]
        by = {r["method"]: r["us"] for r in case}
        summary[f"K{k}_naive_over_genlabel"] = by["naive scipy per-class logpdf"] / by["mixkit GenLabel(gaussian full)"]
        summary[f"K{k}_genlabel_over_matmul"] = by["mixkit GenLabel(gaussian full)"] / by["bare matmul (B*K*d^2 MACs)"]
    md = markdown(rows)
    md = "\n".join(["", "Summary: " + ", ".join(f"{k} = {v:.2f}" for k, v in summary.items() if v is not None), md])
    return {"rows": rows, "summary": summary, "markdown": md}


if __name__ == "__main__":
    from benchmarks.args import SuiteArgs

    torch.set_num_threads(1)
    print(run(SuiteArgs(quick=True))["markdown"])
