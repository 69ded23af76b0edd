"""The collate pipeline: samples/s through a 2-worker DataLoader, against ``default_collate`` alone.

Every variant iterates the same dataset with the same loader settings (batch 128, two
persistent workers); the first epoch is a warm-up, the second is timed. Ratios are to
``default_collate`` on the same data (float images; uint8 images for timm's
``FastCollateMixup``, which wants uint8 numpy samples).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

import mixkit
from benchmarks.speed.timing import row

K = 10


class Images(Dataset):
    """``n`` fixed random images (3, 32, 32) as float tensors or uint8 numpy arrays."""

    def __init__(self, n: int, uint8: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        data = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        self.x = data.numpy() if uint8 else data.float() / 255
        self.y = (torch.arange(n) % K).tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.x[i], self.y[i]


class TorchvisionChoice:
    """torchvision's reference pattern: default_collate, then RandomChoice([MixUp, CutMix])."""

    def __init__(self) -> None:
        from torchvision.transforms import v2

        self.choice = v2.RandomChoice([v2.MixUp(alpha=1.0, num_classes=K), v2.CutMix(alpha=1.0, num_classes=K)])

    def __call__(self, batch: list) -> Any:
        return self.choice(*default_collate(batch))


def samples_per_second(ds: Dataset, collate: Callable, n_batches: int) -> float:
    loader = DataLoader(ds, batch_size=128, num_workers=2, persistent_workers=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up epoch: worker start, first allocations
        pass
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += len(batch[1])
    seconds = time.perf_counter() - start
    del loader
    return seen / seconds


def pipeline_rows(quick: bool) -> list[dict]:
    n_batches = 10 if quick else 40
    n = 128 * n_batches
    floats, uint8 = Images(n), Images(n, uint8=True)
    flat = torch.as_tensor(floats.x).reshape(n, -1)
    genlabel = mixkit.GenLabel("gaussian", covariance="diag").fit(flat, torch.tensor(floats.y))
    variants: dict[str, tuple[Dataset, Callable]] = {
        "default_collate": (floats, default_collate),
        "mixkit MixCollate(mixup)": (floats, mixkit.MixCollate("mixup", num_classes=K)),
        "mixkit MixCollate(mixup) + GenLabel(diag, d=3072)": (
            floats, mixkit.MixCollate("mixup", num_classes=K, relabel=genlabel)),
    }
    try:
        variants["torchvision RandomChoice([MixUp, CutMix])"] = (floats, TorchvisionChoice())
    except ImportError:
        pass
    try:
        from timm.data import FastCollateMixup

        variants["default_collate (uint8 numpy)"] = (uint8, lambda b: default_collate(
            [(torch.from_numpy(np.ascontiguousarray(x)), y) for x, y in b]))
        variants["timm FastCollateMixup (uint8 numpy)"] = (uint8, FastCollateMixup(
            mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=K))
    except ImportError:
        pass
    rates = {name: samples_per_second(ds, fn, n_batches) for name, (ds, fn) in variants.items()}
    rows = []
    for name, rate in rates.items():
        base = rates["default_collate (uint8 numpy)" if "uint8" in name else "default_collate"]
        rows.append(row("pipeline", f"{n} samples (3, 32, 32), 2 workers, batch 128", name, 1.0 / rate,
                        samples_per_s=rate, vs_default_collate=rate / base))
    return rows
