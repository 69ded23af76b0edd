"""The density contract under hostile inputs (issue 13): every finding has a test here.

Covers the built-in densities of ``mixkit.densities`` (Gaussian of every covariance type,
KDE, OnlineGaussian): cast cache after refits, half-precision queries, far points,
refits with another class count, autograd leaks, class-id dtypes, wrong-state loads,
``fit_batches`` (reservoir and exact sums).
"""

from __future__ import annotations

import io

import pytest
import torch

import mixkit
from mixkit.densities import KDE, Gaussian, OnlineGaussian

COVS = ("full", "diag", "spherical", "tied")


def blobs(n=240, d=4, k=3, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centres = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    x = centres[y] + torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    return x, y


def all_densities():
    return [Gaussian(c) for c in COVS] + [KDE(bandwidth="scott"), OnlineGaussian(memory=None)]


# -- 1: the cast cache ----------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Gaussian("full"), lambda: Gaussian("diag"),
                                  lambda: KDE(bandwidth="scott")], ids=["full", "diag", "kde"])
def test_float32_queries_are_never_served_from_a_stale_cast(make):
    probe = torch.randn(16, 4, generator=torch.Generator().manual_seed(9))
    for i in range(20):  # fit / query / fit / fit / query reused freed addresses before
        a, b, c = (blobs(seed=10 * i + j) for j in range(3))
        dens = make().fit(*a)
        dens.log_prob(probe)
        dens.fit(*b)
        dens.fit(*c)
        fresh = make().fit(*c)
        torch.testing.assert_close(dens.log_prob(probe), fresh.log_prob(probe), rtol=0, atol=0)


# -- 3: half precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cov", COVS)
def test_half_queries_are_scored_and_returned_in_float32(dtype, cov):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(512) % 2
    x = torch.randn(512, 128, generator=g) + y[:, None] * 0.5  # 128 standardized features
    dens = Gaussian(cov).fit(x, y)
    q = x[:256].to(dtype)
    out = dens.log_prob(q)
    assert out.dtype == torch.float32 and out.device == q.device
    ref = dens.log_prob(q.float())
    torch.testing.assert_close(out, ref)
    post = torch.softmax(out, 1)
    assert torch.isfinite(out).all() and not post.isnan().any()  # no row falls back


def test_repeated_points_class_keeps_its_label_in_half_precision():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(200, 16, generator=g) + 2, torch.full((50, 16), 0.25)])
    y = torch.cat([torch.zeros(200), torch.ones(50)]).long()
    dens = Gaussian("diag", reg_covar=1e-4).fit(x, y)
    post = torch.softmax(dens.log_prob(x[200:].half()), 1)
    assert (post.argmax(1) == 1).all()


def test_every_density_returns_the_promoted_dtype():
    x, y = blobs()
    for dens in all_densities():
        dens.fit(x, y)
        for dtype, want in [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                            (torch.float32, torch.float32), (torch.float64, torch.float64)]:
            assert dens.log_prob(x[:5].to(dtype)).dtype == want, (type(dens).__name__, dtype)
        assert dens.log_prob(x[:5].long()).dtype == torch.float32


# -- 4: far points --------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("scale", [1e8, 1e9, 1e10])
def test_far_float32_queries_never_give_a_confident_wrong_posterior(cov, scale):
    x, y = blobs(d=6, k=4, seed=3)
    dens = Gaussian(cov).fit(x, y)
    g = torch.Generator().manual_seed(4)
    q = torch.randn(200, 6, generator=g, dtype=torch.float64) * scale
    exact = torch.softmax(dens.log_prob(q), 1)  # float64 reference
    lp = dens.log_prob(q.float())
    assert not lp.isnan().any()
    dead = torch.isneginf(lp).all(1)
    post = torch.softmax(lp.double(), 1)
    live = ~dead
    # a row either says "cannot say" (all -inf) or agrees with the float64 posterior
    assert (post[live] - exact[live]).abs().max().item() < 1e-3 if live.any() else True


@pytest.mark.parametrize("cov", COVS)
def test_rounding_bound_holds_and_ordinary_queries_are_not_flagged(cov):
    gen = torch.Generator().manual_seed(5)
    for d, k in [(4, 3), (64, 10), (200, 5)]:
        n = max(40 * d, 400)
        y = torch.arange(n) % k
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        x = x + torch.randn(k, d, generator=gen, dtype=torch.float64)[y] * 2
        dens = Gaussian(cov).fit(x, y)
        lam = torch.rand(300, 1, generator=gen, dtype=torch.float64)
        perm = torch.randperm(x.shape[0], generator=gen)[:300]
        q = lam * x[:300] + (1 - lam) * x[perm]  # mixed points
        lo, hi = dens.log_prob(q.float()).double(), dens.log_prob(q)
        assert torch.isfinite(lo).all()  # nothing flagged in ordinary use
        assert (lo - hi).abs().max().item() < 1e-3 * max(1.0, d / 64)


def test_constant_feature_far_query_keeps_the_decisive_classes():
    x, y = blobs()
    x[y == 0, 2] = 5.0  # a constant feature in class 0: a huge precision in one direction
    dens = Gaussian(reg_covar=1e-4).fit(x.float(), y)
    q = torch.tensor([[1e3, -1e3, 1e3, 0.0]])
    lo, hi = dens.log_prob(q), dens.log_prob(q.double())
    assert torch.isfinite(lo).all() or torch.isneginf(lo).all()
    if torch.isfinite(lo).all():
        assert lo.argmax() == hi.argmax()


def test_online_gaussian_variances_survive_a_large_offset():
    for offset in (1e8, 1e10):
        x, y = blobs(offset=offset)
        ref_var = torch.stack([(x[y == c] - offset).var(0, unbiased=False) for c in range(3)])
        for memory in (None, 0.0):
            dens = OnlineGaussian(3, memory=memory, covariance="diag")
            for xb, yb in zip(x.split(60), y.split(60), strict=True):
                dens.update(xb, yb)
            _, var = dens.gaussian_parameters()
            if memory is None:
                torch.testing.assert_close(var, ref_var, rtol=1e-6, atol=1e-6)
            else:  # the last batch only
                last = torch.stack([(x[-60:][y[-60:] == c] - offset).var(0, unbiased=False) for c in range(3)])
                torch.testing.assert_close(var, last, rtol=1e-6, atol=1e-6)


# -- 5: refits with another class count -----------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Gaussian("full"), lambda: Gaussian("diag"),
                                  lambda: Gaussian("tied"), lambda: KDE(bandwidth="scott"),
                                  lambda: OnlineGaussian(), lambda: OnlineGaussian(memory=None)],
                         ids=["full", "diag", "tied", "kde", "online", "online-running"])
def test_refit_with_another_class_count(make):
    x5, y5 = blobs(k=5)
    x3, y3 = blobs(k=3, seed=1)
    dens = make().fit(x5, y5)
    assert dens.log_prob(x5[:4]).shape == (4, 5)
    dens.fit(x3, y3)
    assert dens.num_classes == 3 and dens.log_prob(x3[:4]).shape == (4, 3)
    assert dens.class_counts.shape == (3,)
    fresh = make().fit(x3, y3)
    torch.testing.assert_close(dens.log_prob(x3), fresh.log_prob(x3))
    dens.fit(x5, y5)
    assert dens.log_prob(x5[:4]).shape == (4, 5)


def test_a_given_class_count_is_kept_on_refit():
    x3, y3 = blobs(k=3)
    dens = OnlineGaussian(num_classes=5).fit(x3, y3)
    assert dens.log_prob(x3[:2]).shape == (2, 5)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        Gaussian(num_classes=2).fit(x3, y3)


# -- 6: autograd ----------------------------------------------------------------------------


def test_fitting_on_tensors_that_require_grad_stores_no_graph():
    x, y = blobs()
    for dens in all_densities() + [KDE()]:
        xg = (x * 1.0).requires_grad_()
        dens.fit(xg * 2.0, y)
        for name, buf in dens.named_buffers():
            assert not buf.requires_grad and buf.grad_fn is None, (type(dens).__name__, name)
        dens.fit_batches([(xg[:120] * 2.0, y[:120]), (xg[120:] * 2.0, y[120:])])
        assert all(not b.requires_grad for b in dens.buffers())
    on = OnlineGaussian(3)
    on.update((x * 1.0).requires_grad_(), y)
    assert all(not b.requires_grad for b in on.buffers())


# -- 7: class ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["uint8", "int8", "int16", "int32", "column", "float"])
def test_class_ids_of_any_integer_form_fit_alike(form):
    x, y = blobs()
    yy = {"uint8": y.to(torch.uint8), "int8": y.to(torch.int8), "int16": y.to(torch.int16),
          "int32": y.int(), "column": y[:, None], "float": y.double()}[form]
    for make in (Gaussian, lambda: KDE(bandwidth="scott"), OnlineGaussian):
        ref, got = make().fit(x, y), make().fit(x, yy)
        assert torch.equal(ref.log_prob(x[:7]), got.log_prob(x[:7]))
    ref = OnlineGaussian(3).update(x, y)
    got = OnlineGaussian(3).update(x, yy)
    assert torch.equal(ref.log_prob(x[:7]), got.log_prob(x[:7]))


def test_non_integral_float_ids_are_refused():
    x, y = blobs()
    bad = y.double() + 0.5
    with pytest.raises(ValueError, match="integer class ids"):
        Gaussian().fit(x, bad)
    with pytest.raises(ValueError, match="integer class ids"):
        OnlineGaussian(3).update(x, bad)
    with pytest.raises(ValueError, match="mask"):
        Gaussian().fit(x, y.bool())
    with pytest.raises(ValueError, match="at least one sample|0 samples"):
        Gaussian().fit(x[:0], y[:0])


# -- 10: loading the wrong state ------------------------------------------------------------


def _saved(dens):
    buf = io.BytesIO()
    torch.save(dens.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_loading_another_density_class_raises_naming_both():
    x, y = blobs()
    gauss, kde = _saved(Gaussian().fit(x, y)), _saved(KDE(bandwidth="scott").fit(x, y))
    with pytest.raises(ValueError, match="saved by a Gaussian.*into a KDE"):
        KDE().load_state_dict(gauss)
    target = Gaussian()
    with pytest.raises(ValueError, match="saved by a KDE.*into a Gaussian"):
        target.load_state_dict(kde)
    assert not target.fitted and target.num_classes is None  # nothing changed
    with pytest.raises(ValueError, match="saved by a OnlineGaussian"):
        Gaussian().load_state_dict(_saved(OnlineGaussian().fit(x, y)))
    diag = Gaussian("diag")
    with pytest.raises(ValueError, match="covariance='full'"):
        diag.load_state_dict(gauss)
    assert not diag.fitted and "means" not in dict(diag.named_buffers())


def test_a_density_inside_a_module_round_trips():
    x, y = blobs()
    holder = torch.nn.Module()
    holder.density = Gaussian("full").fit(x, y)
    state = _saved(holder)
    fresh = torch.nn.Module()
    fresh.density = Gaussian("full")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.density.log_prob(x.float()), holder.density.log_prob(x.float()))


def test_set_parameters_copies_and_sample_checks_the_class():
    means = torch.zeros(2, 3, dtype=torch.float64)
    var = torch.ones(2, 3, dtype=torch.float64)
    g = Gaussian("diag").set_parameters(means, var)
    before = g.log_prob(torch.ones(1, 3, dtype=torch.float64))
    means += 5.0
    var *= 3.0
    assert torch.equal(g.log_prob(torch.ones(1, 3, dtype=torch.float64)), before)
    assert g.means.data_ptr() != means.data_ptr()
    for c in (-1, 2):
        with pytest.raises(ValueError, match=r"class c must lie in \[0, 2\)"):
            g.sample(4, c)


# -- fit_batches ----------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVS)
def test_gaussian_fit_batches_equals_the_stacked_fit(cov):
    x, y = blobs(n=1000, d=5, k=4, offset=1e4)
    stacked = Gaussian(cov).fit(x, y)
    streamed = Gaussian(cov).fit_batches(zip(x.split(64), y.split(64), strict=True))
    torch.testing.assert_close(streamed.means, stacked.means, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(streamed.covariances, stacked.covariances, rtol=1e-6, atol=1e-9)
    assert torch.equal(streamed.class_counts, stacked.class_counts)
    torch.testing.assert_close(streamed.log_prob(x[:50]), stacked.log_prob(x[:50]), rtol=1e-6, atol=1e-6)


def test_gaussian_fit_batches_grows_classes_and_checks_counts():
    x, y = blobs(k=4)
    order = y.argsort(stable=True)  # class 3 appears only in the last batch
    streamed = Gaussian().fit_batches(zip(x[order].split(50), y[order].split(50), strict=True))
    torch.testing.assert_close(streamed.means, Gaussian().fit(x, y).means)
    with pytest.raises(ValueError, match="at least 2"):
        Gaussian().fit_batches([(x[:5], torch.tensor([0, 0, 1, 1, 2]))])
    with pytest.raises(ValueError, match="no batches"):
        Gaussian().fit_batches([])


def test_default_fit_batches_concatenates_and_the_kde_keeps_a_seeded_reservoir():
    x, y = blobs(n=900, k=3)
    batches = list(zip(x.split(100), y.split(100), strict=True))
    plain = KDE(bandwidth="scott").fit_batches(batches)
    torch.testing.assert_close(plain.log_prob(x[:9]), KDE(bandwidth="scott").fit(x, y).log_prob(x[:9]))
    capped = KDE(bandwidth="scott", max_points_per_class=50, seed=3).fit_batches(batches)
    assert int(capped.point_mask.sum(1).max()) <= 50
    assert capped.class_counts.tolist() == torch.bincount(y).tolist()  # the prior sees every point
    again = KDE(bandwidth="scott", max_points_per_class=50, seed=3).fit_batches(batches)
    assert torch.equal(capped.points, again.points)
    other = KDE(bandwidth="scott", max_points_per_class=50, seed=4).fit_batches(batches)
    assert not torch.equal(capped.points, other.points)
    # the kept points are a uniform sample of the stream: early and late batches both appear
    kept = capped.points[capped.point_mask]
    first_half = (kept[:, None, :] == x[None, :450].to(kept)).all(-1).any(1).float().mean()
    assert 0.3 < first_half < 0.7


# -- 5 (update): no host syncs --------------------------------------------------------------


def test_online_update_reads_nothing_on_the_host_without_validation(monkeypatch):
    x, y = blobs()
    dens = OnlineGaussian(3, 4, memory=0.9, validate=False)
    running = OnlineGaussian(3, 4, memory=None, validate=False)

    def refuse(*args, **kwargs):
        raise AssertionError("host sync on the update path")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for xb, yb in zip(x.split(40), y.split(40), strict=True):
        dens.update(xb, yb)
        running.update(xb, yb)
    monkeypatch.undo()
    ref = OnlineGaussian(3, memory=None).fit(x, y)
    torch.testing.assert_close(running.gaussian_parameters()[1], ref.gaussian_parameters()[1])


def test_mixkit_exports_fit_batches():
    assert callable(mixkit.Density.fit_batches)


@pytest.mark.parametrize("cov", COVS)
def test_scoring_off_the_cpu_path_reads_nothing_on_the_host(monkeypatch, cov):
    """The accelerator / compiled path (no CPU shortcut) decides "cannot say" on the device."""
    from mixkit.densities import base as base_module
    from mixkit.densities import gaussian as gaussian_module

    x, y = blobs(d=6, k=4, seed=3)
    dens = Gaussian(cov).fit(x, y)
    q = torch.cat([x[:50], torch.randn(50, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e9])
    expected = dens.log_prob(q.float())  # the CPU path
    online = OnlineGaussian(4, memory=None, covariance="diag").fit(x, y)
    expected_online = online.log_prob(q.float())
    monkeypatch.setattr(base_module, "is_compiling", lambda: True)
    monkeypatch.setattr(gaussian_module, "is_compiling", lambda: True)

    def refuse(*args, **kwargs):
        raise AssertionError("host sync on the scoring path")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    got, got_online = dens.log_prob(q.float()), online.log_prob(q.float())
    monkeypatch.undo()
    assert torch.equal(got, expected) and torch.equal(got_online, expected_online)
    assert torch.isfinite(got[:50]).all()


# -- properties -----------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    cov=st.sampled_from(COVS + ("online-diag", "online-spherical")),
    d=st.integers(1, 12),
    k=st.integers(1, 5),
    log_scale=st.integers(-3, 10),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_log_prob_is_never_nan_and_never_confidently_wrong(cov, d, k, log_scale, dtype, seed):
    x, y = blobs(n=12 * k, d=d, k=k, seed=seed)
    if cov.startswith("online"):
        dens = OnlineGaussian(memory=None, covariance=cov.split("-")[1]).fit(x, y)
    else:
        dens = Gaussian(cov).fit(x, y)
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(33, d, generator=g, dtype=torch.float64) * 10.0**log_scale
    qd = q.to(dtype)
    lp = dens.log_prob(qd)
    assert lp.shape == (33, k) and lp.dtype == torch.promote_types(dtype, torch.float32)
    assert not lp.isnan().any() and not torch.isposinf(lp).any()
    live = ~torch.isneginf(lp).all(1)
    exact = torch.softmax(dens.log_prob(qd.double()), 1)  # the same (rounded) query in float64
    post = torch.softmax(lp.double(), 1)
    if live.any():
        assert (post[live] - exact[live]).abs().max().item() < 1e-2


# -- the same contract for the plugin densities (through the base class) -------------------

PLUGIN_TINY = {
    "flow": dict(num_layers=1, hidden=8, max_epochs=3, seed=3, progress=False),
    "vae": dict(hidden=8, max_epochs=3, kl_warmup=1, num_samples=8, seed=3, progress=False),
    "gan": dict(hidden=8, steps=20, bank_size=32, inversion_steps=5, seed=3, progress=False),
}


@pytest.mark.parametrize("name", sorted(PLUGIN_TINY))
def test_plugin_densities_refit_detach_take_any_ids_and_refuse_foreign_states(name):
    from mixkit.registry import resolve

    g = torch.Generator().manual_seed(0)
    x5, y5 = torch.randn(100, 3, generator=g), torch.arange(100) % 5
    x3, y3 = torch.randn(60, 3, generator=g), torch.arange(60) % 3
    dens = resolve("density", name, **PLUGIN_TINY[name])
    dens.fit(x5, y5)
    assert dens.log_prob(x5[:4]).shape == (4, 5)
    dens.fit(x3.clone().requires_grad_(), y3.to(torch.uint8))  # another K, graph, uint8 ids
    out = dens.log_prob(x3[:4].half())
    assert out.shape == (4, 3) and out.dtype == torch.float32 and not out.isnan().any()
    tensors = list(dens.buffers()) + list(dens.parameters())
    assert all(t.grad_fn is None for t in tensors)
    with pytest.raises(ValueError, match=f"saved by a {type(dens).__name__}.*into a Gaussian"):
        Gaussian().load_state_dict(_saved(dens))


def test_pickled_density_drops_converted_copies_and_scores_alike():
    import copy
    import pickle

    x, y = blobs()
    dens = Gaussian().fit(x, y)
    before = dens.log_prob(x.float())
    assert dens._cast_cache
    for clone in (copy.deepcopy(dens), pickle.loads(pickle.dumps(dens))):
        assert not clone._cast_cache
        assert torch.equal(clone.log_prob(x.float()), before)
