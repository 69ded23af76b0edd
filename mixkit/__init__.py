"""mixkit: mixing-based data augmentation for PyTorch whose labels follow the data."""

from mixkit import distributed, genmix_solver, nn
from mixkit._version import __version__
from mixkit.baselines import ExcludeIntrusion, LogisticLabel
from mixkit.batch import MixedBatch, to_soft_labels
from mixkit.collate import MixCollate, from_timm, on_device
from mixkit.densities import KDE, Density, Gaussian, NotFittedError, OnlineGaussian
from mixkit.diagnosis import Diagnosis, diagnose
from mixkit.genlabel import GenLabel, blend_labels
from mixkit.genmix_dataset import genmix_dataset
from mixkit.hookspecs import hookimpl
from mixkit.mixers import CutMix, GenMix, MixChoice, Mixer, MixParams, Mixup
from mixkit.nn import FeatureGenMix, FeatureTap, ManifoldMixup, OnlineGenLabel, frozen_features
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
    "Diagnosis",
    "ExcludeIntrusion",
    "FeatureGenMix",
    "FeatureTap",
    "GenLabel",
    "GenMix",
    "KDE",
    "LogisticLabel",
    "ManifoldMixup",
    "MixChoice",
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
    "diagnose",
    "distributed",
    "from_timm",
    "frozen_features",
    "genmix_dataset",
    "genmix_solver",
    "hookimpl",
    "nn",
    "on_device",
    "plugins",
    "register_plugin",
    "to_soft_labels",
    "unregister_plugin",
]
