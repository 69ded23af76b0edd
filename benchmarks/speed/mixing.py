"""Mixing one batch: mixkit against its floor, timm, torchvision and a naive loop."""

from __future__ import annotations

import numpy as np
import torch

import mixkit
from benchmarks.speed.timing import row, timeit

SHAPE = (128, 3, 32, 32)
K = 10


def mix_rows(device: torch.device, budget: float) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(SHAPE, generator=g).to(device)
    y = torch.randint(0, K, (SHAPE[0],), generator=g).to(device)
    index = torch.randperm(SHAPE[0], generator=g).to(device)
    case = f"batch {SHAPE}, K={K}, {device.type}"
    mixer = mixkit.Mixup(alpha=1.0, num_classes=K, seed=0)
    lean = mixkit.Mixup(alpha=1.0, num_classes=K, seed=0, validate=False)
    collate = mixkit.MixCollate("mixup", num_classes=K, alpha=1.0, seed=0)
    times = {
        # the arithmetic every mixup must do: gather the partners, one pass of lerp
        "floor: index_select + lerp_": timeit(lambda: x.index_select(0, index).lerp_(x, 0.3), device, budget),
        "mixkit Mixup": timeit(lambda: mixer(x, y), device, budget),
        "mixkit Mixup, validate=False": timeit(lambda: lean(x, y), device, budget),
        "mixkit MixCollate(mixup) on tensors": timeit(lambda: collate(x, y), device, budget),
    }
    try:
        from timm.data import Mixup as TimmMixup

        timm_mix = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, label_smoothing=0.0, num_classes=K)
        x_timm = x.clone()  # timm mixes in place: its own copy (mixes of mixes stay finite)
        times["timm Mixup (in place)"] = timeit(lambda: timm_mix(x_timm, y), device, budget)
    except ImportError:
        pass
    try:
        from torchvision.transforms import v2

        tv_mix = v2.MixUp(alpha=1.0, num_classes=K)
        times["torchvision v2.MixUp"] = timeit(lambda: tv_mix(x, y), device, budget)
    except ImportError:
        pass

    def naive() -> tuple:
        lam = float(np.random.beta(1.0, 1.0))
        perm = torch.randperm(SHAPE[0])
        out = torch.empty_like(x)
        y1 = torch.nn.functional.one_hot(y, K).float()
        ys = torch.empty_like(y1)
        for i in range(SHAPE[0]):
            out[i] = lam * x[i] + (1 - lam) * x[perm[i]]
            ys[i] = lam * y1[i] + (1 - lam) * y1[perm[i]]
        return out, ys

    times["naive per-sample loop"] = timeit(naive, device, budget, repeats=2)
    floor = times["floor: index_select + lerp_"]
    timm_t = times.get("timm Mixup (in place)")
    return [row("mix", case, name, t, vs_floor=t / floor, vs_timm=None if timm_t is None else t / timm_t)
            for name, t in times.items()]
