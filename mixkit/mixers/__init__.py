"""Mixers: batch ``(x, y)`` -> :class:`mixkit.MixedBatch`."""

from mixkit.mixers.base import Mixer, MixParams
from mixkit.mixers.composite import MixChoice
from mixkit.mixers.cutmix import CutMix
from mixkit.mixers.genmix import GenMix
from mixkit.mixers.mixup import Mixup

__all__ = ["CutMix", "GenMix", "MixChoice", "MixParams", "Mixer", "Mixup"]
