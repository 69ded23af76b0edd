"""Class-conditional densities: ``fit(x, y)``, ``log_prob(x) -> (B, K)``."""

from mixkit.densities.base import Density, NotFittedError, cannot_say
from mixkit.densities.gaussian import Gaussian
from mixkit.densities.kde import KDE
from mixkit.densities.online import OnlineGaussian

__all__ = ["Density", "Gaussian", "KDE", "NotFittedError", "OnlineGaussian", "cannot_say"]
