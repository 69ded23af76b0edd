"""Timing that holds on CPU and GPU: warm-up, device synchronisation, best of repeated means."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device: torch.device | str = "cpu", budget: float = 0.25,
           repeats: int = 5, calls: int | None = None) -> float:
    """Seconds per call: the best of ``repeats`` means, each over about ``budget`` seconds
    (or over exactly ``calls`` calls, for steps too slow to fit a budget).

    The best mean (not the mean of all) because on a shared machine the noise only ever
    adds time; the device is synchronised around each mean so GPU work is counted.
    """
    device = torch.device(device)
    for _ in range(3):
        fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    once = max(time.perf_counter() - start, 1e-7)
    n = calls if calls is not None else max(1, int(budget / once))
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def row(group: str, case: str, method: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"group": group, "case": case, "method": method, "us": seconds * 1e6, **extra}
