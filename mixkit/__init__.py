"""mixkit: mixing-based data augmentation for PyTorch whose labels follow the data."""

from mixkit import distributed, latent
from mixkit._version import __version__
from mixkit.baselines import ExcludeIntrusion, LogisticLabel
from mixkit.batch import MixedBatch, to_soft_labels
from mixkit.collate import MixCollate, on_device
from mixkit.densities import KDE, Density, Gaussian, NotFittedError, OnlineGaussian
from mixkit.genlabel import GenLabel, blend_labels
from mixkit.genmix_dataset import genmix_dataset
from mixkit.hookspecs import hookimpl
from mixkit.latent import OnlineGenLabel, frozen_features
from mixkit.mixers import CutMix, GenMix, ManifoldMixup, Mixer, MixParams, Mixup
from mixkit.registry import (
    Component,
    PluginCollisionError,
    PluginInfo,
    UnknownComponentError,
    available,
    create_density,
    create_mixer,
    plugins,
    register_plugin,
    unregister_plugin,
)
from mixkit.stats import RelabelStats

__all__ = [
    "Component",
    "CutMix",
    "Density",
    "ExcludeIntrusion",
    "GenLabel",
    "GenMix",
    "KDE",
    "LogisticLabel",
    "ManifoldMixup",
    "MixCollate",
    "Gaussian",
    "MixedBatch",
    "Mixer",
    "MixParams",
    "Mixup",
    "NotFittedError",
    "OnlineGaussian",
    "OnlineGenLabel",
    "PluginCollisionError",
    "PluginInfo",
    "RelabelStats",
    "UnknownComponentError",
    "__version__",
    "available",
    "blend_labels",
    "create_density",
    "create_mixer",
    "distributed",
    "frozen_features",
    "genmix_dataset",
    "hookimpl",
    "latent",
    "on_device",
    "plugins",
    "register_plugin",
    "to_soft_labels",
    "unregister_plugin",
]
