"""MixCollate: a drop-in ``collate_fn`` that mixes and relabels, and the on-device path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import default_collate

from mixkit.batch import MixedBatch
from mixkit.mixers.base import Mixer
from mixkit.registry import create_mixer

Relabel = Callable[[MixedBatch], MixedBatch]

_CUDA_IN_WORKER = (
    "MixCollate received CUDA tensors inside a DataLoader worker, where CUDA cannot run. "
    "Let the collate_fn mix on the CPU (the default path), or mix on the GPU inside the "
    "training loop with the same object: `x, y = mix(x.cuda(), y.cuda())`, or "
    "`for x, y in mixkit.on_device(loader, mix, 'cuda')` with a plain collate_fn."
)


def _derive_seed(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class MixCollate:
    """A picklable ``collate_fn`` that mixes (and optionally relabels) each batch.

    ``DataLoader(ds, batch_size=128, collate_fn=MixCollate("mixup", num_classes=10))``
    yields ``(x_mixed, y_soft)``. The same object mixes tensors already on any
    device: ``x, y = collate(x.cuda(), y.cuda())``.

    Args:
        mixer: a registered mixer name or a :class:`mixkit.Mixer` instance.
        num_classes: number of classes (needed for class-id labels).
        relabel: a relabeler (``MixedBatch -> MixedBatch``, e.g. :class:`mixkit.GenLabel`)
            or a sequence of them applied in order.
        collate_fn: how samples become a batch first (``default_collate``); must
            return ``(x, y)`` or a sequence whose first two items are ``x`` and ``y``.
        seed: optional seed mixed into every derived stream.
        return_batch: return the whole :class:`MixedBatch` instead of ``(x, y)``.
        **mixer_kwargs: passed to the mixer when it is given by name (``alpha=...``).

    Randomness: in a DataLoader worker the generator is derived from the
    worker's seed (the loader's base seed, which its ``generator`` controls and
    which changes every epoch, plus the worker id), so a seeded run repeats
    exactly while workers and epochs differ. In the main process one stream is
    seeded once (from ``seed``, else from torch's global RNG) and continues.
    """

    def __init__(
        self,
        mixer: str | Mixer = "mixup",
        num_classes: int | None = None,
        relabel: Relabel | Sequence[Relabel] | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        *,
        seed: int | None = None,
        return_batch: bool = False,
        **mixer_kwargs: Any,
    ) -> None:
        if isinstance(mixer, str):
            mixer = create_mixer(mixer, num_classes=num_classes, **mixer_kwargs)
        elif mixer_kwargs:
            raise TypeError("mixer keyword arguments are only accepted with a mixer name")
        elif num_classes is not None and mixer.num_classes is None:
            mixer.num_classes = int(num_classes)
        if relabel is None:
            relabel = ()
        elif callable(relabel):
            relabel = (relabel,)
        self.mixer = mixer
        self.relabel = tuple(relabel)
        self.collate_fn = collate_fn
        self.seed = seed
        self.return_batch = return_batch
        self._generator: torch.Generator | None = None
        self._stream_key: tuple | None = None

    def __repr__(self) -> str:
        return f"MixCollate(mixer={self.mixer!r}, relabel={list(self.relabel)!r})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None  # re-derived in each worker
        state["_stream_key"] = None
        return state

    def generator(self) -> torch.Generator:
        """The generator for this process: per worker and epoch in a DataLoader worker."""
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._generator is None or key != self._stream_key:
            if info is not None:
                seed = info.seed if self.seed is None else _derive_seed(self.seed, info.seed)
            elif self.seed is not None:
                seed = self.seed
            else:
                seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            self._generator = torch.Generator().manual_seed(seed)
            self._stream_key = key
        return self._generator

    def mix(self, x: Tensor, y: Tensor) -> MixedBatch:
        """Mix and relabel ``(x, y)`` on whatever device they are on."""
        if get_worker_info() is not None and (
            (torch.is_tensor(x) and x.is_cuda) or (torch.is_tensor(y) and y.is_cuda)
        ):
            raise RuntimeError(_CUDA_IN_WORKER)
        batch = self.mixer(x, y, generator=self.generator())
        for relabel in self.relabel:
            batch = relabel(batch)
        return batch

    def __call__(self, samples_or_x: Any, y: Tensor | None = None) -> Any:
        if y is None:  # DataLoader path: a list of samples
            collated = (self.collate_fn or default_collate)(samples_or_x)
            if not isinstance(collated, (tuple, list)) or len(collated) < 2:
                raise TypeError(
                    "the base collate_fn must return (x, y) or a sequence starting with x and y; "
                    f"got {type(collated).__name__}"
                )
            x, y = collated[0], collated[1]
        else:
            x = samples_or_x
        batch = self.mix(x, y)
        return batch if self.return_batch else (batch.x, batch.y)


def on_device(
    loader: Iterable,
    mix: Callable[[Tensor, Tensor], Any] | None,
    device: torch.device | str,
    *,
    non_blocking: bool | None = None,
) -> Iterator[Any]:
    """Move each ``(x, y)`` batch of ``loader`` to ``device`` and mix it there.

    ``mix`` is a :class:`MixCollate` (or any callable on ``(x, y)``), ``None``
    to only move. Transfers are non-blocking when the loader pins memory.
    """
    device = torch.device(device)
    if non_blocking is None:
        non_blocking = bool(getattr(loader, "pin_memory", False)) and device.type == "cuda"
    for batch in loader:
        x, y = batch[0], batch[1]
        x = x.to(device, non_blocking=non_blocking)
        y = y.to(device, non_blocking=non_blocking)
        yield (x, y) if mix is None else mix(x, y)
