"""The arguments every suite receives: one dataclass, built by the CLI (or a test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SuiteArgs:
    """What ``python -m benchmarks SUITE ...`` passes to ``suite.run(args)``.

    ``quick``/``smoke``: smaller versions of a suite (``smoke`` implies ``quick``);
    ``seeds``: ``None`` is the suite's (or protocol's) default; ``datasets``/``models``:
    subsets (``None``: all); ``protocol``: ``"paper"`` or ``"rigorous"`` for the suites
    that train (see :mod:`benchmarks.protocols`), ignored by ``theory`` and ``speed``;
    ``workers``: processes for the tabular suite's datasets (one torch thread each).
    """

    quick: bool = False
    smoke: bool = False
    seeds: int | None = None
    out_dir: Path | None = None
    data_dir: Path | None = None
    datasets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    device: str = "cpu"
    protocol: str = "rigorous"
    workers: int = 1  # tabular: datasets run in this many processes
