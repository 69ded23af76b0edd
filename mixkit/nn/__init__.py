"""Model-side GenLabel: code that runs inside or beside a network.

* :mod:`mixkit.nn.taps`: :func:`unwrap`, :func:`find_classifier`, :class:`FeatureTap`
  (penultimate features during a forward pass), :func:`frozen_bn_stats`;
* :mod:`mixkit.nn.frozen`: :func:`frozen_features`, a trained network as GenLabel's
  feature map (Algorithm 2);
* :mod:`mixkit.nn.layers` and :mod:`mixkit.nn.manifold`: :class:`ManifoldMixup`, a
  model wrapper that mixes hidden states with a mixer, compile-safe;
* :mod:`mixkit.nn.online`: :class:`OnlineGenLabel`, Algorithm 3, an ``nn.Module``
  whose density travels in checkpoints;
* :mod:`mixkit.nn.feature_genmix`: :class:`FeatureGenMix`, GenMix in a frozen or online
  feature space (appendix F.4), and :class:`FeatureMix`.

The arrows point one way: this package imports the core (mixers, densities,
GenLabel, the registry); nothing in the core imports it.
"""

from mixkit.nn.feature_genmix import FeatureGenMix, FeatureMix
from mixkit.nn.frozen import FrozenFeatures, frozen_features
from mixkit.nn.layers import default_layers, resnet_layers
from mixkit.nn.manifold import ManifoldMixup
from mixkit.nn.online import OnlineGenLabel
from mixkit.nn.taps import FeatureTap, feature_module, find_classifier, frozen_bn_stats, unwrap

__all__ = [
    "FeatureGenMix",
    "FeatureMix",
    "FeatureTap",
    "FrozenFeatures",
    "ManifoldMixup",
    "OnlineGenLabel",
    "default_layers",
    "feature_module",
    "find_classifier",
    "frozen_bn_stats",
    "frozen_features",
    "resnet_layers",
    "unwrap",
]
