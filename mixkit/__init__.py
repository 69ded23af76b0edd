"""mixkit: mixing-based data augmentation for PyTorch whose labels follow the data."""

from mixkit import distributed, nn
from mixkit._version import __version__
from mixkit.baselines import ExcludeIntrusion, LogisticLabel
from mixkit.batch import MixedBatch, to_soft_labels
from mixkit.collate import MixCollate, on_device
from mixkit.densities import KDE, Density, Gaussian, NotFittedError, OnlineGaussian
from mixkit.genlabel import GenLabel
from mixkit.genmix_dataset import genmix_dataset
from mixkit.hookspecs import hookimpl
from mixkit.mixers import CutMix, GenMix, Mixer, MixParams, Mixup
from mixkit.nn import FeatureTap, ManifoldMixup, OnlineGenLabel, frozen_features
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

__all__ = [
    "Component",
    "CutMix",
    "Density",
    "ExcludeIntrusion",
    "FeatureTap",
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
    "UnknownComponentError",
    "__version__",
    "available",
    "create_density",
    "create_mixer",
    "distributed",
    "frozen_features",
    "genmix_dataset",
    "hookimpl",
    "nn",
    "on_device",
    "plugins",
    "register_plugin",
    "to_soft_labels",
    "unregister_plugin",
]
