"""A complete mixkit plugin in ten lines: the one README.md and CONTRIBUTING.md show."""
import torch

import mixkit


class NearestMean(mixkit.Density):
    """Unit-variance Gaussian around each class mean."""

    def _fit(self, x, y):
        sums = torch.zeros(self.num_classes, x.shape[1], dtype=x.dtype).index_add_(0, y, x)
        self.register_buffer("means", sums / self.class_counts[:, None])

    def _log_prob(self, x):
        return -0.5 * torch.cdist(x, self.means.to(x)) ** 2


@mixkit.hookimpl
def mixkit_densities():
    return {"nearest-mean": NearestMean}
