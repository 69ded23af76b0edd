"""mixkit's core mixers and densities, registered through the public hooks like any plugin.

This is the first of :data:`mixkit.registry.DEFAULT_PLUGINS`: the registry imports it by
name on first use (it never imports it back), so the imports here stay at the top.
Manifold mixup is not a mixer here: it wraps a model and *uses* a registered mixer.
"""

from __future__ import annotations

from mixkit.densities import KDE, Gaussian, OnlineGaussian
from mixkit.hookspecs import hookimpl
from mixkit.mixers import CutMix, GenMix, Mixup


@hookimpl
def mixkit_mixers() -> dict[str, type]:
    return {"mixup": Mixup, "cutmix": CutMix, "genmix": GenMix}


@hookimpl
def mixkit_densities() -> dict[str, type]:
    return {"gaussian": Gaussian, "kde": KDE, "online_gaussian": OnlineGaussian}
