"""KDE speed and memory against the previous implementation and the kernel-sum floor.

Issue 11 point 3 (ratios within one run, one thread; not a test)::

    PYTHONPATH=.:plugins python -m benchmarks.kde_floor [--quick] [--out FILE]

* fit on 50k points (10 classes, d = 20): the previous KDE (the code at ``--base``, read with
  ``git show``), today's with full leave-one-out CV and today's default (CV on a subsample,
  rescaled by Scott's exponent); the labels of mixed points of the default against full CV as
  mean / max total variation and top-1 agreement;
* buffers of a fitted isotropic KDE at K = 100, d = 512 (500 points per class), both versions;
* with ``--gan``: the GAN plugin's amortised inversion (the default) against the exact
  multi-restart search at B = 128, K = 10, d = 20: time per call, top-1 agreement and total
  variation of the labels of mixed points (issue 11 point 5);
* with ``--flow``: the flow plugin's fit with the former early stopping (patience 20) and
  with the defaults: fit time, best and last epoch, held-out log-likelihood;
* ``log_prob`` against its kernel-sum floor, the work it cannot avoid: one batched GEMM of the
  queries against every stored point of every class, the exponential and the sum (a
  ``logsumexp`` over the stored points) on one block, nothing else; and the scoring chunk size.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mixkit import chunking
from mixkit.densities.kde import KDE

ROOT = Path(__file__).resolve().parents[1]


def load_base_kde(rev: str) -> type:
    """The KDE class as it was at git revision ``rev`` (imported from a temporary file)."""
    src = subprocess.run(
        ["git", "show", f"{rev}:mixkit/densities/kde.py"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "kde_base.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("kde_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KDE


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up (casts, allocator)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def buffer_bytes(module: torch.nn.Module) -> int:
    return sum(b.numel() * b.element_size() for b in module.buffers())


def blobs(n: int, k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centres = torch.randn(k, d, generator=gen) * 1.5
    x = centres[y] + torch.randn(n, d, generator=gen) * (0.5 + torch.rand(k, 1, generator=gen)[y])
    return x, y


def mixed_points(x: torch.Tensor, b: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    i, j = torch.randint(len(x), (2, b), generator=gen)
    lam = torch.rand(b, 1, generator=gen)
    return lam * x[i] + (1 - lam) * x[j]


def labels(kde: torch.nn.Module, q: torch.Tensor) -> torch.Tensor:
    return torch.softmax(kde.log_prob(q).double(), 1)


def floor_time(kde: KDE, q: torch.Tensor, repeat: int) -> float:
    """The kernel sum's arithmetic: one ``baddbmm`` of the queries (in each class's kernel
    frame) against every stored point, plus one ``exp`` and one ``sum`` over a block of the
    same size, timed apart and added. The exponential is timed on benign values (-1): on the
    raw logits most terms are far below exp's range and take the CPU's slow path, which
    ``log_prob`` avoids by flooring them (that floor is part of what it pays for)."""
    z = kde.kernel_points.float()
    bias = kde.point_bias.float()[:, None]
    k, n, _ = z.shape
    proj = ((q[None] - kde.class_means.float()[:, None]) / kde.bandwidth_.float()[:, None, None])
    zt = z.mT
    out = torch.empty(k, q.shape[0], n)
    block = torch.full_like(out, -1.0)

    def gemm() -> None:
        torch.baddbmm(bias, proj, zt, out=out)

    def exp_sum() -> None:
        block.fill_(-1.0).exp_().sum(-1)

    fill = best_time(lambda: block.fill_(-1.0), repeat)
    return best_time(gemm, repeat) + max(0.0, best_time(exp_sum, repeat) - fill)


def chunk_sweep(kde: KDE, q: torch.Tensor, repeat: int) -> dict[str, float]:
    saved = chunking.CHUNK_ELEMENTS, chunking.MIN_ROWS
    out = {}
    try:
        chunking.MIN_ROWS = 1  # the block size alone
        for p in (18, 20, 22, 24):
            chunking.CHUNK_ELEMENTS = 1 << p
            out[f"2^{p}"] = best_time(lambda: kde.log_prob(q), repeat)
    finally:
        chunking.CHUNK_ELEMENTS, chunking.MIN_ROWS = saved
    return out


def buffers_section(OldKDE: type) -> dict:
    """Buffers at K = 100, d = 512 (isotropic, a fixed bandwidth: the rule does not matter)."""
    kb, db, nb = 100, 512, 500
    xb, yb = blobs(kb * nb, kb, db, seed=2)
    old_b = OldKDE(bandwidth=1.0).fit(xb, yb)
    new_b = KDE(bandwidth=1.0).fit(xb, yb)
    out = {
        "k": kb, "d": db, "n_per_class": nb,
        "old_mb": buffer_bytes(old_b) / 2**20, "new_mb": buffer_bytes(new_b) / 2**20,
    }
    out["ratio"] = out["new_mb"] / out["old_mb"]
    qb = mixed_points(xb, 128, seed=3)
    out["old_log_prob_ms"] = 1e3 * best_time(lambda: old_b.log_prob(qb), 3)
    out["new_log_prob_ms"] = 1e3 * best_time(lambda: new_b.log_prob(qb), 3)
    out["floor_ms"] = 1e3 * floor_time(new_b, qb, 3)
    return out


def log_prob_row(OldKDE: type, d: int, k: int, n: int, b: int) -> dict:
    xs, ys = blobs(k * n, k, d, seed=4)
    dens, prev = KDE(bandwidth=1.0).fit(xs, ys), OldKDE(bandwidth=1.0).fit(xs, ys)
    q = mixed_points(xs, b, seed=5)
    reps = 5 if d * k * n * b < 2**30 else 2
    t_floor = floor_time(dens, q, reps)
    t_new = best_time(lambda: dens.log_prob(q), reps)
    t_prev = best_time(lambda: prev.log_prob(q), reps)
    row = {"d": d, "k": k, "n_per_class": n, "b": b, "floor_ms": 1e3 * t_floor,
           "new_ms": 1e3 * t_new, "old_ms": 1e3 * t_prev,
           "new_over_floor": t_new / t_floor, "old_over_floor": t_prev / t_floor}
    if b == 128:
        row["chunks_ms"] = {c: 1e3 * t for c, t in chunk_sweep(dens, q, reps).items()}
    return row


def log_prob_section(OldKDE: type) -> list[dict]:
    """``log_prob`` against the kernel-sum floor, and the chunk size."""
    rows = []
    for d in (2, 20, 128, 512):
        for k, n in ((10, 1000), (100, 200)):
            for b in (128, 1024):
                rows.append(log_prob_row(OldKDE, d, k, n, b))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def gan_section() -> dict:
    """GAN log_prob: amortised encoder (default), encoder + 5 refinement steps, exact search."""
    from mixkit_plugins.gan import GANDensity

    k, d = 10, 20
    x, y = blobs(5000, k, d, seed=6)
    t0 = time.perf_counter()
    gan = GANDensity(seed=0, progress=False).fit(x, y)
    out: dict = {"k": k, "d": d, "n": 5000, "fit_s": time.perf_counter() - t0}
    state = gan.state_dict()
    variants = {
        "encoder": gan,
        "encoder+refine5": GANDensity(refine_steps=5, progress=False),
        "search": GANDensity(inversion="search", progress=False),
    }
    for name in ("encoder+refine5", "search"):
        variants[name].load_state_dict(state)
    q = mixed_points(x, 512, seed=7)
    labels_ = {name: torch.softmax(v.log_prob(q), 1) for name, v in variants.items()}
    batch = q[:128]
    for name, v in variants.items():
        row = {"ms": 1e3 * best_time(lambda v=v: v.log_prob(batch), 3 if name == "search" else 10)}
        if name != "search":
            row["top1_vs_search"] = (labels_[name].argmax(1) == labels_["search"].argmax(1)
                                     ).double().mean().item()
            row["tv_mean_vs_search"] = (0.5 * (labels_[name] - labels_["search"]).abs().sum(1)
                                        ).mean().item()
        out[name] = row
    return out


def flow_section() -> dict:
    """Flow fit: the former early stopping (patience 20, 300 epochs) against the defaults."""
    from mixkit_plugins.flow import FlowDensity

    x_all, y_all = blobs(7000, 10, 20, seed=8)
    x, y, x_te, y_te = x_all[:5000], y_all[:5000], x_all[5000:], y_all[5000:]
    out = {}
    for name, kw in (("patience20", dict(patience=20, max_epochs=300)), ("default", {})):
        t0 = time.perf_counter()
        flow = FlowDensity(seed=0, progress=False, **kw).fit(x, y)
        seconds = time.perf_counter() - t0
        ll = flow.log_prob(x_te).gather(1, y_te[:, None]).mean().item()
        out[name] = {"fit_s": seconds, "best_epoch": flow.history["best_epoch"],
                     "epochs": flow.history["epochs"], "heldout_ll": ll}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="f17729f", help="git revision of the previous KDE")
    parser.add_argument("--quick", action="store_true", help="10k points instead of 50k")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--gan", action="store_true", help="only the GAN inversion figures")
    parser.add_argument("--flow", action="store_true", help="only the flow early-stopping figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    OldKDE = load_base_kde(args.base)
    res: dict = {"base": args.base, "threads": 1}
    if args.gan or args.flow:
        if args.gan:
            res["gan"] = gan_section()
            print("gan", json.dumps(res["gan"], indent=1), flush=True)
        if args.flow:
            res["flow"] = flow_section()
            print("flow", json.dumps(res["flow"], indent=1), flush=True)
        if args.out is not None:
            args.out.write_text(json.dumps(res, indent=1))
        return res

    # 1. fit time and label agreement, 10 classes, d = 20
    n, k, d = (10_000 if args.quick else 50_000), 10, 20
    x, y = blobs(n, k, d, seed=0)
    q = mixed_points(x, 4096, seed=1)
    t0 = time.perf_counter()
    old = OldKDE().fit(x, y)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = KDE(cv_points_per_class=None).fit(x, y)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = KDE().fit(x, y)
    t_new = time.perf_counter() - t0
    p_full, p_new, p_old = labels(full, q), labels(new, q), labels(old, q)
    tv = 0.5 * (p_new - p_full).abs().sum(1)
    res["fit"] = {
        "n": n, "k": k, "d": d,
        "old_s": t_old, "full_cv_s": t_full, "default_s": t_new, "speedup_vs_old": t_old / t_new,
        "h_full": full.bandwidth_[0].item(), "h_default": new.bandwidth_[0].item(),
        "h_old": old.bandwidth_[0].item(),
        "tv_mean": tv.mean().item(), "tv_max": tv.max().item(),
        "top1_agreement": (p_new.argmax(1) == p_full.argmax(1)).double().mean().item(),
        "old_vs_full_tv_mean": (0.5 * (p_old - p_full).abs().sum(1)).mean().item(),
    }
    print("fit", json.dumps(res["fit"], indent=1), flush=True)

    res["buffers"] = buffers_section(OldKDE)
    print("buffers", json.dumps(res["buffers"], indent=1), flush=True)

    res["log_prob"] = log_prob_section(OldKDE)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
