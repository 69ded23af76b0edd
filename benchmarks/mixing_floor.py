"""Mixing against its floor and against timm, as ratios within one run (not a test).

    PYTHONPATH=.:plugins python benchmarks/mixing_floor.py [--batches 60] [--repeats 7]

Prints, at (128, 3, 32, 32) float32 on one CPU thread, each path's time per call
and its ratio to the floor (one ``index_select`` + ``lerp_``, what mixup must
do), then samples/s of a 2-worker DataLoader for each collate as a ratio to
``default_collate`` alone (wall time, and per CPU-second of the workers, which
other load on a shared machine does not inflate). Hot-path times are medians of
single calls made round-robin, so that load hits every path alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

import mixkit
from mixkit.random import sample_beta

B, SHAPE, K = 128, (3, 32, 32), 10


def compare(paths: dict, n: int, repeats: int) -> dict[str, float]:
    """Median single-call time of each path, the paths called round-robin (load hits all alike)."""
    times: dict[str, list[float]] = {k: [] for k in paths}
    for fn in paths.values():
        fn()
    for _ in range(n * repeats):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def hot_path(n: int, repeats: int) -> None:
    import numpy as np
    from timm.data.mixup import Mixup as TimmMixup

    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, *SHAPE, generator=g)
    y = torch.randint(0, K, (B,), generator=g)
    buf = x.clone()
    mixup = mixkit.Mixup(num_classes=K, seed=0)
    lean = mixkit.Mixup(num_classes=K, seed=0, validate=False)
    collate = mixkit.MixCollate("mixup", num_classes=K, seed=0)
    both = mixkit.from_timm(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K, label_smoothing=0.0, seed=0)
    timm = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=K)
    timm_both = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=K)
    np.random.seed(0)
    conc = torch.tensor([[1.0, 1.0]], dtype=torch.float64)

    def floor():
        partner = x.index_select(0, torch.randperm(B, generator=g))
        partner.lerp_(x, 0.3)

    paths = {
        "floor: index_select + lerp_": floor,
        "mixkit Mixup (validate on CPU, default)": lambda: mixup(x, y),
        "mixkit Mixup validate=False": lambda: lean(x, y),
        "mixkit Mixup validate=False, inplace": lambda: lean(buf, y, inplace=True),
        "mixkit MixCollate('mixup') on tensors": lambda: collate(x, y),
        "timm Mixup (in place on the caller's batch)": lambda: timm(buf, y),
        "mixkit from_timm(mixup 0.8 + cutmix 1.0)": lambda: both.mix(x, y),
        "mixkit from_timm(mixup+cutmix), inplace": lambda: both.mix(buf, y, inplace=True),
        "timm mixup 0.8 + cutmix 1.0": lambda: timm_both(buf, y),
    }
    res = compare(paths, n, repeats)
    base = res["floor: index_select + lerp_"]
    print(f"hot path at ({B}, {', '.join(map(str, SHAPE))}) float32, 1 thread, {n * repeats} calls each, median")
    for name, t in res.items():
        print(f"  {name:48s} {t * 1e6:8.1f} us  {t / base:5.2f}x floor")
    timm_t = res["timm Mixup (in place on the caller's batch)"]
    print(f"  mixkit Mixup / timm Mixup: {res['mixkit Mixup (validate on CPU, default)'] / timm_t:.2f} "
          f"(validate=False: {res['mixkit Mixup validate=False'] / timm_t:.2f}; "
          f"mixup+cutmix: {res['mixkit from_timm(mixup 0.8 + cutmix 1.0)'] / res['timm mixup 0.8 + cutmix 1.0']:.2f}, "
          f"in place {res['mixkit from_timm(mixup+cutmix), inplace'] / res['timm mixup 0.8 + cutmix 1.0']:.2f})")
    beta = compare({
        "sample_beta(1, 1, 1) (cached concentration)": lambda: sample_beta(1.0, 1.0, 1, g),
        "torch._sample_dirichlet on a fresh tensor": lambda: torch._sample_dirichlet(
            torch.tensor([[1.0, 1.0]], dtype=torch.float64), generator=g),
        "torch._sample_dirichlet on a kept tensor": lambda: torch._sample_dirichlet(conc, generator=g),
    }, n, repeats)
    for name, t in beta.items():
        print(f"  {name:48s} {t * 1e6:8.1f} us")


class Images(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, *SHAPE, generator=g)
        self.y = torch.randint(0, K, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class TimmInCollate:
    """timm's Mixup applied to default_collate's batch inside the worker."""

    def __init__(self) -> None:
        from timm.data.mixup import Mixup as TimmMixup

        self.mixup = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=K)

    def __call__(self, samples):
        x, y = default_collate(samples)
        return self.mixup(x, y)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc): robust to other load on the machine."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def loader_rate(collate, ds: Dataset, batches: int) -> tuple[float, float]:
    """(wall samples/s, samples per worker-CPU-second x 2) of a 2-worker loader."""
    loader = DataLoader(ds, batch_size=B, num_workers=2, collate_fn=collate, persistent_workers=True,
                        shuffle=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    for _ in range(4):  # warm the workers up
        next(it)
    pids = [w.pid for w in it._workers]  # private, but the only handle on the worker processes
    cpu, t, n = _cpu_seconds(pids), time.perf_counter(), 0
    for _ in range(batches):
        n += len(next(it)[0])
    wall, cpu = time.perf_counter() - t, _cpu_seconds(pids) - cpu
    del it
    return n / wall, 2 * n / max(cpu, 1e-9)


def workers(batches: int, repeats: int) -> None:
    ds = Images(B * (batches + 8))
    collates = {
        "default_collate": None,
        "mixkit MixCollate('mixup')": mixkit.MixCollate("mixup", num_classes=K),
        "mixkit MixCollate('mixup', validate=False)": mixkit.MixCollate("mixup", num_classes=K, validate=False),
        "timm Mixup after default_collate": TimmInCollate(),
    }
    wall: dict[str, list[float]] = {k: [] for k in collates}
    cpu: dict[str, list[float]] = {k: [] for k in collates}
    for _ in range(repeats):
        for name, c in collates.items():
            w, c_rate = loader_rate(c, ds, batches)
            wall[name].append(w)
            cpu[name].append(c_rate)
    print(f"2-worker DataLoader, batch {B}, {batches} batches, median of {repeats}; "
          "wall samples/s, and samples per worker-CPU-second x 2 (robust to other load)")
    base_w, base_c = statistics.median(wall["default_collate"]), statistics.median(cpu["default_collate"])
    for name in collates:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:48s} wall {w:8.0f} ({w / base_w:4.2f}x)   cpu {c:8.0f} ({c / base_c:4.2f}x default_collate)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    hot_path(args.calls, args.repeats)
    workers(args.batches, max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
