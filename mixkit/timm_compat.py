"""timm's ``Mixup`` arguments, verbatim, as a mixkit mixer (the collate side is ``MixCollate.from_timm``).

``timm.data.Mixup(**mixup_args)`` and ``mixkit.from_timm(**mixup_args)`` take the
same names with the same defaults and the same meaning:

==================  ==============================================================
timm                mixkit
==================  ==============================================================
``mixup_alpha``     ``Mixup(alpha=...)`` (0 turns mixup off)
``cutmix_alpha``    ``CutMix(alpha=...)`` (0 turns CutMix off)
``cutmix_minmax``   ``CutMix(minmax=...)`` (CutMix on, its alpha then unused)
``prob``            ``MixChoice(prob=...)``
``switch_prob``     ``MixChoice(switch_prob=...)``: CutMix instead of mixup
``mode``            ``MixChoice(mode="batch" | "pair" | "elem")``
``correct_lam``     ``CutMix(correct_lam=...)``
``label_smoothing`` ``MixCollate(label_smoothing=...)``, on the final targets
``num_classes``     ``num_classes``
``multi_label``     ``Mixer(multi_label=...)``
==================  ==============================================================

Differences, all deliberate: partners are timm's flipped batch by default
(``pairing="flip"``; ``"random"`` draws a permutation); odd batches are mixed
(timm asserts an even batch; in pair mode the middle row keeps itself); the
caller's batch is never modified; randomness comes from a seeded
``torch.Generator`` per process instead of numpy's global RNG; what timm would
``assert`` on is a ``ValueError`` here, and FastCollateMixup's ``"half"`` mode
is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from mixkit._validation import check_choice, check_range
from mixkit.mixers.base import Mixer
from mixkit.mixers.composite import MODES, MixChoice
from mixkit.mixers.cutmix import CutMix
from mixkit.mixers.mixup import Mixup

#: timm.data.Mixup's arguments and defaults (timm 1.x)
TIMM_DEFAULTS: dict[str, Any] = {
    "mixup_alpha": 1.0, "cutmix_alpha": 0.0, "cutmix_minmax": None, "prob": 1.0, "switch_prob": 0.5,
    "mode": "batch", "correct_lam": True, "label_smoothing": 0.1, "num_classes": 1000, "multi_label": False,
}


def timm_mixer(
    *,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 0.0,
    cutmix_minmax: tuple[float, float] | None = None,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
    correct_lam: bool = True,
    num_classes: int = 1000,
    multi_label: bool = False,
    pairing: str = "flip",
    seed: int | None = None,
    label_dtype: torch.dtype = torch.float32,
    validate: bool | None = None,
) -> Mixer:
    """The mixer timm's ``Mixup`` describes (label smoothing is the collate's: see ``MixCollate.from_timm``)."""
    if mode == "half":
        raise ValueError(
            "mode='half' (FastCollateMixup's half batch of unmixed samples) is not supported; "
            "use mode='elem' with prob=0.5 for a similar share of unmixed samples"
        )
    check_choice("mode", mode, MODES)
    mixup_alpha = check_range("mixup_alpha", mixup_alpha, 0.0, float("inf"))
    cutmix_alpha = check_range("cutmix_alpha", cutmix_alpha, 0.0, float("inf"))
    if cutmix_minmax is not None:
        cutmix_alpha = 1.0  # timm: minmax turns CutMix on and makes its alpha irrelevant
    common = {"num_classes": num_classes, "pairing": pairing, "label_dtype": label_dtype, "validate": validate}
    mixers: list[Mixer] = []
    if mixup_alpha > 0 and mixup_alpha != float("inf"):
        mixers.append(Mixup(mixup_alpha, **common))
    elif mixup_alpha == float("inf"):
        raise ValueError("mixup_alpha must be finite (0 turns mixup off)")
    if cutmix_alpha > 0:
        mixers.append(CutMix(cutmix_alpha, minmax=cutmix_minmax, correct_lam=correct_lam,
                             **common))
    if not mixers:
        raise ValueError(
            "nothing to mix: mixup_alpha and cutmix_alpha are both 0 and cutmix_minmax is None; "
            "set one of them (timm's own check), or leave mixing out of the pipeline"
        )
    return MixChoice(
        mixers, switch_prob=switch_prob if len(mixers) == 2 else None, prob=prob, mode=mode, pairing=pairing,
        num_classes=num_classes, seed=seed, label_dtype=label_dtype, validate=validate, multi_label=multi_label,
    )


__all__ = ["TIMM_DEFAULTS", "timm_mixer"]
