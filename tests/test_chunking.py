"""The shared chunk sizes: slices cover every row once, in order, within the budget."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mixkit import chunking
from mixkit.chunking import row_chunks, rows_per_chunk


@given(n=st.integers(0, 5000), per_row=st.integers(0, 10**7), min_rows=st.integers(1, 100),
       budget=st.integers(1, 10**6))
def test_row_chunks_cover_the_rows_once_within_the_budget(n, per_row, min_rows, budget):
    parts = list(row_chunks(n, per_row, min_rows=min_rows, budget=budget))
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
    step = rows_per_chunk(per_row, min_rows=min_rows, budget=budget)
    assert step >= min_rows
    # a chunk holds more than min_rows rows only while its intermediate fits the budget
    assert step == min_rows or step * max(1, per_row) <= budget
    assert all(p.stop - p.start == step for p in parts[:-1])


def test_the_default_budget_is_read_at_call_time(monkeypatch):
    assert rows_per_chunk(1024) == chunking.CHUNK_ELEMENTS // 1024
    monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", 4096)
    assert rows_per_chunk(1024) == 4
    assert rows_per_chunk(10**9) == 1  # never zero rows
