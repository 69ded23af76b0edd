"""Bounded memory without a loop over samples: the chunk sizes every scorer shares.

A batched computation whose intermediate holds ``elements_per_row`` values per row of its
input runs over chunks of rows, each one batched pass over all its rows and classes, so
that the intermediate stays near a budget whatever the batch size. The densities, the
nearest-neighbour labels of :mod:`mixkit.baselines` and the plugins' networks all take
their chunks from here; the budgets are read at call time, so a test or a tuning sweep
can change them on this module.
"""

from __future__ import annotations

from collections.abc import Iterator

#: budget of a scoring temporary, in elements (4 MB in float32). Larger blocks come back
#: from the allocator as fresh pages and fault on every call, and at low ``d`` the kernel
#: sums are bound by memory traffic: blocks that stay in cache measured 2.7-3.3x faster
#: than 2^24 elements (KDE) and 1.1-1.3x (Gaussian, d = 512, K = 100). Smaller blocks cost
#: more calls than they save.
CHUNK_ELEMENTS = 1 << 20
#: fewest rows a scoring chunk takes: below it the per-class GEMMs get too thin and the
#: fitted weights are read once per handful of rows
MIN_ROWS = 64
#: hard cap where throughput matters more than cache: network forward passes (the flow,
#: VAE and GAN plugins), pairwise distances to a whole training set, KDE blocks raised to
#: MIN_ROWS rows
MAX_ELEMENTS = 1 << 24


def rows_per_chunk(elements_per_row: int, *, min_rows: int = 1, budget: int | None = None) -> int:
    """Rows whose intermediate of ``elements_per_row`` each fits ``budget`` elements
    (:data:`CHUNK_ELEMENTS` by default), but at least ``min_rows`` (and at least 1)."""
    budget = CHUNK_ELEMENTS if budget is None else budget
    return max(min_rows, budget // max(1, elements_per_row), 1)


def row_chunks(n: int, elements_per_row: int, *, min_rows: int = 1, budget: int | None = None) -> Iterator[slice]:
    """Slices covering ``range(n)`` in chunks of :func:`rows_per_chunk` rows."""
    step = rows_per_chunk(elements_per_row, min_rows=min_rows, budget=budget)
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


__all__ = ["CHUNK_ELEMENTS", "MAX_ELEMENTS", "MIN_ROWS", "row_chunks", "rows_per_chunk"]
