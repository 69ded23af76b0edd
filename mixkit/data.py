"""Batches as users have them: tuples, dicts (Hugging Face style), datasets and loaders.

Two jobs, shared by the collate path, the on-device path and ``fit``:

* :func:`unpack` finds the inputs and labels in one batch (a ``(x, y, ...)``
  tuple or list, a namedtuple, or a mapping such as ``{"pixel_values": x,
  "label": y, ...}``) and returns a function that puts new ones back, so a dict
  in gives a dict out and extra items pass through untouched;
* :func:`iter_batches` streams ``(x, y)`` batches out of tensors, a
  ``Dataset`` (of tuples or dicts), a ``DataLoader`` or any iterable of batches.

Key lookup for mappings: an explicit key wins; otherwise the first of
:data:`INPUT_KEYS` / :data:`LABEL_KEYS` present in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

INPUT_KEYS = ("x", "input", "inputs", "image", "images", "img", "pixel_values", "features", "data")
LABEL_KEYS = ("y", "label", "labels", "target", "targets", "class", "class_id")

Repack = Callable[[Any, Any], Any]


def find_key(batch: Mapping, key: str | None, candidates: tuple[str, ...], what: str) -> str:
    """``key`` if given (checked), else the first of ``candidates`` in ``batch``."""
    if key is not None:
        if key not in batch:
            raise KeyError(f"the batch has no {what} key {key!r}; its keys are {sorted(map(str, batch))}")
        return key
    for name in candidates:
        if name in batch:
            return name
    raise KeyError(
        f"cannot tell which item of the batch holds the {what}: none of {list(candidates)} is among its "
        f"keys {sorted(map(str, batch))}; pass {'input_key' if what == 'inputs' else 'label_key'}=..."
    )


def unpack(batch: Any, input_key: str | None = None, label_key: str | None = None) -> tuple[Any, Any, Repack]:
    """``(x, y, repack)`` of one batch; ``repack(x2, y2)`` rebuilds it with the other items kept."""
    if isinstance(batch, Mapping):
        kx = find_key(batch, input_key, INPUT_KEYS, "inputs")
        ky = find_key(batch, label_key, LABEL_KEYS, "labels")

        def repack_map(x: Any, y: Any) -> Any:
            out = dict(batch)
            out[kx], out[ky] = x, y
            try:
                return type(batch)(out)  # keep a dict subclass (e.g. transformers' BatchEncoding)
            except Exception:  # a mapping type that cannot be rebuilt from a dict: a plain dict
                return out

        return batch[kx], batch[ky], repack_map
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        rest = tuple(batch[2:])

        def repack_seq(x: Any, y: Any) -> Any:
            items = (x, y, *rest)
            if hasattr(batch, "_make"):  # a namedtuple
                return batch._make(items)
            return type(batch)(items)

        return batch[0], batch[1], repack_seq
    raise TypeError(
        f"a batch must be (x, y, ...) or a mapping with input and label keys, got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    )


def iter_batches(
    data: Any,
    y: Any = None,
    *,
    batch_size: int = 256,
    input_key: str | None = None,
    label_key: str | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Stream ``(x, y)`` batches out of what users have.

    * ``data`` a tensor (or array) and ``y`` its labels: chunks of ``batch_size`` rows;
    * a :class:`~torch.utils.data.DataLoader` or any other iterable that is not
      indexable (a generator of batches): its batches, unpacked by :func:`unpack`;
    * a ``Dataset`` or any indexable sized collection of *samples* (a list of
      dicts included): batched with a ``DataLoader(batch_size=batch_size)``.
    """
    if y is not None:
        x = data if torch.is_tensor(data) else torch.as_tensor(data)
        y = y if torch.is_tensor(y) else torch.as_tensor(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        for i in range(0, x.shape[0], batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    if torch.is_tensor(data):
        raise TypeError("got inputs without labels: pass fit(x, y), or a dataset / loader of (x, y) batches")
    if isinstance(data, DataLoader):
        batches: Iterable = data
    elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                       and not isinstance(data, (Mapping, str))):
        batches = DataLoader(data, batch_size=batch_size, shuffle=False)
    elif isinstance(data, Iterable):
        batches = data
    else:
        raise TypeError(
            f"cannot read batches from {type(data).__name__}: pass (x, y) tensors, a Dataset, a "
            "DataLoader or an iterable of (x, y) batches"
        )
    for batch in batches:
        x, yb, _ = unpack(batch, input_key, label_key)
        yield x, yb


__all__ = ["INPUT_KEYS", "LABEL_KEYS", "find_key", "iter_batches", "unpack"]
