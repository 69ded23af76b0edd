"""Peak memory of GenLabel.fit from a DataLoader, by n (issue 10, point 4). A script, not a test.

    PYTHONPATH=$PWD python benchmarks/fit_memory.py [--d 512] [--n 10000 50000]

Each case runs in a fresh process over a dataset of dict samples generated on the
fly (so the data themselves take no memory) and prints the peak resident memory above
the process's baseline after imports:

* ``loader -> Gaussian``: ``GenLabel("gaussian").fit(DataLoader(ds, batch_size=64))``
  (streams into ``Gaussian.fit_batches`` where the density has it; else GenLabel
  concatenates the features and calls ``fit``: then it grows with n);
* ``loader -> streaming sums``: the same into a density whose ``fit_batches`` keeps
  per-class sums only: GenLabel's own side of the stream;
* ``stacked tensor -> Gaussian``: the dataset stacked by hand, then ``fit(x, y)``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from torch.utils.data import DataLoader, Dataset

import mixkit

K = 10


class Samples(Dataset):
    def __init__(self, n: int, d: int) -> None:
        self.n, self.d = n, d
        self.centres = torch.randn(K, d, generator=torch.Generator().manual_seed(0)) * 3

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"pixel_values": torch.randn(self.d, generator=g) + self.centres[i % K], "label": i % K}


class StreamingSums(mixkit.Density):
    """Per-class sums of a stream (``fit_batches``); scoring by the distance to the means."""

    def fit_batches(self, batches):  # noqa: ANN001, ANN201
        sums = counts = None
        for z, ids in batches:
            if sums is None:
                sums = torch.zeros(K, z.shape[1], dtype=torch.float64)
                counts = torch.zeros(K, dtype=torch.long)
            sums.index_add_(0, ids, z.double())
            counts += torch.bincount(ids, minlength=K)
        self.num_classes, self.dim = K, sums.shape[1]
        self.register_buffer("class_counts", counts)
        self.register_buffer("means", sums / counts[:, None])
        self.fitted = True
        return self

    def _log_prob(self, x):  # noqa: ANN001, ANN202
        return -0.5 * torch.cdist(x.double(), self.means).to(x.dtype) ** 2


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def run_case(mode: str, n: int, d: int) -> dict:
    ds = Samples(n, d)
    base = rss_kib()
    if mode == "stacked":
        x = torch.stack([ds[i]["pixel_values"] for i in range(n)])
        y = torch.tensor([ds[i]["label"] for i in range(n)])
        gl = mixkit.GenLabel("gaussian").fit(x, y)
    else:
        density = "gaussian" if mode == "gaussian" else StreamingSums()
        gl = mixkit.GenLabel(density).fit(DataLoader(ds, batch_size=64))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored = sum(b.numel() * b.element_size() for b in gl.density.buffers())
    return {"mode": mode, "n": n, "d": d, "peak_above_baseline_mib": (peak - base) / 1024,
            "density_bytes_mib": stored / 2**20, "data_mib": n * d * 4 / 2**20,
            "gaussian_streams": hasattr(mixkit.Gaussian, "fit_batches")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), int(args.case[2]))))
        return
    names = {"gaussian": "loader -> Gaussian", "sums": "loader -> streaming sums",
             "stacked": "stacked tensor -> Gaussian"}
    print(f"d={args.d}, K={K}, batch 64; MiB above the baseline after imports")
    print(f"{'case':28s} {'n':>7s} {'data MiB':>9s} {'peak MiB':>9s} {'density MiB':>12s}")
    for mode in names:
        for n in args.n:
            out = subprocess.run([sys.executable, __file__, "--case", mode, str(n), str(args.d)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{names[mode]:28s} {n:7d} {r['data_mib']:9.1f} {r['peak_above_baseline_mib']:9.1f} "
                  f"{r['density_bytes_mib']:12.2f}")
    print("Gaussian.fit_batches present:", r["gaussian_streams"])


if __name__ == "__main__":
    main()
