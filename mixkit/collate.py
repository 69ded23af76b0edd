"""MixCollate: a drop-in ``collate_fn`` that mixes and relabels, and the on-device path.

**Seeds.** Which stream a batch is mixed with, first rule that applies:

1. an explicit seed: the mixer's own ``seed``, else ``MixCollate(seed=...)``.
   In the main process the stream is that seed (derived per rank, see
   :mod:`mixkit.random`) and continues from batch to batch. In DataLoader
   worker ``w`` of rank ``r`` it is ``derive_seed(seed, r, w, epoch)``, where
   ``epoch`` is what :meth:`MixCollate.set_epoch` was given, else the number of
   times this collate's workers were started; so a rerun repeats exactly
   whether or not the global RNG or the loader is seeded;
2. no explicit seed, in a worker: the worker's DataLoader seed (the loader's
   ``generator``, else the global RNG, new every epoch), the worker's torch
   seed (which Lightning's and timm's ``worker_init_fn`` reseed per rank) and the
   rank, hashed together;
3. no explicit seed, in the main process: one draw from torch's global RNG,
   derived per rank. (PyTorch gives a ``collate_fn`` no access to the loader's
   ``generator`` with ``num_workers=0``: seed the collate or ``torch.manual_seed``.)

**Switches that reach persistent workers.** ``enabled`` (alias ``mixup_enabled``,
timm's name) and :meth:`set_epoch` (with ``off_epoch``, timm's
``--mixup-off-epoch``) live in a small shared-memory tensor that every worker
reads on each batch. Other attributes changed after the workers started do not
reach them.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import get_worker_info
from torch.utils.data._utils.collate import default_collate

from mixkit._validation import check_int, check_range, check_seed
from mixkit.batch import MixedBatch
from mixkit.data import INPUT_KEYS, find_key, unpack
from mixkit.mixers.base import Mixer, MixParams
from mixkit.mixers.composite import MixChoice
from mixkit.random import current_rank, derive_seed, process_seed
from mixkit.registry import create_mixer
from mixkit.timm_compat import TIMM_DEFAULTS, timm_mixer

Relabel = Callable[[MixedBatch], MixedBatch]

_CUDA_IN_WORKER = (
    "MixCollate received CUDA tensors inside a DataLoader worker, where CUDA cannot run. "
    "Let the collate_fn mix on the CPU (the default path), or mix on the GPU inside the "
    "training loop with the same object: `x, y = mix(x.cuda(), y.cuda())`, or "
    "`for x, y in mixkit.on_device(loader, mix, 'cuda')` with a plain collate_fn."
)
_MODEL_SIDE = (
    "{name} is a model-side mixer (an nn.Module that mixes hidden states during the forward pass), "
    "so it cannot run in a collate_fn: keep a plain collate and mix inside the training loop, "
    "e.g. `logits, y_soft = model_with_manifold_mixup(x, y)`"
)
_COMPOSITE_KWARGS = ("prob", "mode", "weights", "switch_prob")
_ENABLED, _EPOCH, _STARTS = 0, 1, 2
_MAX_WORKER_SLOTS = 256


def _smooth(y: Tensor, s: float, multi_label: bool) -> Tensor:
    """Label smoothing of final targets: towards uniform (towards 0.5 for multi-hot rows, as timm)."""
    return y * (1.0 - s) + (0.5 * s if multi_label else s / y.shape[1])


class MixCollate:
    """A picklable ``collate_fn`` that mixes (and optionally relabels) each batch.

    ``DataLoader(ds, batch_size=128, collate_fn=MixCollate("mixup", num_classes=10))``
    yields ``(x_mixed, y_soft)``. The same object mixes batches already on any
    device: ``collate(x.cuda(), y.cuda())`` or ``collate((x, y))``.

    Batches come and go in the user's shape: tuples ``(x, y, *extra)`` keep their
    extra items, dicts (Hugging Face style) come back as dicts with the input and
    label entries replaced; a tuple or a mapping passed in is one batch, a list is
    the list of samples a DataLoader passes.

    Args:
        mixer: a registered mixer name, a :class:`mixkit.Mixer` instance (copied if
            something must change, never modified) or a list of them (a
            :class:`mixkit.MixChoice`; ``weights``/``switch_prob``/``prob``/``mode``
            go to it, and also wrap a single mixer).
        num_classes: number of classes (needed for class-id labels).
        relabel: a relabeler (``MixedBatch -> MixedBatch``, e.g. :class:`mixkit.GenLabel`)
            or a sequence of them, applied in order, each to the previous one's
            output (``y`` the labels so far, ``y_mix`` the mixing label). Skipped for
            batches left unmixed.
        collate_fn: how samples become a batch first (``default_collate``).
        seed: seed of the collate's stream (see the module docstring for the rule).
        return_batch: return the whole :class:`MixedBatch` instead of the batch.
        label_smoothing: smoothing of the final targets (after relabeling), as
            ``CrossEntropyLoss(label_smoothing=...)`` would apply it.
        off_epoch: from this epoch on (see :meth:`set_epoch`) batches are left unmixed.
        input_key, label_key: keys of dict batches (default: the first of
            :data:`mixkit.data.INPUT_KEYS` / ``LABEL_KEYS`` present).
        labels_getter: torchvision-style ``batch -> labels`` callable, instead of
            ``label_key``; the labels are put back where it found them.
        inplace_collate: ``collate_fn`` returns fresh tensors (it stacks or copies),
            so its batch may be mixed into as ``default_collate``'s is.
        **mixer_kwargs: passed to the mixer when it is given by name (``alpha=...``).

    In-place mixing: a batch this object collated itself (``default_collate``, in
    shared memory inside a worker) is mixed into directly, which saves a copy per
    batch; a batch passed in, or built by a custom ``collate_fn``, is never written
    (unless ``inplace_collate=True`` says that ``collate_fn`` builds fresh tensors).
    """

    def __init__(
        self,
        mixer: str | Mixer | Sequence[str | Mixer] = "mixup",
        num_classes: int | None = None,
        relabel: Relabel | Sequence[Relabel] | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        *,
        seed: int | None = None,
        return_batch: bool = False,
        label_smoothing: float = 0.0,
        off_epoch: int | None = None,
        input_key: str | None = None,
        label_key: str | None = None,
        labels_getter: Callable[[Any], Tensor] | None = None,
        inplace_collate: bool = False,
        **mixer_kwargs: Any,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, 1, allow_none=True)
        self.mixer = self._resolve_mixer(mixer, num_classes, mixer_kwargs)
        self.relabel = self._check_relabel(relabel)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
        if labels_getter is not None and (not callable(labels_getter) or label_key is not None):
            raise TypeError("labels_getter must be a callable batch -> labels, and exclusive with label_key")
        self.collate_fn = collate_fn
        self.seed = check_seed(seed)
        self.return_batch = bool(return_batch)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.off_epoch = check_int("off_epoch", off_epoch, 0, allow_none=True)
        self.input_key, self.label_key, self.labels_getter = input_key, label_key, labels_getter
        self.inplace_collate = bool(inplace_collate)
        self._state = torch.zeros(_STARTS + _MAX_WORKER_SLOTS, dtype=torch.int64)
        self._state[_ENABLED], self._state[_EPOCH] = 1, -1
        self._state.share_memory_()  # so that persistent workers see enabled / set_epoch
        self._generator: torch.Generator | None = None
        self._stream_key: tuple | None = None

    @classmethod
    def from_timm(cls, *, label_smoothing: float = TIMM_DEFAULTS["label_smoothing"],
                  num_classes: int = TIMM_DEFAULTS["num_classes"], pairing: str = "flip",
                  seed: int | None = None, **kwargs: Any) -> MixCollate:
        """A MixCollate from timm's ``Mixup`` arguments, verbatim (see :mod:`mixkit.timm_compat`).

        ``MixCollate.from_timm(**mixup_args)`` takes every ``timm.data.Mixup``
        argument with timm's defaults, plus MixCollate's own (``relabel``,
        ``collate_fn``, ``off_epoch``, ...). Call it as timm's ``mixup_fn(x, y)`` in
        the loop or pass it as the DataLoader's ``collate_fn``.
        """
        timm_args = {k: kwargs.pop(k) for k in list(kwargs) if k in TIMM_DEFAULTS}
        unknown = set(kwargs) - set(inspect.signature(cls.__init__).parameters) - {"self", "mixer"}
        if unknown:
            raise TypeError(
                f"from_timm got unknown arguments {sorted(unknown)}; it takes timm.data.Mixup's "
                f"{sorted(TIMM_DEFAULTS)} and MixCollate's own (relabel, collate_fn, off_epoch, ...)"
            )
        mixer = timm_mixer(num_classes=num_classes, pairing=pairing, seed=seed, **timm_args)
        return cls(mixer, num_classes, label_smoothing=label_smoothing, **kwargs)

    @staticmethod
    def _resolve_mixer(mixer: Any, num_classes: int | None, kwargs: dict[str, Any]) -> Mixer:
        if isinstance(mixer, torch.nn.Module):
            raise TypeError(_MODEL_SIDE.format(name=type(mixer).__name__))
        composite = {k: kwargs.pop(k) for k in _COMPOSITE_KWARGS if k in kwargs}
        if isinstance(mixer, (list, tuple)):
            if kwargs:
                raise TypeError(
                    f"with a list of mixers, {sorted(kwargs)} cannot tell which mixer they are for: "
                    "pass instances, e.g. [mixkit.Mixup(alpha=0.8), mixkit.CutMix(alpha=1.0)]"
                )
            return MixChoice(list(mixer), num_classes=num_classes, **composite)
        if isinstance(mixer, str):
            mixer = create_mixer(mixer, num_classes=num_classes, **kwargs)
        elif not isinstance(mixer, Mixer):
            raise TypeError(f"mixer must be a mixer name, a mixkit.Mixer or a list of them, got {type(mixer).__name__}")
        elif kwargs:
            raise TypeError("mixer keyword arguments are only accepted with a mixer name")
        elif num_classes is not None and mixer.num_classes != num_classes:
            if mixer.num_classes is not None:
                raise ValueError(f"the mixer has num_classes={mixer.num_classes} but num_classes={num_classes}")
            mixer = copy.copy(mixer)  # never set attributes on the caller's mixer
            mixer.num_classes = num_classes
        if composite:
            mixer = MixChoice([mixer], num_classes=num_classes, seed=mixer.seed, **composite)
        return mixer

    @staticmethod
    def _check_relabel(relabel: Any) -> tuple[Relabel, ...]:
        if relabel is None:
            return ()
        chain = (relabel,) if callable(relabel) else relabel
        if isinstance(chain, (str, bytes)) or not isinstance(chain, Iterable):
            raise TypeError(f"relabel must be a callable MixedBatch -> MixedBatch or a list of them, got {relabel!r}")
        chain = tuple(chain)
        for i, r in enumerate(chain):
            if not callable(r):
                raise TypeError(
                    f"relabel[{i}] is a {type(r).__name__}, not a callable MixedBatch -> MixedBatch "
                    "(e.g. mixkit.GenLabel('gaussian').fit(x, y))"
                )
        return chain

    def __repr__(self) -> str:
        return f"MixCollate(mixer={self.mixer!r}, relabel={list(self.relabel)!r})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_generator"] = None  # re-derived in each worker
        state["_stream_key"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if not self._state.is_shared():  # a plain pickle or deepcopy: share the copy's switches too
            self._state.share_memory_()

    # -- switches shared with the workers --------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether batches are mixed (shared with running workers); off: unmixed, one-hot, smoothed."""
        return bool(self._state[_ENABLED])

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._state[_ENABLED] = int(bool(on))

    mixup_enabled = enabled  # timm's name, so `mixup_fn.mixup_enabled = False` works unchanged

    def set_epoch(self, epoch: int) -> None:
        """Tell the collate (and its running workers) the epoch: ``off_epoch`` and seeded streams use it."""
        self._state[_EPOCH] = check_int("epoch", epoch, 0)

    @property
    def active(self) -> bool:
        """``enabled`` and, with ``off_epoch``, the epoch set is before it."""
        if not self._state[_ENABLED]:
            return False
        return self.off_epoch is None or int(self._state[_EPOCH]) < self.off_epoch

    # -- randomness ---------------------------------------------------------------------------

    def generator(self) -> torch.Generator:
        """The generator of this process (see the module docstring for the rule)."""
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._generator is None or key != self._stream_key:
            seed = self.mixer.seed if self.mixer.seed is not None else self.seed
            if info is None:
                stream = process_seed(seed)
            elif seed is not None:
                slot = _STARTS + info.id % _MAX_WORKER_SLOTS
                starts = int(self._state[slot])
                self._state[slot] += 1  # only worker `id` writes its slot: no race
                epoch = int(self._state[_EPOCH])
                stream = derive_seed(seed, current_rank(), info.id, epoch if epoch >= 0 else starts)
            else:
                stream = derive_seed(info.seed, torch.initial_seed(), current_rank())
            self._generator = torch.Generator().manual_seed(stream)
            self._stream_key = key
        return self._generator

    # -- mixing -------------------------------------------------------------------------------

    def mix(self, x: Tensor, y: Tensor, *, lam: float | Tensor | None = None, params: MixParams | None = None,
            inplace: bool = False) -> MixedBatch:
        """Mix, relabel and smooth ``(x, y)`` on whatever device they are on.

        ``lam`` / ``params`` fix the draw (tests, benchmarks; see :meth:`mixkit.Mixer.__call__`);
        ``inplace``: ``x`` is the caller's to give up and may be mixed into.
        """
        if get_worker_info() is not None and (
            (torch.is_tensor(x) and x.is_cuda) or (torch.is_tensor(y) and y.is_cuda)
        ):
            raise RuntimeError(_CUDA_IN_WORKER)
        if self.active:
            batch = self.mixer(x, y, generator=self.generator(), lam=lam, params=params, inplace=inplace)
        else:
            batch = self.mixer.unmixed(x, y, inplace=inplace)
        if batch.info.get("mixed", True):
            for relabel in self.relabel:
                batch = relabel(batch)
                if not isinstance(batch, MixedBatch):  # fail here, not as "no attribute 'x'" later
                    raise TypeError(
                        f"relabel {relabel!r} returned {type(batch).__name__}; a relabeler must return a "
                        "MixedBatch (e.g. batch.replace(y=new_labels))"
                    )
        if self.label_smoothing:
            batch = batch.replace(y=_smooth(batch.y, self.label_smoothing, self.mixer.multi_label))
        return batch

    def unpack(self, batch: Any) -> tuple[Any, Any, Callable[[Any, Any], Any]]:
        """``(x, y, repack)`` of one batch with this collate's keys (see :func:`mixkit.data.unpack`)."""
        if self.labels_getter is None:
            return unpack(batch, self.input_key, self.label_key)
        return _unpack_with_getter(batch, self.labels_getter, self.input_key)

    def __call__(self, samples_or_x: Any, y: Tensor | None = None) -> Any:
        if y is not None:  # collate(x, y): tensors already batched
            batch = self.mix(samples_or_x, y)
            return batch if self.return_batch else (batch.x, batch.y)
        if isinstance(samples_or_x, (tuple, Mapping)):  # collate((x, y, ...)) or collate({"image": x, ...})
            collated, owned = samples_or_x, False
        elif self.collate_fn is None:  # DataLoader path: a list of samples, stacked into a batch of ours
            if isinstance(samples_or_x, Sized) and len(samples_or_x) == 0:
                raise ValueError("MixCollate got an empty list of samples; a batch needs at least one sample")
            try:
                collated, owned = default_collate(samples_or_x), True
            except (RuntimeError, TypeError) as err:
                raise type(err)(
                    f"{err} (MixCollate takes a list as the list of samples a DataLoader passes; to mix one "
                    "batch pass a tuple or a dict: collate((x, y)) or collate(x, y))"
                ) from err
        else:
            collated, owned = self.collate_fn(samples_or_x), self.inplace_collate
        try:
            x, y, repack = self.unpack(collated)
        except TypeError as err:
            raise TypeError(f"the collate_fn must return (x, y, ...) or a mapping of inputs and labels: {err}") \
                from None
        batch = self.mix(x, y, inplace=owned)
        return batch if self.return_batch else repack(batch.x, batch.y)


def from_timm(**mixup_args: Any) -> MixCollate:
    """``MixCollate.from_timm(**mixup_args)``: timm's ``Mixup`` arguments, verbatim."""
    return MixCollate.from_timm(**mixup_args)


def _unpack_with_getter(batch: Any, getter: Callable[[Any], Tensor], input_key: str | None):
    """Labels found by ``getter`` and put back where they were (matched by identity, as torchvision)."""
    y = getter(batch)
    if isinstance(batch, Mapping):
        ky = next((k for k, v in batch.items() if v is y), None)
        rest = {k: v for k, v in batch.items() if k != ky}
        kx = find_key(rest, input_key, INPUT_KEYS, "inputs")
        keys = (kx, ky)
    elif isinstance(batch, (tuple, list)):
        ky = next((i for i, v in enumerate(batch) if v is y), None)
        kx = next((i for i, v in enumerate(batch) if torch.is_tensor(v) and i != ky), None)
        keys = (kx, ky)
    else:
        raise TypeError(f"a batch must be a tuple, list or mapping, got {type(batch).__name__}")
    if None in keys:
        raise ValueError("labels_getter must return the labels tensor of the batch itself (found by identity)")

    def repack(x: Any, y_new: Any) -> Any:
        if isinstance(batch, Mapping):
            out = dict(batch)
            out[keys[0]], out[keys[1]] = x, y_new
            return out
        items = list(batch)
        items[keys[0]], items[keys[1]] = x, y_new
        return batch._make(items) if hasattr(batch, "_make") else type(batch)(items)

    return batch[keys[0]], y, repack


def on_device(
    loader: Iterable,
    mix: Callable[[Tensor, Tensor], Any] | None,
    device: torch.device | str,
    *,
    non_blocking: bool | None = None,
    input_key: str | None = None,
    label_key: str | None = None,
) -> Iterator[Any]:
    """Move the inputs and labels of each batch of ``loader`` to ``device`` and mix them there.

    ``mix`` is a :class:`MixCollate` (or any callable on ``(x, y)`` returning an
    ``(x, y)``-like pair), ``None`` to only move. Batches keep their shape: extra
    tuple items and other dict entries pass through untouched (not moved). Keys
    of dict batches: ``input_key``/``label_key``, else the MixCollate's. Transfers
    are non-blocking when the loader pins memory.
    """
    if not isinstance(loader, Iterable):
        raise TypeError(f"on_device takes an iterable of batches (a DataLoader), got {type(loader).__name__}")
    if mix is not None and not callable(mix):
        raise TypeError(f"mix must be a MixCollate, a callable (x, y) -> (x, y) or None, got {type(mix).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch.device or a name such as 'cuda', 'cuda:0', 'cpu', got {device!r}") \
            from None
    if non_blocking is None:
        non_blocking = bool(getattr(loader, "pin_memory", False)) and device.type == "cuda"
    collate = mix if isinstance(mix, MixCollate) else None
    for batch in loader:
        if collate is not None and input_key is None and label_key is None:
            x, y, repack = collate.unpack(batch)
        else:
            x, y, repack = unpack(batch, input_key, label_key)
        x_in = x
        x = x.to(device, non_blocking=non_blocking)
        y = y.to(device, non_blocking=non_blocking)
        if mix is None:
            yield repack(x, y)
        elif collate is not None:
            out = collate.mix(x, y, inplace=x is not x_in)  # a copy on the device is ours to mix into
            yield out if collate.return_batch else repack(out.x, out.y)
        else:
            out = mix(x, y)
            yield repack(out[0], out[1])
