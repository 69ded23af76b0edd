"""MixChoice: one of several mixers per batch, pair or element, applied with a probability (timm's semantics)."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence

import torch
from torch import Tensor

from mixkit._validation import check_choice, check_range
from mixkit.batch import MixedBatch
from mixkit.mixers.base import Mixer, MixParams, fixed_lam, lam_view, where_into
from mixkit.mixers.mixup import PAIRINGS, partners
from mixkit.registry import create_mixer

MODES = ("batch", "pair", "elem")


def _mixes_inputs(m: Mixer) -> bool:
    """A mixer whose draw is applied by ``mix_inputs`` + ``mix_labels`` (Mixup, CutMix, their kin)."""
    return type(m).apply is Mixer.apply and type(m).mix_inputs is not Mixer.mix_inputs


def pair_partners(n: int, pairing: str, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Disjoint pairs of a batch: ``(index, pair_id, first)``.

    ``index`` is an involution (``index[index[i]] == i``; with an odd batch one
    row is its own partner), ``pair_id`` ``(n,)`` numbers the ``ceil(n/2)`` pairs
    and ``first`` holds one row of each pair. ``"flip"`` pairs ``i`` with
    ``n-1-i`` as timm does; ``"random"`` pairs the rows of a random permutation.
    """
    m = (n + 1) // 2
    if pairing == "flip":
        rows = torch.arange(n)
        return rows.flip(0), torch.minimum(rows, n - 1 - rows), rows[:m]
    perm = torch.randperm(n, generator=generator)
    a, b = perm[0::2], perm[1::2]  # a has m rows, b has n // 2
    index, pair_id = torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)
    index[a[: b.numel()]], index[b] = b, a[: b.numel()]
    if n % 2:
        index[a[-1]] = a[-1]
    pair_id[a], pair_id[b] = torch.arange(m), torch.arange(b.numel())
    return index, pair_id, a


class MixChoice(Mixer):
    """Apply one of several mixers, picked at random, to a share ``prob`` of the batches (or pairs, or elements).

    The semantics of timm's ``Mixup`` (mixup and CutMix with ``switch_prob``,
    ``prob``, ``mode``) for any input-mixing mixers, with mixkit's generators:

    * ``mode="batch"``: one draw per batch: with probability ``prob`` the batch
      is mixed by one mixer (chosen by ``weights``), otherwise it is returned
      unmixed, with one-hot soft labels of the usual shape and dtype, ``lam`` 1,
      ``index`` the identity and ``info["mixed"] = False``;
    * ``mode="elem"``: the choice, the apply decision and lam are drawn per
      element; every element mixes with its partner in the batch's pairing;
    * ``mode="pair"``: the batch is split into disjoint pairs ``(i, j)`` and each
      pair shares one draw: ``x_i`` and ``x_j`` swap the same CutMix box or mix
      with the same lam, as timm's pair mode does.

    Args:
        mixers: mixer names or instances that mix inputs (Mixup, CutMix, ...).
            Instances are copied, never modified; their own seeds are not used:
            this mixer's generator draws for all of them.
        weights: how often each mixer is chosen (normalised); default uniform.
        switch_prob: for two mixers, the probability of the second (timm's
            ``switch_prob``: CutMix instead of mixup); exclusive with ``weights``.
        prob: probability that a batch / pair / element is mixed at all.
        mode: ``"batch"``, ``"pair"`` or ``"elem"`` (see above).
        pairing: partners: ``"random"`` (default) or ``"flip"`` (row ``B-1-i``, timm).
        num_classes, seed, label_dtype, validate, multi_label: see :class:`Mixer`.

    A fixed ``lam`` (``mixer(x, y, lam=0.3)``) fixes lam for whichever mixer is
    chosen; ``prob`` still decides whether it applies.
    """

    supports_inplace = True

    def __init__(
        self,
        mixers: Sequence[str | Mixer] | str | Mixer,
        weights: Sequence[float] | None = None,
        *,
        switch_prob: float | None = None,
        prob: float = 1.0,
        mode: str = "batch",
        pairing: str = "random",
        num_classes: int | None = None,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
        validate: bool | None = None,
        multi_label: bool = False,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype, validate=validate,
                         multi_label=multi_label)
        if isinstance(mixers, (str, Mixer)):
            mixers = [mixers]
        if not isinstance(mixers, Sequence) or len(mixers) == 0:
            raise TypeError(f"mixers must be a non-empty list of mixer names or instances, got {mixers!r}")
        self.mode = check_choice("mode", mode, MODES)
        self.pairing = check_choice("pairing", pairing, PAIRINGS)
        self.prob = check_range("prob", prob, 0.0, 1.0)
        self.mixers = tuple(self._own_copy(m, num_classes) for m in mixers)
        self.weights = self._weights(weights, switch_prob, len(self.mixers))
        self._cumulative = torch.tensor(self.weights, dtype=torch.float64).cumsum(0)
        self._cumulative_list = self._cumulative.tolist()

    def _own_copy(self, m: str | Mixer, num_classes: int | None) -> Mixer:
        if isinstance(m, str):
            m = create_mixer(m, num_classes=num_classes)
        elif not isinstance(m, Mixer):
            raise TypeError(f"MixChoice takes mixer names or mixkit.Mixer instances, got {type(m).__name__}")
        if isinstance(m, torch.nn.Module) or not _mixes_inputs(m):
            raise TypeError(
                f"MixChoice combines mixers that mix inputs with a drawn lam (Mixup, CutMix, ...); "
                f"{type(m).__name__} mixes its own way: use it on its own"
            )
        if num_classes is not None and m.num_classes not in (None, num_classes):
            # this mixer builds the labels for all of them: a conflicting count would be ignored silently
            raise ValueError(f"{type(m).__name__} has num_classes={m.num_classes} but num_classes={num_classes}")
        m = copy.copy(m)  # never change the caller's mixer
        m.pairing = self.pairing
        if self.mode != "batch":
            if not hasattr(m, "per_sample"):
                raise TypeError(f"mode={self.mode!r} needs mixers that draw per sample; {type(m).__name__} does not")
            m.per_sample = True
        return m

    @staticmethod
    def _weights(weights: Sequence[float] | None, switch_prob: float | None, k: int) -> tuple[float, ...]:
        if switch_prob is not None:
            if weights is not None:
                raise ValueError("pass either weights or switch_prob, not both")
            if k != 2:
                raise ValueError(f"switch_prob chooses between two mixers, got {k}; pass weights=[...] instead")
            sp = check_range("switch_prob", switch_prob, 0.0, 1.0)
            return (1.0 - sp, sp)
        if weights is None:
            return (1.0 / k,) * k
        w = [check_range("weights", v, 0.0, float("inf")) for v in weights]
        if len(w) != k or sum(w) <= 0:
            raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {list(weights)}")
        return tuple(v / sum(w) for v in w)

    def extra_repr(self) -> str:
        return (f"mixers={list(self.mixers)}, weights={[round(w, 4) for w in self.weights]}, prob={self.prob}, "
                f"mode={self.mode!r}")

    # -- draw --------------------------------------------------------------------------------

    def _choose(self, m: int, generator: torch.Generator) -> Tensor:
        """``(m,)`` long mixer choices: -1 where nothing is applied (probability ``1 - prob``)."""
        u = torch.rand(2, m, dtype=torch.float64, generator=generator)
        k = torch.searchsorted(self._cumulative, u[1], right=True).clamp_max(len(self.mixers) - 1)
        return torch.where(u[0] < self.prob, k, -1)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        if self.mode == "batch":  # two uniforms as Python floats: cheaper than the tensor ops of _choose
            u_apply, u_pick = torch.rand(2, dtype=torch.float64, generator=generator).tolist()
            k = min(bisect.bisect_right(self._cumulative_list, u_pick), len(self.mixers) - 1)
            if u_apply >= self.prob:
                return MixParams(torch.ones(n, dtype=torch.float64), torch.arange(n), extra={"choice": -1})
            p = self.mixers[k].draw(n, shape, generator, lam)
            return p.replace(extra={**p.extra, "choice": k})
        if self.mode == "elem":
            index, rows, m = partners(n, self.pairing, generator), torch.arange(n), n
        else:
            index, rows, first = pair_partners(n, self.pairing, generator)
            m = first.numel()
            if lam is not None:
                lam = fixed_lam(lam, n)[first]
        choice = self._choose(m, generator)
        parts, lam_out = [], torch.ones(m, dtype=torch.float64)
        for k, mixer in enumerate(self.mixers):
            p = mixer.draw(m, shape, generator, lam)
            lam_out = torch.where(choice == k, p.lam, lam_out)
            box = None if p.box is None else p.box[rows]
            parts.append(MixParams(p.lam[rows], index, box, p.extra))
        return MixParams(lam_out[rows], index, extra={"choice": choice[rows], "parts": parts})

    # -- apply -------------------------------------------------------------------------------

    def mix_inputs(self, x: Tensor, params: MixParams, *, inplace: bool = False) -> Tensor:
        choice = params.extra["choice"]
        if isinstance(choice, int):  # batch mode: one mixer, or none
            if choice < 0:
                return x if inplace else x.clone()
            return self.mixers[choice].mix_inputs(x, params, inplace=inplace)
        # per element: every chosen mixer reads the untouched x, then the rows are combined
        used = [k for k in range(len(self.mixers)) if bool((choice == k).any())]  # CPU tensor: no sync
        mixes = [(k, self.mixers[k].mix_inputs(x, params.extra["parts"][k])) for k in used]
        out = x if inplace else torch.empty_like(x)
        if not mixes:
            return out.copy_(x) if not inplace else out
        src = x
        for k, mixed in mixes:
            mask = lam_view((choice == k).to(x.device, non_blocking=True), x)
            src = where_into(mask, mixed, src, out)
        return src

    def apply(self, x: Tensor, y_soft: Tensor, labels: Tensor, params: MixParams, *,
              inplace: bool = False) -> MixedBatch:
        batch = super().apply(x, y_soft, labels, params, inplace=inplace)
        if isinstance(params.extra.get("choice"), int) and params.extra["choice"] < 0:
            batch.info["mixed"] = False  # a skipped batch: MixCollate does not relabel it
        return batch


__all__ = ["MODES", "MixChoice", "pair_partners"]
