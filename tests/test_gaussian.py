"""Gaussian density: against scipy for every covariance type, fitting, round trip, errors."""

import io

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import mixkit
from mixkit import chunking
from mixkit.densities import gaussian as gaussian_module


def data(n=300, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    mix = torch.randn(k, d, d, generator=g) * 0.5 + torch.eye(d)
    x = torch.einsum("nd,nde->ne", torch.randn(n, d, generator=g), mix[y]) + 3 * torch.randn(k, d, generator=g)[y]
    return x.double(), y


def reference(x, means, covs):
    return np.stack([multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs)], 1)


@pytest.mark.parametrize("cov", ["full", "diag", "spherical", "tied"])
def test_fit_and_log_prob_match_scipy(cov):
    x, y = data()
    g = mixkit.Gaussian(covariance=cov, reg_covar=1e-6).fit(x, y)
    k, d = 3, x.shape[1]
    xn, yn = x.numpy(), y.numpy()
    means = np.stack([xn[yn == c].mean(0) for c in range(k)])
    full = np.stack([np.cov(xn[yn == c].T, bias=True) for c in range(k)])
    if cov == "full":
        covs = full
    elif cov == "diag":
        covs = np.stack([np.diag(np.diag(f)) for f in full])
    elif cov == "spherical":
        covs = np.stack([np.eye(d) * np.trace(f) / d for f in full])
    else:
        counts = np.bincount(yn)
        covs = np.repeat((full * counts[:, None, None]).sum(0)[None] / counts.sum(), k, 0)
    covs = covs + 1e-6 * np.eye(d)
    probe = torch.randn(50, d, dtype=torch.float64) * 4
    expected = reference(probe.numpy(), means, covs)
    np.testing.assert_allclose(g.log_prob(probe).numpy(), expected, rtol=1e-9, atol=1e-8)
    # float32 scoring stays close (it is what a training batch uses)
    np.testing.assert_allclose(g.log_prob(probe.float()).numpy(), expected, rtol=1e-4, atol=1e-3)
    assert g.log_prob(probe.float()).dtype == torch.float32


@pytest.mark.parametrize("cov", ["full", "diag", "tied"])
def test_chunked_scoring_equals_unchunked(monkeypatch, cov):
    x, y = data()
    g = mixkit.Gaussian(cov).fit(x, y)
    probe = torch.randn(300, 4, dtype=torch.float64)
    whole = g.log_prob(probe)
    monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", 24)  # the 64-row minimum: 5 chunks
    torch.testing.assert_close(g.log_prob(probe), whole, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("rows", [50, 300])  # one chunk, and five of 64 rows
def test_whitening_scores_alike_in_both_layouts(monkeypatch, rows):
    """Class-major whitening (small K d) and row-major whitening (large K d) agree, chunked
    or not, and GenLabel's labels come out row-major either way."""
    gen = torch.Generator().manual_seed(5)
    y = torch.arange(400) % 10
    x = torch.randn(400, 20, generator=gen, dtype=torch.float64) + 2 * torch.randn(10, 20, generator=gen,
                                                                                    dtype=torch.float64)[y]
    monkeypatch.setattr(gaussian_module, "use_quadratic_form", lambda dim, n: False)
    probe = torch.randn(rows, 20, generator=gen, dtype=torch.float64)
    col = mixkit.Gaussian("full").fit(x, y)
    monkeypatch.setattr(gaussian_module, "_CLASS_MAJOR_MAX", 0)
    monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", 24)
    row = mixkit.Gaussian("full").fit(x, y)
    assert col._class_major and not row._class_major
    torch.testing.assert_close(row.log_prob(probe), col.log_prob(probe), rtol=1e-12, atol=1e-10)
    batch = mixkit.Mixup(num_classes=10, seed=0)(probe.float(), y[:rows])
    out = mixkit.GenLabel(row, validate=False)(batch).y
    assert out.is_contiguous()
    torch.testing.assert_close(out, mixkit.GenLabel(col, validate=False)(batch).y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("d,k", [(3, 4), (20, 100), (64, 12)])
def test_whitening_and_quadratic_forms_agree_with_scipy(monkeypatch, d, k):
    gen = torch.Generator().manual_seed(d)
    means = torch.randn(k, d, generator=gen, dtype=torch.float64) * 2
    a = torch.randn(k, d, d, generator=gen, dtype=torch.float64)
    covs = a @ a.mT / d + 0.3 * torch.eye(d, dtype=torch.float64)
    probe = torch.randn(80, d, generator=gen, dtype=torch.float64) * 2
    expected = reference(probe.numpy(), means.numpy(), covs.numpy())
    forms = {}
    for quadratic in (False, True):
        monkeypatch.setattr(gaussian_module, "use_quadratic_form", lambda dim, n, q=quadratic: q)
        g = mixkit.Gaussian().set_parameters(means, covs)
        forms[g._form] = g
        np.testing.assert_allclose(g.log_prob(probe).numpy(), expected, rtol=1e-9, atol=1e-7)
        lo = g.log_prob(probe.float())
        assert lo.dtype == torch.float32
        np.testing.assert_allclose(lo.numpy(), expected, rtol=1e-4, atol=2e-3)
    assert set(forms) == {"whiten", "quadratic"}


def test_form_choice_follows_the_sizes():
    assert not gaussian_module.use_quadratic_form(512, 10)  # whitening: 20x faster measured
    assert not gaussian_module.use_quadratic_form(512, 100)  # features too big to chunk
    assert gaussian_module.use_quadratic_form(128, 100)
    assert gaussian_module.use_quadratic_form(20, 100)
    assert not gaussian_module.use_quadratic_form(20, 10)


def test_float32_agrees_with_float64_at_d512():
    gen = torch.Generator().manual_seed(0)
    d, k = 512, 10
    y = torch.arange(12000) % k
    x = torch.randn(12000, d, generator=gen, dtype=torch.float64)
    x = x + torch.randn(k, d, generator=gen, dtype=torch.float64)[y]
    g = mixkit.Gaussian().fit(x, y)
    q = 0.5 * (x[:128] + x[128:256])
    err = (g.log_prob(q.float()).double() - g.log_prob(q)).abs().max().item()
    assert err < 1e-2  # about 1e-3 nats measured


def test_far_points_are_finite_and_constant_feature_is_floored():
    x, y = data()
    x[y == 0, 2] = 5.0  # a constant feature in class 0
    g = mixkit.Gaussian(reg_covar=1e-4).fit(x.float(), y)
    lp = g.log_prob(torch.tensor([[1e4, -1e4, 1e4, 0.0]]))
    assert torch.isfinite(lp).all()


def test_state_dict_round_trip_through_torch_save():
    x, y = data()
    for cov in ("full", "diag"):
        g = mixkit.Gaussian(covariance=cov).fit(x, y)
        buf = io.BytesIO()
        torch.save(g.state_dict(), buf)
        buf.seek(0)
        fresh = mixkit.Gaussian(covariance=cov)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        probe = torch.randn(10, 4)
        assert torch.equal(fresh.log_prob(probe), g.log_prob(probe))
        assert fresh.num_classes == 3 and fresh.dim == 4
    with pytest.raises(ValueError, match="covariance='full'"):
        mixkit.Gaussian(covariance="diag").load_state_dict(mixkit.Gaussian().fit(x, y).state_dict())


def test_sample_matches_the_fitted_moments():
    x, y = data(n=3000)
    g = mixkit.Gaussian().fit(x, y)
    s = g.sample(20000, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.mean(0), g.means[1], atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), g.covariances[1], atol=0.15, rtol=0.05)


def test_errors():
    x, y = data()
    with pytest.raises(mixkit.NotFittedError, match="call .fit"):
        mixkit.Gaussian().log_prob(x)
    with pytest.raises(ValueError, match="at least 2 sample"):
        mixkit.Gaussian().fit(torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        mixkit.Gaussian().fit(torch.tensor([[0.0, float("inf")], [1, 2], [3, 4], [5, 6]]), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        mixkit.Gaussian(num_classes=2).fit(x, y)
    g = mixkit.Gaussian().fit(x, y)
    with pytest.raises(ValueError, match="fitted on 4-dimensional data"):
        g.log_prob(torch.randn(3, 5))
    with pytest.raises(ValueError, match="covariance must be one of"):
        mixkit.Gaussian(covariance="banana")
    with pytest.raises(ValueError, match="shape"):
        mixkit.Gaussian().fit(x[:, None], y)
    with pytest.raises(ValueError, match=r"expected covariances of shape \(2, 3, 3\)"):
        mixkit.Gaussian().set_parameters(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="not positive definite"):
        mixkit.Gaussian().set_parameters(torch.zeros(1, 2), -torch.eye(2)[None])
    with pytest.raises(ValueError, match="finite"):
        mixkit.Gaussian("diag").set_parameters(torch.full((1, 2), float("nan")), torch.ones(1, 2))


def test_fit_does_not_mutate_inputs_and_returns_self():
    x, y = data()
    x0, y0 = x.clone(), y.clone()
    g = mixkit.Gaussian()
    assert g.fit(x, y) is g
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("cov", ["full", "tied", "diag"])
@pytest.mark.parametrize("quadratic", [False, True])
def test_rounding_error_bound_holds(monkeypatch, cov, quadratic):
    """The bound behind "cannot say" is above the actual float32 error, near and far."""
    monkeypatch.setattr(gaussian_module, "use_quadratic_form", lambda dim, n: quadratic)
    gen = torch.Generator().manual_seed(1)
    for d, k, nc in [(8, 5, 40), (64, 10, 40), (64, 10, 200)]:  # nc < d: near-singular
        y = torch.arange(nc * k) % k
        x = torch.randn(nc * k, d, generator=gen, dtype=torch.float64)
        x = x + torch.randn(k, d, generator=gen, dtype=torch.float64)[y]
        g = mixkit.Gaussian(cov).fit(x, y)
        for scale in (1.0, 30.0, 1e4):
            lam = torch.rand(64, 1, generator=gen, dtype=torch.float64)
            q = (lam * x[:64] + (1 - lam) * x[64:128]) * scale
            xs = q.float() - g.cast("shift", torch.float32)
            out = g._score(xs)
            bound = g._rounding_error(out).double()
            assert ((out.double() - g.log_prob(q)).abs() <= bound).all()
