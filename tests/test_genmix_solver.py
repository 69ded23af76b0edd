"""GenMix's solver (mixkit.genmix_solver) and the Gaussian's closed form on a segment."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from mixkit import Gaussian
from mixkit.densities.base import Density
from mixkit.genmix_solver import (
    bisect_segment,
    has_closed_form,
    intrudes,
    logit,
    project_to_ratio,
    resolve_method,
    solve_segment,
)

torch.set_num_threads(1)


def blobs(means, n=40, std=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.as_tensor(means, dtype=torch.float64)
    k, d = means.shape
    x = means.repeat_interleave(n, 0) + std * torch.randn(k * n, d, generator=g, dtype=torch.float64)
    return x, torch.arange(k).repeat_interleave(n)


THREE = [[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 4.0, -1.0]]


def random_pairs(x, y, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(0, x.shape[0], (n,), generator=g)
    ib = torch.randint(0, x.shape[0], (n,), generator=g)
    keep = y[ia] != y[ib]
    return x[ia][keep], x[ib][keep], y[ia][keep], y[ib][keep]


class Delegating(Density):
    """Not a Gaussian: scores with one and offers its closed form, counting calls."""

    def __init__(self, inner: Gaussian) -> None:
        super().__init__(inner.num_classes)
        self.inner = inner
        self.dim, self.fitted = inner.dim, True
        self.register_buffer("class_counts", inner.class_counts.clone())
        self.quadratic_calls = 0
        self.log_prob_calls = 0

    def _log_prob(self, x):
        self.log_prob_calls += 1
        return self.inner.log_prob(x)

    def segment_quadratic(self, x_a, x_b, c_a, c_b):
        self.quadratic_calls += 1
        return self.inner.segment_quadratic(x_a, x_b, c_a, c_b)


class NoClosedForm(Density):
    def __init__(self, inner: Gaussian) -> None:
        super().__init__(inner.num_classes)
        self.inner = inner
        self.dim, self.fitted = inner.dim, True
        self.register_buffer("class_counts", inner.class_counts.clone())

    def _log_prob(self, x):
        return self.inner.log_prob(x)


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical", "tied"])
def test_segment_quadratic_is_the_log_ratio_on_the_segment(covariance):
    x, y = blobs(THREE)
    dens = Gaussian(covariance=covariance).fit(x, y)
    xa, xb, ca, cb = random_pairs(x, y, 64)
    a, b, c = dens.segment_quadratic(xa, xb, ca, cb)
    assert a.dtype == torch.float64 and a.shape == ca.shape
    for t in (0.0, 0.3, 0.5, 1.0, 1.7):  # a quadratic in t, also off [0, 1]
        lp = dens.log_prob(t * xa + (1 - t) * xb)
        f = lp.gather(1, ca[:, None]).squeeze(1) - lp.gather(1, cb[:, None]).squeeze(1)
        assert torch.allclose((a * t + b) * t + c, f, atol=1e-8, rtol=1e-8)


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(2, 4),
    d=st.integers(1, 5),
    covariance=st.sampled_from(["full", "diag", "spherical", "tied"]),
    scale=st.floats(1e-2, 1e2),
    seed=st.integers(0, 2**16),
)
def test_segment_quadratic_property(k, d, covariance, scale, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat(8)
    x = scale * (torch.randn(8 * k, d, generator=g, dtype=torch.float64) + 3 * torch.randn(
        k, d, generator=g, dtype=torch.float64)[y])
    dens = Gaussian(covariance=covariance).fit(x, y)
    xa, xb, ca, cb = random_pairs(x, y, 16, seed)
    if ca.numel() == 0:
        return
    a, b, c = dens.segment_quadratic(xa, xb, ca, cb)
    for t in (0.0, 0.5, 1.0):
        lp = dens.log_prob(t * xa + (1 - t) * xb)
        f = lp.gather(1, ca[:, None]).squeeze(1) - lp.gather(1, cb[:, None]).squeeze(1)
        tol = 1e-7 * (1 + f.abs())
        assert bool(((a * t + b) * t + c - f).abs().le(tol).all())
    # the root found by the solver is where the ratio is lam
    lam = torch.full((ca.numel(),), 0.3, dtype=torch.float64)
    sol = solve_segment(dens, xa, xb, ca, cb, lam)
    pts = sol.t[:, None] * xa + (1 - sol.t[:, None]) * xb
    lp = dens.log_prob(pts)
    r = torch.sigmoid(lp.gather(1, ca[:, None]) - lp.gather(1, cb[:, None])).squeeze(1)
    assert torch.allclose(r[sol.solved], lam[sol.solved], atol=1e-6)


def test_segment_quadratic_against_scipy():
    x, y = blobs(THREE)
    dens = Gaussian().fit(x, y)
    xa, xb = x[:1], x[45:46]
    a, b, c = dens.segment_quadratic(xa, xb, torch.tensor([0]), torch.tensor([1]))
    for t in (0.0, 0.4, 1.0):
        pt = (t * xa + (1 - t) * xb)[0].numpy()
        ref = (multivariate_normal(dens.means[0].numpy(), dens.covariances[0].numpy()).logpdf(pt)
               - multivariate_normal(dens.means[1].numpy(), dens.covariances[1].numpy()).logpdf(pt))
        assert math.isclose(float((a * t + b) * t + c), ref, rel_tol=1e-9, abs_tol=1e-9)


def test_factorisation_cache_follows_the_buffers():
    x, y = blobs(THREE)
    dens = Gaussian().fit(x, y)
    other = Gaussian().fit(x * 1.5 + 2, y)
    xa, xb, ca, cb = random_pairs(x, y, 32)
    first = dens.segment_quadratic(xa, xb, ca, cb)
    assert "_segment_cache" in dens.__dict__  # on the instance, not in a module-level table
    dens.load_state_dict(other.state_dict())  # copies in place: same tensors, new versions
    again = dens.segment_quadratic(xa, xb, ca, cb)
    want = other.segment_quadratic(xa, xb, ca, cb)
    assert not torch.allclose(first[2], again[2])
    for got, ref in zip(again, want, strict=True):
        assert torch.allclose(got, ref, atol=1e-10)
    twin = copy.deepcopy(dens)  # a copy carries its own cache
    twin.fit(x, y)
    for got, ref in zip(twin.segment_quadratic(xa, xb, ca, cb), first, strict=True):
        assert torch.allclose(got, ref, atol=1e-10)
    for got, ref in zip(dens.segment_quadratic(xa, xb, ca, cb), want, strict=True):
        assert torch.allclose(got, ref, atol=1e-10)


def test_closed_form_is_a_capability_not_a_type():
    x, y = blobs(THREE)
    gauss = Gaussian().fit(x, y)
    wrapped = Delegating(gauss)
    assert has_closed_form(wrapped) and not isinstance(wrapped, Gaussian)
    assert resolve_method(wrapped, "auto") == "closed_form"
    xa, xb, ca, cb = random_pairs(x, y, 50)
    lam = torch.full((ca.shape[0],), 0.3, dtype=torch.float64)
    sol = solve_segment(wrapped, xa, xb, ca, cb, lam)
    assert wrapped.quadratic_calls == 1 and wrapped.log_prob_calls == 0
    ref = solve_segment(gauss, xa, xb, ca, cb, lam)
    assert torch.equal(sol.t, ref.t) and torch.equal(sol.solved, ref.solved)
    plain = NoClosedForm(gauss)
    assert not has_closed_form(plain) and resolve_method(plain, "auto") == "bisection"
    with pytest.raises(ValueError, match="segment_quadratic.*bisection"):
        solve_segment(plain, xa, xb, ca, cb, lam, method="closed_form")
    with pytest.raises(ValueError, match="method must be one of"):
        solve_segment(plain, xa, xb, ca, cb, lam, method="newton")


def test_bisection_matches_the_closed_form():
    x, y = blobs(THREE)
    gauss = Gaussian().fit(x, y)
    xa, xb, ca, cb = random_pairs(x, y, 80)
    lam = torch.rand(ca.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    closed = solve_segment(gauss, xa, xb, ca, cb, lam, method="closed_form")
    bis = solve_segment(NoClosedForm(gauss), xa, xb, ca, cb, lam, tol=1e-10)
    # f is monotone on most segments; where it is not, the two may pick different roots
    both = closed.solved & bis.solved
    assert int(both.sum()) > 0.8 * ca.shape[0]
    lp = gauss.log_prob(bis.t[:, None] * xa + (1 - bis.t[:, None]) * xb)
    r = torch.sigmoid(lp.gather(1, ca[:, None]) - lp.gather(1, cb[:, None])).squeeze(1)
    assert torch.allclose(r[bis.solved], lam[bis.solved], atol=1e-6)


def test_bisection_on_a_known_monotone_ratio():
    # 1-d, equal variances: log p_0 - log p_1 is linear in x, root in closed form
    dens = Gaussian(covariance="spherical")
    dens.set_parameters(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
    xa = torch.full((3, 1), -1.0, dtype=torch.float64)
    xb = torch.full((3, 1), 3.0, dtype=torch.float64)
    lam = torch.tensor([0.5, 0.9, 1 - 1e-12], dtype=torch.float64)
    c0, c1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    sol = bisect_segment(dens, xa, xb, c0, c1, logit(lam), 40)
    # log p_0 - log p_1 = 2 - 2x and x(t) = 3 - 4t, so f(t) = 8t - 4 = logit(lam)
    expect = (logit(lam[:2]) + 4) / 8
    assert torch.allclose(sol.t[:2], expect, atol=1e-10)
    assert sol.solved.tolist() == [True, True, False]  # logit(1 - 1e-12) ~ 27.6 > f(1) = 4
    assert float(sol.t[2]) == 1.0  # clamped to the endpoint closest to the ratio


def test_zero_rows():
    x, y = blobs(THREE)
    dens = Gaussian().fit(x, y)
    empty = x[:0]
    ids = y[:0]
    for method in ("closed_form", "bisection"):
        sol = solve_segment(dens, empty, empty, ids, ids, torch.zeros(0), method=method)
        assert sol.t.shape == (0,) and sol.solved.shape == (0,) and sol.solved.dtype == torch.bool


def test_intrudes():
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.2, 0.4]]))
    ca, cb = torch.tensor([0, 0, 0]), torch.tensor([1, 1, 2])
    assert intrudes(lp, ca, cb).tolist() == [False, True, False]


def test_projection_reaches_the_ratio():
    x, y = blobs(THREE)
    dens = Gaussian().fit(x, y)
    xa, xb, ca, cb = random_pairs(x, y, 40)
    lam = torch.full((ca.shape[0],), 0.25, dtype=torch.float64)
    pts = project_to_ratio(dens, xa, xb, ca, cb, lam, eps=1e-4, max_iter=60, max_step=0.25)
    lp = dens.log_prob(pts)
    r = torch.sigmoid(lp.gather(1, ca[:, None]) - lp.gather(1, cb[:, None])).squeeze(1)
    assert float(((r - 0.25).abs() <= 1e-4).double().mean()) > 0.9
    assert not pts.requires_grad


@pytest.mark.cuda
def test_cuda_matches_cpu():
    x, y = blobs(THREE)
    xa, xb, ca, cb = random_pairs(x, y, 64)
    lam = torch.full((ca.shape[0],), 0.4, dtype=torch.float64)
    cpu = Gaussian().fit(x, y)
    gpu = Gaussian().fit(x.cuda(), y.cuda())
    ref = solve_segment(cpu, xa, xb, ca, cb, lam)
    got = solve_segment(gpu, xa.cuda(), xb.cuda(), ca.cuda(), cb.cuda(), lam.cuda())
    assert got.t.is_cuda
    torch.testing.assert_close(got.t.cpu(), ref.t, atol=1e-8, rtol=1e-8)
    assert torch.equal(got.solved.cpu(), ref.solved)
    bis = solve_segment(NoClosedForm(gpu), xa.cuda(), xb.cuda(), ca.cuda(), cb.cuda(), lam.cuda(),
                        tol=1e-10)
    both = (bis.solved & ref.solved).cpu()
    torch.testing.assert_close(bis.t.cpu()[both], ref.t[both], atol=1e-6, rtol=0)
