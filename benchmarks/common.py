"""Small helpers shared by the suites: progress bars, threads, timing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

_PROGRESS = {"enabled": True}


def set_progress(enabled: bool) -> None:
    """Turn the tqdm progress bars of every suite on or off."""
    _PROGRESS["enabled"] = bool(enabled)


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on stderr (a no-op wrapper when tqdm is missing or bars are off)."""
    disable = not _PROGRESS["enabled"]
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a bench dependency
        return _NoBar(iterable)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=disable, **kwargs)


class _NoBar:
    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable or ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads (``None``: ``MIXKIT_BENCH_THREADS`` or all cores, max 16)."""
    if n is None:
        env = os.environ.get("MIXKIT_BENCH_THREADS")
        n = int(env) if env else min(16, os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


@contextmanager
def timer(store: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``store[key]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - start


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population standard deviation (the paper's ``mean±std`` over seeds)."""
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    var = sum((v - m) ** 2 for v in vals) / len(vals)
    return m, var**0.5


def log(msg: str) -> None:
    """One line on stderr (through tqdm so that bars stay intact)."""
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(msg, file=sys.stderr)
