"""The mixer contract: ``prepare -> draw -> apply``, as torchvision's transforms split it.

Every mixer turns a batch ``(x, y)`` into a :class:`MixedBatch` in three steps:

* :meth:`Mixer.prepare` converts and (where it costs nothing, see
  :func:`mixkit._validation.should_validate`) checks the batch's labels: float
  inputs, soft labels ``(B, K)``, class ids ``(B,)`` (the inputs' values only with
  ``validate=True``);
* :meth:`Mixer.draw` draws everything random for one batch from a
  ``torch.Generator`` into a :class:`MixParams` (``lam``, partner ``index``, a
  ``box`` for CutMix): a few numbers on the CPU, the same on every device;
* :meth:`Mixer.apply` applies them: :meth:`mix_inputs` to ``x`` (or to any
  tensor with the batch first, e.g. a hidden state) and :meth:`mix_labels` to the
  soft labels.

Because the draw is apart from the application, a fixed ``lam`` or pre-drawn
parameters can be passed (``mixer(x, y, lam=0.5)``, ``mixer(x, y, params=p)``),
composite mixers pick a mixer and reuse its draw, and model-side code (manifold
mixup) mixes hidden states with exactly the parameters that mix the labels.

Mixers keep the type of their input (``torchvision.tv_tensors.Image`` stays an
``Image``) and its memory format (``channels_last`` stays ``channels_last``),
and never write into the caller's tensors: only a caller that owns the batch
(``inplace=True``, as :class:`mixkit.MixCollate` does with the batch its collate
just built) lets a mixer that ``supports_inplace`` mix into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mixkit._validation import (
    as_tensor,
    check_finite,
    check_float_dtype,
    check_generator,
    check_int,
    check_seed,
    should_validate,
)
from mixkit.batch import MixedBatch, class_ids, to_soft_labels
from mixkit.random import make_generator


@dataclass
class MixParams:
    """What a mixer drew for one batch (CPU tensors; moved to the batch's device on apply).

    Attributes:
        lam: ``(B,)`` float64, the weight of each row's own sample (for CutMix, the
            share of its own pixels after the box was clipped, when ``correct_lam``).
        index: ``(B,)`` long, the partner of each row.
        box: CutMix boxes ``(m, 4)`` long as ``(top, bottom, left, right)``, with
            ``m = 1`` (one box for the batch) or ``B``; ``None`` for other mixers.
        extra: anything else a mixer needs to apply its draw (kept as given).
    """

    lam: Tensor
    index: Tensor
    box: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.index.shape[0]

    def replace(self, **changes: Any) -> MixParams:
        return replace(self, **changes)


class Mixer:
    """Base class of mixers (see the module docstring for the contract).

    Subclasses implement :meth:`draw` and :meth:`mix_inputs` (and
    :meth:`mix_labels` when labels do not mix with ``lam``); :meth:`__call__`
    ("do not override") runs prepare, draw, apply. Calling a mixer never modifies
    its inputs.

    Args:
        num_classes: number of classes; needed when labels are class ids.
        seed: seed of the mixer's own generator; ``None`` draws one from torch's
            global RNG on first use (so ``torch.manual_seed`` repeats runs). Every
            DDP rank and DataLoader worker derives its own stream from it (see
            :mod:`mixkit.random`); a generator passed to the call wins over both.
        label_dtype: dtype of the soft labels (a floating dtype or its name).
        multi_label: labels are multi-hot ``(B, K)`` rows (values in [0, 1], any
            number of positives, as timm's ``multi_label``); they are mixed as given,
            not renormalised.
        validate: check values of every batch. ``None`` (default): the labels (id
            ranges, soft-label sums: a few reductions over ``B x K`` values) on CPU
            batches, and nothing on accelerators or under ``torch.compile``, where a
            check forces a host sync. ``True``: the labels and the inputs' finiteness
            on every device; the input check reads all of ``x`` (a quarter of a mixup
            call at (128, 3, 32, 32)), which is why the default skips it: a NaN input
            gives NaN mixed inputs, never a NaN label. ``False``: no value checks.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
        validate: bool | None = None,
        multi_label: bool = False,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 1, allow_none=True)
        self.seed = check_seed(seed)
        self.label_dtype = check_float_dtype("label_dtype", label_dtype)
        self.validate = validate
        self.multi_label = bool(multi_label)
        self._generator: torch.Generator | None = None

    #: whether :meth:`apply` accepts ``inplace=True`` (mixing into a batch the caller gave up)
    supports_inplace = False

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(self.seed, per_process=True)
        return self._generator

    @generator.setter
    def generator(self, g: torch.Generator) -> None:
        self._generator = g

    def __getstate__(self) -> dict:
        # torch.Generator does not pickle; DataLoader workers re-derive it (see MixCollate)
        state = self.__dict__.copy()
        gen = state.pop("_generator")
        state["_generator_state"] = None if gen is None else gen.get_state()
        return state

    def __setstate__(self, state: dict) -> None:
        gen_state = state.pop("_generator_state", None)
        self.__dict__.update(state)
        self._generator = None
        if gen_state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(gen_state)

    # -- the contract ----------------------------------------------------------------------

    def prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Convert (and check, see ``validate``) a batch: float inputs, soft labels, class ids."""
        x = as_tensor(x, "x")
        y = as_tensor(y, "y")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch (B, ...), got shape {tuple(x.shape)}")
        if y.ndim < 1:
            raise ValueError(f"y must hold one label per sample (B,) or (B, K), got a 0-d tensor {y!r}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; pass one label per sample")
        if not x.is_floating_point():
            x = x.float()  # integer images are mixed in float, in their own value range
        check = should_validate(self.validate, x)
        if check and self.validate:  # reads every input value: only when asked for
            check_finite(x, "x")
        y = y.to(x.device)
        if self.multi_label:
            y_soft = multi_hot_labels(y, self.num_classes, self.label_dtype, check=check)
            return x, y_soft, y_soft.argmax(1)
        y_soft = to_soft_labels(y, self.num_classes, self.label_dtype, check=check)
        return x, y_soft, class_ids(y) if y.ndim == 1 or y.shape[1] == 1 else y_soft.argmax(1)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        """Draw the parameters for a batch of ``n`` inputs shaped ``shape`` (``lam``: fixed)."""
        raise NotImplementedError

    def mix_inputs(self, x: Tensor, params: MixParams) -> Tensor:
        """Mix ``x`` ``(B, ...)`` (inputs or any hidden state) with ``params``; a new tensor."""
        raise NotImplementedError

    def mix_labels(self, y_soft: Tensor, params: MixParams) -> Tensor:
        """``lam * y + (1 - lam) * y[index]``, a new tensor."""
        index = params.index.to(y_soft.device, non_blocking=True)
        lam = params.lam
        if lam.stride(0) == 0 or lam.numel() == 1:  # one lam for the batch: a Python scalar (CPU, no sync)
            weight: Tensor | float = float(lam[0])
        else:
            weight = lam.to(y_soft.device, y_soft.dtype, non_blocking=True)[:, None]
        return y_soft.index_select(0, index).lerp_(y_soft, weight)

    def apply(self, x: Tensor, y_soft: Tensor, labels: Tensor, params: MixParams, *,
              inplace: bool = False) -> MixedBatch:
        """Apply drawn ``params`` to a prepared batch (``inplace``: ``x`` may be mixed into)."""
        y_mix = self.mix_labels(y_soft, params)
        dev = x.device
        x_mix = self.mix_inputs(x, params, inplace=True) if inplace else self.mix_inputs(x, params)
        return MixedBatch(
            x_mix, y_mix, params.lam.to(dev, torch.float32, non_blocking=True),
            params.index.to(dev, non_blocking=True), labels, y_mix,
        )

    def unmixed(self, x: Tensor, y: Tensor, *, inplace: bool = False) -> MixedBatch:
        """The batch left as it is: inputs unchanged, soft (one-hot) labels, ``lam`` 1, ``index`` identity.

        What a skipped batch returns (``prob < 1``, mixing switched off): the labels
        have the shape and dtype of a mixed batch's. ``x`` is copied unless
        ``inplace`` (the caller owns it).
        """
        x_in = x
        x, y_soft, labels = self.prepare(x, y)
        owned = inplace or (torch.is_tensor(x_in) and not x_in.is_floating_point())
        n, dev = x.shape[0], x.device
        out = x if owned else x.clone()
        return MixedBatch(out, y_soft, torch.ones(n, device=dev), torch.arange(n, device=dev), labels, y_soft,
                          info={"mixed": False})

    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
        lam: float | Tensor | None = None,
        params: MixParams | None = None,
        inplace: bool = False,
    ) -> MixedBatch:
        """Mix a batch: prepare, draw (unless ``params`` are given; ``lam`` fixes lam), apply.

        ``inplace=True`` hands ``x`` over to the mixer, which may mix into it (only
        mixers that ``supports_inplace``; others ignore it): for batches the caller
        built itself and will not read again.
        """
        x_in = x
        check_generator(generator)
        if params is not None and not isinstance(params, MixParams):
            raise TypeError(f"params must be the MixParams a mixer's draw returns, got {type(params).__name__}")
        x, y_soft, labels = self.prepare(x, y)
        if params is None:
            params = self.draw(x.shape[0], x.shape, generator if generator is not None else self.generator, lam)
        elif len(params) != x.shape[0]:
            raise ValueError(f"params were drawn for {len(params)} samples but the batch has {x.shape[0]}")
        # a float copy made by prepare (integer images) is ours to mix into, the caller's tensor is not
        owned = inplace or (torch.is_tensor(x_in) and not x_in.is_floating_point())
        if owned and self.supports_inplace:
            batch = self.apply(x, y_soft, labels, params, inplace=True)
        else:
            batch = self.apply(x, y_soft, labels, params)
        return keep_type(batch, x_in)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def keep_type(batch: MixedBatch, like: Any) -> MixedBatch:
    """``batch`` with ``x`` of the tensor subclass of ``like`` (``tv_tensors.Image`` stays an Image)."""
    cls = type(like)
    if cls is Tensor or not isinstance(like, Tensor) or isinstance(like, torch.nn.Parameter):
        return batch  # plain tensors: no work at all on the hot path
    if type(batch.x) is not cls:
        batch.x = batch.x.as_subclass(cls)
    return batch


def multi_hot_labels(y: Tensor, num_classes: int | None, dtype: torch.dtype, *, check: bool) -> Tensor:
    """Multi-hot targets ``(B, K)`` (values in [0, 1]) as ``dtype``, checked when ``check``."""
    if y.ndim != 2:
        raise ValueError(
            f"multi_label targets must be dense (B, num_classes) rows, got shape {tuple(y.shape)}; "
            "one-hot encode class lists first"
        )
    if num_classes is not None and y.shape[1] != num_classes:
        raise ValueError(f"multi_label targets have {y.shape[1]} columns but num_classes={num_classes}")
    out = y.to(dtype)
    if check:
        check_finite(out, "multi_label targets")
        if bool(((out < 0) | (out > 1)).any()):
            raise ValueError("multi_label targets must lie in [0, 1] (multi-hot rows)")
    return out


def fixed_lam(lam: float | Tensor, n: int) -> Tensor:
    """A fixed ``lam`` (a float or ``(n,)``) as the ``(n,)`` float64 CPU tensor a draw returns."""
    t = as_tensor(lam, "lam").detach().to("cpu", torch.float64)
    bad = ~((t >= 0) & (t <= 1))  # NaN included
    if bool(bad.any()):
        got = float(t) if t.ndim == 0 else f"{t[bad][:5].tolist()} among its values"
        raise ValueError(f"lam must lie in [0, 1] (the weight of each sample's own input), got {got}")
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"lam must be a float or a ({n},) tensor, got shape {tuple(t.shape)}")
    return t


def random_partners(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)``: each sample's mixing partner."""
    return torch.randperm(n, generator=generator).to(device, non_blocking=True)


def lam_view(lam: Tensor, like: Tensor) -> Tensor:
    """``lam`` ``(B,)`` reshaped to broadcast against a batch shaped like ``like``."""
    return lam.reshape((-1,) + (1,) * (like.ndim - 1))


def where_into(mask: Tensor, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """``torch.where(mask, a, b)``, written into ``out`` (a buffer laid out like the input)
    unless autograd records the inputs: ``out=`` does not support autograd, and hidden
    states mixed by :class:`mixkit.nn.ManifoldMixup` require grad. Those get a fresh
    result, which may then be laid out like ``a`` and ``b`` rather than like ``out``."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return torch.where(mask, a, b)
    return torch.where(mask, a, b, out=out)
