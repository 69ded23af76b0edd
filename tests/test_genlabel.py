"""GenLabel: the paper's closed forms, the Bayes posterior, options, fallbacks, errors."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import mixkit
from mixkit import MixedBatch


def mixed(x, labels, k, lam=0.5, index=None):
    n = x.shape[0]
    index = torch.arange(n) if index is None else index
    lam_t = torch.full((n,), float(lam))
    y1 = torch.nn.functional.one_hot(labels, k).float()
    y_mix = lam_t[:, None] * y1 + (1 - lam_t[:, None]) * y1[index]
    return MixedBatch(x, y_mix, lam_t, index, labels, y_mix)


@pytest.mark.parametrize("s", [0.1, 0.3, 1.0])
def test_proposition_1_logistic_label(s):
    """Two 1-D Gaussians N(0, s^2), N(1, s^2): GenLabel at x = lam is sigmoid((lam - 1/2)/s^2)."""
    density = mixkit.Gaussian(covariance="diag").set_parameters(
        torch.tensor([[0.0], [1.0]]), torch.tensor([[s**2], [s**2]])
    )
    gl = mixkit.GenLabel(density)
    # mix x_i = 1 (class 1) with x_j = 0 (class 0) through the real mixer
    x = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    for seed in range(20):
        batch = mixkit.Mixup(num_classes=2, seed=seed, label_dtype=torch.float64)(x, y)
        if batch.index[0] != 1:
            continue
        lam = float(batch.lam[0])
        out = gl(batch)
        expected = 1 / (1 + math.exp(-(lam - 0.5) / s**2))
        assert abs(float(out.y[0, 1]) - expected) < 1e-4
        assert abs(float(out.x[0, 0]) - lam) < 1e-6


def test_known_gaussians_give_the_exact_bayes_posterior():
    g = torch.Generator().manual_seed(0)
    k, d = 4, 3
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 2
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    density = mixkit.Gaussian().set_parameters(means, covs)
    x = torch.randn(64, d, generator=g, dtype=torch.float64) * 2
    log_lik = np.stack([multivariate_normal(m, c).logpdf(x.numpy()) for m, c in zip(means.numpy(), covs.numpy())], 1)
    for p, log_prior in (("uniform", 0.0), (prior, np.log(prior.numpy()))):
        post = np.exp(log_lik + log_prior)
        post /= post.sum(1, keepdims=True)
        y_gen, dead = mixkit.GenLabel(density, prior=p).posterior(x, torch.float64)
        np.testing.assert_allclose(y_gen.numpy(), post, rtol=1e-9, atol=1e-12)
        assert not dead.any()


def test_empirical_prior_uses_fitted_class_shares():
    g = torch.Generator().manual_seed(1)
    y = torch.cat([torch.zeros(300), torch.ones(100)]).long()
    x = torch.randn(400, 2, generator=g) + y[:, None] * 0.5
    uni = mixkit.GenLabel("gaussian").fit(x, y)
    emp = mixkit.GenLabel("gaussian", prior="empirical").fit(x, y)
    probe = torch.tensor([[0.25, 0.25]])
    pu, _ = uni.posterior(probe, torch.float64)
    pe, _ = emp.posterior(probe, torch.float64)
    ratio_u = float(pu[0, 0] / pu[0, 1])
    ratio_e = float(pe[0, 0] / pe[0, 1])
    assert abs(ratio_e / ratio_u - 3.0) < 1e-4


def test_gamma_blends_and_zero_returns_the_mixing_label():
    x, y = torch.randn(200, 2), torch.arange(200) % 3
    batch = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    full = mixkit.GenLabel("gaussian", gamma=1.0).fit(x, y)(batch).y
    half = mixkit.GenLabel("gaussian", gamma=0.4).fit(x, y)(batch).y
    torch.testing.assert_close(half, 0.4 * full + 0.6 * batch.y_mix)
    assert torch.equal(mixkit.GenLabel("gaussian", gamma=0.0).fit(x, y)(batch).y, batch.y_mix)
    torch.testing.assert_close(half.sum(1), torch.ones(200))


def test_top2_keeps_two_classes_and_temperature_softens():
    x, y = torch.randn(300, 2) * 3, torch.arange(300) % 5
    batch = mixkit.Mixup(num_classes=5, seed=0)(x, y)
    gl = mixkit.GenLabel("gaussian", top_k=2).fit(x, y)
    out = gl(batch).y
    assert int((out > 0).sum(1).max()) <= 2
    torch.testing.assert_close(out.sum(1), torch.ones(300))
    all_c = mixkit.GenLabel("gaussian").fit(x, y)
    top = torch.topk(all_c(batch).y, 2, dim=1)
    renorm = top.values / top.values.sum(1, keepdim=True)
    torch.testing.assert_close(out.gather(1, top.indices), renorm, atol=1e-5, rtol=1e-5)
    hot = mixkit.GenLabel("gaussian", temperature=10.0).fit(x, y)(batch).y
    ent = lambda p: -(p.clamp_min(1e-12).log() * p).sum(1).mean()  # noqa: E731
    assert ent(hot) > ent(all_c(batch).y)


class BoundedSupport(mixkit.Density):
    """Uniform on [c, c+1] per class: -inf outside every class's support."""

    def _fit(self, x, y):
        self.register_buffer("low", torch.arange(self.num_classes, dtype=torch.float64))

    def _log_prob(self, x):
        inside = (x >= self.low.to(x)) & (x <= self.low.to(x) + 1)
        return torch.where(inside, torch.zeros_like(inside, dtype=x.dtype), -torch.inf)


def test_no_density_anywhere_falls_back_to_the_mixing_label_and_is_counted():
    density = BoundedSupport().fit(torch.tensor([[0.5], [1.5]]), torch.tensor([0, 1]))
    gl = mixkit.GenLabel(density)
    x = torch.tensor([[1.5], [1.5], [7.0], [9.0]])  # row 0 lands on class 1; rows 2, 3 nowhere
    batch = mixed(x, torch.tensor([0, 1, 0, 1]), 2, lam=0.7, index=torch.tensor([1, 0, 1, 0]))
    out = gl(batch)
    assert torch.isfinite(out.y).all()
    torch.testing.assert_close(out.y[:2], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(out.y[2:], batch.y_mix[2:])
    info = out.info["genlabel"]
    assert int(info["fallback"]) == 2 and int(info["changed"]) == 1
    assert gl.stats() == {"calls": 1, "samples": 4, "changed": 1, "fallback": 2}


def test_density_nan_becomes_fallback_never_a_nan_label():
    class Broken(BoundedSupport):
        def _log_prob(self, x):
            return torch.full((x.shape[0], self.num_classes), float("nan"), dtype=x.dtype)

    gl = mixkit.GenLabel(Broken().fit(torch.tensor([[0.5], [1.5]]), torch.tensor([0, 1])))
    out = gl(mixed(torch.tensor([[0.3], [0.9]]), torch.tensor([0, 1]), 2, index=torch.tensor([1, 0])))
    assert torch.isfinite(out.y).all()
    assert int(out.info["genlabel"]["fallback"]) == 2


def test_state_dict_round_trip_gives_identical_relabels():
    x, y = torch.randn(300, 3), torch.arange(300) % 3
    gl = mixkit.GenLabel("gaussian", covariance="full").fit(x, y)
    fresh = mixkit.GenLabel("gaussian", covariance="full")
    fresh.density.load_state_dict(gl.density.state_dict())
    batch = mixkit.Mixup(num_classes=3, seed=1)(x[:64], y[:64])
    assert torch.equal(gl(batch).y, fresh(batch).y)


def test_feature_map_is_applied_before_the_density():
    x = torch.randn(200, 1, 4, 4)
    y = torch.arange(200) % 2
    x[y == 1] += 2
    proj = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))

    def fmap(t):
        return t.flatten(1) @ proj

    gl = mixkit.GenLabel("gaussian", feature_map=fmap).fit(x, y)
    assert gl.density.dim == 3
    out = gl(mixkit.Mixup(num_classes=2, seed=0)(x, y))
    assert out.y.shape == (200, 2)
    plain = mixkit.GenLabel("gaussian").fit(x, y)  # images are flattened
    assert plain.density.dim == 16


def test_errors():
    with pytest.raises(mixkit.NotFittedError):
        mixkit.GenLabel("gaussian")(mixed(torch.randn(3, 2), torch.tensor([0, 1, 0]), 2))
    with pytest.raises(ValueError, match="gamma"):
        mixkit.GenLabel("gaussian", gamma=1.5)
    with pytest.raises(ValueError, match="prior"):
        mixkit.GenLabel("gaussian", prior="balanced")
    with pytest.raises(mixkit.UnknownComponentError, match="Did you mean 'gaussian'"):
        mixkit.GenLabel("gausian")
    gl = mixkit.GenLabel("gaussian").fit(torch.randn(30, 2), torch.arange(30) % 3)
    with pytest.raises(ValueError, match="knows 3 classes but the batch has 4"):
        gl(mixed(torch.randn(4, 2), torch.tensor([0, 1, 2, 3]), 4))
    with pytest.raises(ValueError, match="at least 2 sample"):
        mixkit.GenLabel("gaussian").fit(torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 2]))
