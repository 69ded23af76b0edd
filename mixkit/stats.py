"""Relabel statistics summed where the batches arrive: the main process of a training loop.

Relabelers count what they did per batch in :attr:`MixedBatch.info` (GenLabel:
``info["genlabel"] = {"changed", "fallback", "n"}``; GenMix: ``info["genmix"]``;
ExcludeIntrusion: ``info["excluded"]``). When relabeling runs in ``DataLoader``
workers, the relabeler's own totals (``GenLabel.stats()``) live in the workers'
copies and read zero in the main process; the per-batch counts travel with the
batch instead (``MixCollate(..., return_batch=True)``), and
:class:`RelabelStats` adds them up::

    stats = mixkit.RelabelStats()
    for batch in stats.wrap(loader):          # or stats.update(batch) in the loop
        loss = soft_ce(model(batch.x), batch.y)
        ...
    print(stats.compute())   # {"genlabel.changed": 812, "genlabel.fallback": 0,
                             #  "genlabel.n": 50000, "genlabel.changed_rate": 0.016, ...}

Counts that are tensors stay on their device and are summed there; only
:meth:`RelabelStats.compute` reads them back (one sync), so the loop never waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from mixkit.batch import MixedBatch

Number = int | float


def find_info(batch: Any) -> Mapping[str, Any] | None:
    """The ``info`` of a batch: a :class:`MixedBatch`, a sequence holding one, or ``None``."""
    if isinstance(batch, MixedBatch):
        return batch.info
    if isinstance(batch, (tuple, list)):
        for item in batch:
            if isinstance(item, MixedBatch):
                return item.info
    return None


class RelabelStats:
    """Sums the numeric counts of ``MixedBatch.info`` over the batches it is shown.

    Nested counts are keyed ``"group.name"`` (``"genlabel.changed"``). Accepts a
    :class:`MixedBatch`, a tuple/list holding one, or an ``info`` mapping itself;
    anything else (a plain ``(x, y)`` pair) counts as a batch without counts.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.batches = 0
        self._sums: dict[str, Tensor | Number] = {}

    def update(self, batch: Any) -> Any:
        """Add the counts of one batch; returns ``batch`` unchanged (for use inline)."""
        info = batch if isinstance(batch, Mapping) and not _looks_like_data(batch) else find_info(batch)
        self.batches += 1
        if info:
            self._add(info, "")
        return batch

    def wrap(self, loader: Iterable) -> Iterator[Any]:
        """Yield the batches of ``loader``, counting each."""
        for batch in loader:
            yield self.update(batch)

    def compute(self) -> dict[str, Number]:
        """The sums so far as Python numbers (reads device counts back: one sync), plus a
        ``<group>.<name>_rate`` = count / ``<group>.n`` for every group that counts rows."""
        out: dict[str, Number] = {}
        for key, value in self._sums.items():
            if torch.is_tensor(value):
                value = value.item()
                value = int(value) if float(value).is_integer() else float(value)
            out[key] = value
        for key in list(out):
            group, _, name = key.rpartition(".")
            total = out.get(f"{group}.n") if group else None
            if name != "n" and total:
                out[f"{key}_rate"] = out[key] / total
        return out

    def _add(self, info: Mapping[str, Any], prefix: str) -> None:
        for key, value in info.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                self._add(value, name + ".")
                continue
            if torch.is_tensor(value):
                if value.numel() != 1 or value.is_complex():
                    continue  # not a count
                value = value.detach().reshape(())
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            current = self._sums.get(name)
            if current is None:
                self._sums[name] = value.clone() if torch.is_tensor(value) else value
            elif torch.is_tensor(current) and torch.is_tensor(value) and current.device != value.device:
                self._sums[name] = current + value.to(current.device)
            else:
                self._sums[name] = current + value

    def __repr__(self) -> str:
        return f"RelabelStats(batches={self.batches}, keys={sorted(self._sums)})"


def _looks_like_data(batch: Mapping) -> bool:
    # a dict batch (Hugging Face style) is data, not an info mapping: it holds big tensors
    return any(torch.is_tensor(v) and v.numel() > 1 for v in batch.values())


__all__ = ["RelabelStats", "find_info"]
