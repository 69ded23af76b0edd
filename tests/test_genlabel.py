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


# -- module, state, chaining ----------------------------------------------------------------


def three_classes(n=300, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return torch.randn(n, d, generator=g) + 1.5 * torch.randn(3, d, generator=g)[y], y


def test_genlabel_is_a_module_and_a_checkpoint_restores_identical_labels(tmp_path):
    x, y = three_classes()
    kw = dict(gamma=0.7, top_k=2, temperature=0.5, prior=torch.tensor([0.2, 0.3, 0.5]))
    gl = mixkit.GenLabel("gaussian", **kw).fit(x, y)
    assert isinstance(gl, torch.nn.Module) and gl.density in gl.children()
    model = torch.nn.ModuleDict({"net": torch.nn.Linear(3, 3), "relabel": gl})
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    fresh = torch.nn.ModuleDict({"net": torch.nn.Linear(3, 3), "relabel": mixkit.GenLabel("gaussian")})
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    restored = fresh["relabel"]
    assert (restored.gamma, restored.top_k, restored.temperature) == (0.7, 2, 0.5)
    torch.testing.assert_close(restored.prior_probs, torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    batch = mixkit.Mixup(num_classes=3, seed=1)(x[:64], y[:64])
    assert torch.equal(gl(batch).y, restored(batch).y)
    # and back: a uniform-prior state drops the tensor prior of the GenLabel it loads into
    uniform = mixkit.GenLabel("gaussian").fit(x, y)
    restored.load_state_dict(uniform.state_dict())
    assert restored.prior_mode == "uniform" and "prior_probs" not in dict(restored.named_buffers())
    assert torch.equal(restored(batch).y, uniform(batch).y)


def test_stats_are_not_state():
    x, y = three_classes()
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    gl(mixkit.Mixup(num_classes=3, seed=0)(x, y))
    assert not any("count" in k and not k.startswith("density.") for k in gl.state_dict())
    assert gl.stats()["calls"] == 1


def test_feature_map_module_is_kept_out_of_the_state_unless_asked():
    x, y = three_classes()
    fmap = torch.nn.Linear(3, 2)
    out = mixkit.GenLabel("gaussian", feature_map=fmap).fit(x, y)
    assert not any(k.startswith("feature_map") for k in out.state_dict())
    assert fmap not in list(out.modules())
    inside = mixkit.GenLabel("gaussian", feature_map=fmap, include_feature_map=True).fit(x, y)
    assert "feature_map.weight" in inside.state_dict()


def test_a_relabeler_blends_with_the_labels_so_far_and_y_mix_keeps_the_mixers():
    x, y = three_classes()
    batch = mixkit.Mixup(num_classes=3, seed=2)(x[:50], y[:50])
    first = mixkit.LogisticLabel(0.3)
    gl = mixkit.GenLabel("gaussian", gamma=0.5).fit(x, y)
    chained = gl(first(batch))
    y_gen, dead = gl.posterior(batch.x)
    assert not dead.any()
    torch.testing.assert_close(chained.y, 0.5 * first(batch).y + 0.5 * y_gen)
    assert torch.equal(chained.y_mix, batch.y_mix)  # the mixer's label, untouched
    # two GenLabels: the second blends with the first one's output
    twice = gl(gl(batch))
    torch.testing.assert_close(twice.y, 0.25 * batch.y + 0.75 * y_gen)
    assert torch.equal(twice.y_mix, batch.y_mix)


def test_blend_labels_floats_tensors_and_fallback():
    y_mix = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5]])
    y_gen = torch.tensor([[0.1, 0.8, 0.1], [float("nan")] * 3])
    dead = torch.tensor([False, True])
    out = mixkit.blend_labels(y_mix, y_gen, 0.25, dead)
    torch.testing.assert_close(out[0], 0.75 * y_mix[0] + 0.25 * y_gen[0])
    assert torch.equal(out[1], y_mix[1])
    gammas = torch.tensor([0.0, 0.5, 1.0])
    many = mixkit.blend_labels(y_mix, y_gen, gammas, dead)
    assert many.shape == (3, 2, 3)
    for g, row in zip(gammas.tolist(), many):
        torch.testing.assert_close(row, mixkit.blend_labels(y_mix, y_gen, g, dead))
    assert torch.equal(mixkit.blend_labels(y_mix, y_gen, gammas[:, None, None], dead), many)
    assert torch.equal(mixkit.blend_labels(y_mix, y_gen, 1.0, dead), torch.stack([y_gen[0], y_mix[1]]))
    assert torch.equal(mixkit.blend_labels(y_mix, y_gen, 0.0), y_mix)


def test_diagnostics_can_be_turned_off():
    x, y = three_classes()
    batch = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    on = mixkit.GenLabel("gaussian").fit(x, y)
    off = mixkit.GenLabel("gaussian", diagnostics=False).fit(x, y)
    a, b = on(batch), off(batch)
    assert torch.equal(a.y, b.y)
    assert "genlabel" in a.info and "genlabel" not in b.info
    assert off.stats() == {"calls": 1, "samples": 300}
    assert set(on.stats()) == {"calls", "samples", "changed", "fallback"}


# -- issue 13: findings 6, 8, 13, 14 --------------------------------------------------------------


def test_targets_do_not_require_grad_and_fit_stores_no_graph():
    x, y = three_classes()
    xg = x.clone().requires_grad_(True)
    gl = mixkit.GenLabel("gaussian").fit(xg * 1.0, y)
    assert not any(b.requires_grad or b.grad_fn is not None for b in gl.density.buffers())
    batch = mixkit.Mixup(num_classes=3, seed=0)(xg, y)
    assert batch.x.requires_grad
    out = gl(batch)
    assert not out.y.requires_grad
    y_gen, _ = gl.posterior(batch.x)
    assert not y_gen.requires_grad


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_temperature_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="temperature"):
        mixkit.GenLabel("gaussian", temperature=bad)


def test_tiny_temperature_gives_the_one_hot_argmax_label():
    x, y = three_classes()
    gl = mixkit.GenLabel("gaussian", temperature=1e-300).fit(x, y)
    batch = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    out = gl(batch)
    logp = mixkit.GenLabel("gaussian").fit(x, y).log_posterior(batch.x)
    expected = torch.nn.functional.one_hot(logp.argmax(1), 3).float()
    assert torch.equal(out.y, expected)
    assert int(out.info["genlabel"]["fallback"]) == 0


class Ties(mixkit.Density):
    """Every class equally likely everywhere: top_k must still keep exactly k."""

    def _fit(self, x, y):
        pass

    def _log_prob(self, x):
        return torch.zeros(x.shape[0], self.num_classes, dtype=x.dtype)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_keeps_exactly_k_classes_on_ties(k):
    density = Ties().fit(torch.randn(8, 2), torch.arange(8) % 5)
    gl = mixkit.GenLabel(density, top_k=k)
    out = gl(mixed(torch.randn(6, 2), torch.arange(6) % 5, 5))
    assert ((out.y > 0).sum(1) == k).all()
    torch.testing.assert_close(out.y.sum(1), torch.ones(6))
    torch.testing.assert_close(out.y.max(1).values, torch.full((6,), 1.0 / k))


@pytest.mark.parametrize("prior", [
    [0.5, float("nan"), 0.5], [0.5, float("inf"), 0.5], [-0.1, 0.6, 0.5], [0.0, 0.0, 0.0], [[0.5, 0.5]], [],
])
def test_bad_priors_are_refused_at_construction(prior):
    with pytest.raises(ValueError, match="prior"):
        mixkit.GenLabel("gaussian", prior=torch.tensor(prior))


def test_prior_of_the_wrong_length_says_so():
    x, y = three_classes()
    gl = mixkit.GenLabel("gaussian", prior=torch.tensor([0.5, 0.5])).fit(x, y)
    with pytest.raises(ValueError, match="prior has 2 entries but the density knows 3 classes"):
        gl(mixkit.Mixup(num_classes=3, seed=0)(x, y))


def test_prior_tensor_is_copied_not_referenced():
    p = torch.tensor([1.0, 1.0, 2.0])
    gl = mixkit.GenLabel("gaussian", prior=p)
    p[0] = 100.0
    torch.testing.assert_close(gl.prior_probs, torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64))


def test_zero_row_batches_pass_through():
    x, y = three_classes()
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    for shape in ((0, 3), (0, 1, 3)):
        empty = MixedBatch(torch.zeros(shape), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                           torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
        out = gl(empty)
        assert out.y.shape == (0, 3) and int(out.info["genlabel"]["fallback"]) == 0
    y_gen, dead = gl.posterior(torch.zeros(0, 3))
    assert y_gen.shape == (0, 3) and dead.shape == (0,)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"density": 42}, TypeError, "registered density name or a mixkit.Density"),
    ({"density": mixkit.Gaussian(), "covariance": "diag"}, TypeError, "only accepted with a density name"),
    ({"gamma": float("nan")}, ValueError, "gamma"),
    ({"gamma": "0.5"}, TypeError, "gamma"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"top_k": 2.5}, TypeError, "top_k"),
    ({"temperature": None}, TypeError, "temperature"),
    ({"prior": "balanced"}, ValueError, "prior"),
    ({"prior": object()}, TypeError, "prior"),
    ({"feature_map": 3}, TypeError, "feature_map"),
])
def test_construction_errors_are_mixkit_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        mixkit.GenLabel(**kwargs)


def test_fit_errors_say_what_is_wrong():
    gl = mixkit.GenLabel("gaussian")
    with pytest.raises(ValueError, match="non-empty"):
        gl.fit(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="samples but y has"):
        gl.fit(torch.zeros(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        gl.fit(torch.randn(6, 2), torch.tensor([0.0, 1.5, 0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="0-d"):
        gl.fit(torch.randn(6, 2), torch.tensor(1))
    with pytest.raises(TypeError, match="without y"):
        gl.fit(torch.utils.data.TensorDataset(torch.randn(4, 2), torch.arange(4)), torch.arange(4))


def test_huge_temperature_is_uniform_over_the_classes_with_density():
    density = BoundedSupport().fit(torch.tensor([[0.5], [1.5], [2.5]]), torch.tensor([0, 1, 2]))
    gl = mixkit.GenLabel(density, temperature=1e300)
    # x = 1.0 lies in the supports of classes 0 and 1 only: class 2 is -inf
    out = gl(mixed(torch.tensor([[1.0]]), torch.tensor([0]), 3))
    torch.testing.assert_close(out.y, torch.tensor([[0.5, 0.5, 0.0]]))
