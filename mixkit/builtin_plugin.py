"""mixkit's own mixers and densities, registered through the public hooks like any plugin."""

from __future__ import annotations

from mixkit.hookspecs import hookimpl


@hookimpl
def mixkit_mixers() -> dict[str, type]:
    from mixkit.mixers import CutMix, GenMix, Mixup

    return {"mixup": Mixup, "cutmix": CutMix, "genmix": GenMix}


@hookimpl
def mixkit_densities() -> dict[str, type]:
    from mixkit.densities import KDE, Gaussian, OnlineGaussian

    return {"gaussian": Gaussian, "kde": KDE, "online_gaussian": OnlineGaussian}
