"""Model-side mixkit: modules that work inside a network (mixed features, hidden states)."""

from mixkit.nn.feature_genmix import FeatureGenMix, FeatureMix

__all__ = ["FeatureGenMix", "FeatureMix"]
