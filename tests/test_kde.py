"""Tests of the class-conditional Gaussian KDE density."""

from __future__ import annotations

import io
import math

import pytest
import torch

import mixkit
import mixkit.densities.kde as kde_module
from mixkit import chunking
from mixkit.densities.base import NotFittedError
from mixkit.densities.kde import KDE


def _blobs(n: int = 240, d: int = 3, k: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.3, 0.5]], dtype=torch.float64)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix[:d, :d] + 2.0 * y[:, None]
    return x, y


def _circles(n_per_circle: int = 100, noise: float = 0.1, seed: int = 0):
    """Class 0 on circles of radii 1 and 3, class 1 on radii 2 and 4 (interleaved rings)."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for label, radii in ((0, (1.0, 3.0)), (1, (2.0, 4.0))):
        for r in radii:
            t = torch.rand(n_per_circle, generator=gen, dtype=torch.float64) * 2 * math.pi
            rr = r + noise * torch.randn(n_per_circle, generator=gen, dtype=torch.float64)
            xs.append(torch.stack([rr * t.cos(), rr * t.sin()], 1))
            ys.append(torch.full((n_per_circle,), label))
    return torch.cat(xs), torch.cat(ys), gen


def _brute_log_prob(x: torch.Tensor, points: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log (1/n) sum_i N(x; x_i, cov) for one class, the slow obvious way."""
    dist = torch.distributions.MultivariateNormal(points, covariance_matrix=cov)
    return torch.logsumexp(dist.log_prob(x[:, None, :]), 1) - math.log(points.shape[0])


def _brute_loo(points: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """sum_i log (1/(n-1)) sum_{j != i} N(x_i; x_j, cov)."""
    dist = torch.distributions.MultivariateNormal(points, covariance_matrix=cov)
    pair = dist.log_prob(points[:, None, :]).fill_diagonal_(-math.inf)  # [i, j]: x_i around x_j
    return (torch.logsumexp(pair, 1) - math.log(points.shape[0] - 1)).sum()


# -- accuracy ------------------------------------------------------------------------------------


def test_cv_kde_matches_true_density_1d():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 1, generator=gen, dtype=torch.float64)
    kde = KDE().fit(x, torch.zeros(2000, dtype=torch.long))
    q = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    true = -0.5 * q.square() - 0.5 * math.log(2 * math.pi)
    err = (kde.log_prob(q) - true).abs().max().item()
    assert err < 0.1, err
    # for Gaussian data the leave-one-out bandwidth lands near Scott's 2000^(-1/5) = 0.22
    assert 0.15 < kde.bandwidth_.item() < 0.35


def test_log_prob_matches_brute_force_for_both_kernels():
    x, y = _blobs()
    q = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    for kernel in ("isotropic", "class"):
        kde = KDE(bandwidth=0.6, kernel_covariance=kernel).fit(x, y)
        out = kde.log_prob(q)
        assert out.shape == (20, 3) and out.dtype == torch.float64
        for c in range(3):
            ref = _brute_log_prob(q, x[y == c], kde.kernel_covariances[c])
            torch.testing.assert_close(out[:, c], ref, rtol=1e-9, atol=1e-9)


def test_matches_scipy_gaussian_kde_and_sklearn_kernel_density():
    import scipy.stats as stats
    import sklearn.neighbors as neighbors
    x, y = _blobs()
    q = torch.randn(30, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    for rule in ("scott", "silverman"):  # H_c = h^2 Sigma_c is scipy's definition
        kde = KDE(bandwidth=rule, kernel_covariance="class", reg_covar=0.0).fit(x, y)
        for c in range(3):
            ref = stats.gaussian_kde(x[y == c].numpy().T, bw_method=rule).logpdf(q.numpy().T)
            torch.testing.assert_close(kde.log_prob(q)[:, c], torch.from_numpy(ref))
    kde = KDE(bandwidth=0.7).fit(x, y)  # isotropic: h in feature units, as sklearn's
    for c in range(3):
        ref = neighbors.KernelDensity(bandwidth=0.7).fit(x[y == c].numpy()).score_samples(q.numpy())
        torch.testing.assert_close(kde.log_prob(q)[:, c], torch.from_numpy(ref))


def test_float32_scoring_agrees_with_float64():
    x, y, gen = _circles()
    kde = KDE().fit(x, y)
    q = torch.cat([x[:300], x[torch.randperm(400, generator=gen)[:300]] * 0.7])
    hi, lo = kde.log_prob(q), kde.log_prob(q.float())
    assert lo.dtype == torch.float32
    assert (lo.double() - hi).abs().max().item() < 1e-3
    half = kde.log_prob(q.bfloat16())  # half precision is scored and returned in float32
    assert half.dtype == torch.float32 and bool(torch.isfinite(half).all())


# -- bandwidths ----------------------------------------------------------------------------------


def test_rule_of_thumb_bandwidths():
    x, y = _blobs()
    n, d = 80.0, 3
    for kernel in ("class", "isotropic"):
        scott = KDE(bandwidth="scott", kernel_covariance=kernel).fit(x, y).bandwidth_
        silver = KDE(bandwidth="silverman", kernel_covariance=kernel).fit(x, y).bandwidth_
        if kernel == "class":  # a unitless factor of Sigma_c
            expected = torch.full((3,), n ** (-1 / (d + 4)), dtype=torch.float64)
        else:  # scaled by the class's average feature standard deviation
            sd = torch.stack([x[y == c].var(0).mean().add(1e-6).sqrt() for c in range(3)])
            expected = n ** (-1 / (d + 4)) * sd
        torch.testing.assert_close(scott, expected)
        ratio = ((d + 2) / 4) ** (-1 / (d + 4))  # Silverman's factor over Scott's
        torch.testing.assert_close(silver, expected * ratio)
    fixed = KDE(bandwidth=0.25).fit(x, y)
    assert fixed.bandwidth_.tolist() == [0.25] * 3
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(fixed.kernel_covariances[1], 0.0625 * eye)


def test_cv_scores_are_leave_one_out_likelihoods_and_pick_the_maximum():
    x, y = _blobs(n=90)
    for shared in (True, False):
        for kernel in ("isotropic", "class"):
            kde = KDE(kernel_covariance=kernel, shared_bandwidth=shared).fit(x, y)
            grid, scores = kde.cv_grid_, kde.cv_scores_
            assert grid.shape == scores.shape == (3, len(kde.bandwidth_grid))
            for c in range(3):
                pts = x[y == c]
                unit = kde.kernel_covariances[c] / kde.bandwidth_[c] ** 2
                for g in (0, 7, 15):
                    ref = _brute_loo(pts, grid[c, g] ** 2 * unit)
                    torch.testing.assert_close(scores[c, g], ref)
            # the chosen bandwidth is the best grid value, refined between its neighbours
            total = scores.sum(0, keepdim=True) if shared else scores
            best = total.argmax(1)
            rows = torch.zeros(3, dtype=torch.long) if shared else torch.arange(3)
            lo = grid[rows, (best - 1).clamp_min(0)]
            hi = grid[rows, (best + 1).clamp_max(grid.shape[1] - 1)]
            assert bool(((kde.bandwidth_ >= lo) & (kde.bandwidth_ <= hi)).all())
            if shared:
                assert bool((kde.bandwidth_ == kde.bandwidth_[0]).all())


def test_custom_grid_and_invalid_bandwidth_arguments():
    x, y = _blobs(n=60)
    kde = KDE(bandwidth_grid=[2.0, 0.5, 1.0], shared_bandwidth=False).fit(x, y)
    assert kde.bandwidth_grid == (0.5, 1.0, 2.0) and kde.cv_scores_.shape == (3, 3)
    for bad in ("auto", 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bandwidth"):
            KDE(bandwidth=bad)
    with pytest.raises(ValueError, match="kernel_covariance"):
        KDE(kernel_covariance="full")
    with pytest.raises(ValueError, match="bandwidth_grid"):
        KDE(bandwidth_grid=[1.0, -2.0])
    with pytest.raises(ValueError, match="reg_covar"):
        KDE(reg_covar=-1.0)
    with pytest.raises(ValueError, match="max_points_per_class"):
        KDE(max_points_per_class=1)


def test_cv_beats_scott_on_concentric_circles():
    """Mixed points between interleaved rings: the KDE's argmax class should be the class
    of the nearest training point. Scott's rule oversmooths the rings; the CV bandwidth
    resolves them (the issue reports about 77% vs 98%)."""
    x, y, gen = _circles(n_per_circle=100, noise=0.1, seed=0)
    i = torch.randint(len(x), (3000,), generator=gen)
    j = torch.randint(len(x), (3000,), generator=gen)
    lam = torch.rand(3000, 1, generator=gen, dtype=torch.float64)
    mixed = lam * x[i] + (1 - lam) * x[j]
    nearest_label = y[torch.cdist(mixed, x).argmin(1)]

    def agreement(kde: KDE) -> float:
        return (kde.fit(x, y).log_prob(mixed).argmax(1) == nearest_label).double().mean().item()

    scott, cv = agreement(KDE(bandwidth="scott")), agreement(KDE())
    assert cv >= 0.95, (scott, cv)
    assert cv > scott + 0.1, (scott, cv)


# -- memory bounds, subsampling, sampling --------------------------------------------------------


def test_chunked_log_prob_and_cv_equal_unchunked(monkeypatch):
    x, y, _ = _circles(n_per_circle=40)
    q = torch.randn(70, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    whole = KDE().fit(x, y)
    ref = whole.log_prob(q)
    monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", 300)  # batch, stored points, leave-one-out rows
    monkeypatch.setattr(chunking, "MIN_ROWS", 4)
    monkeypatch.setattr(chunking, "MAX_ELEMENTS", 100)
    assert kde_module._chunks(2, 80, 70) == (1, 50)
    chunked = KDE().fit(x, y)
    torch.testing.assert_close(chunked.cv_scores_, whole.cv_scores_, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(chunked.bandwidth_, whole.bandwidth_, rtol=1e-12, atol=0)
    torch.testing.assert_close(chunked.log_prob(q), ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(whole.log_prob(q), ref, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(chunked.log_prob(q.float()), ref.float(), rtol=1e-5, atol=1e-4)


def test_max_points_per_class_is_reproducible():
    x, y = _blobs(n=300)
    y = torch.where(torch.arange(300) < 20, torch.tensor(2), torch.where(y == 2, 0, y))
    a = KDE(bandwidth="scott", max_points_per_class=50, seed=7).fit(x, y)
    b = KDE(bandwidth="scott", max_points_per_class=50, seed=7).fit(x, y)
    c = KDE(bandwidth="scott", max_points_per_class=50, seed=8).fit(x, y)
    assert torch.equal(a.points, b.points) and torch.equal(a.log_prob(x), b.log_prob(x))
    assert not torch.equal(a.points, c.points)
    kept = a.point_mask.sum(1)
    assert a.points.shape[1] == 50 and kept.tolist() == [50, 50, 20]  # small class kept whole
    assert a.class_counts.tolist() == torch.bincount(y).tolist()  # prior from all samples
    for k in range(3):  # the stored points are distinct real samples of their class
        stored = a.points[k, : kept[k]]  # rebuilt from the kernel frame: equal up to rounding
        same = (stored[:, None, :] - x[y == k][None]).abs().amax(-1) < 1e-12
        assert same.any(1).all() and same.sum(0).max() == 1


def test_sample_draws_from_the_class_kde():
    x, y = _blobs()
    kde = KDE(bandwidth=0.3).fit(x, y)
    s1 = kde.sample(4000, 2, generator=torch.Generator().manual_seed(0))
    s2 = kde.sample(4000, 2, generator=torch.Generator().manual_seed(0))
    assert s1.shape == (4000, 3) and s1.dtype == torch.float64 and torch.equal(s1, s2)
    torch.testing.assert_close(s1.mean(0), x[y == 2].mean(0), atol=0.15, rtol=0)
    # KDE covariance = sample covariance (1/n) + kernel covariance
    pts = x[y == 2]
    expected = torch.cov(pts.T, correction=0) + kde.kernel_covariances[2]
    torch.testing.assert_close(torch.cov(s1.T), expected, atol=0.2, rtol=0.1)
    assert kde.log_prob(s1[:200]).argmax(1).eq(2).double().mean() > 0.8


# -- contract: checkpoints, errors, edge cases ---------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"kernel_covariance": "class", "max_points_per_class": 30}])
def test_state_dict_round_trip_is_bit_identical(kwargs):
    x, y, _ = _circles(n_per_circle=50)
    kde = KDE(**kwargs).fit(x, y)
    q = torch.randn(64, 2, generator=torch.Generator().manual_seed(4)) * 3
    buf = io.BytesIO()
    torch.save(kde.state_dict(), buf)
    buf.seek(0)
    fresh = KDE(**kwargs)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.fitted and fresh.num_classes == 2 and fresh.dim == 2
    assert torch.equal(fresh.bandwidth_, kde.bandwidth_)
    assert torch.equal(fresh.log_prob(q), kde.log_prob(q))
    assert torch.equal(fresh.log_prob(q.double()), kde.log_prob(q.double()))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(fresh.sample(10, 1, generator=g1), kde.sample(10, 1, generator=g2))
    # the state is self-contained: other settings are replaced by the fitted ones
    other = KDE(bandwidth="scott", kernel_covariance="class" if not kwargs else "isotropic")
    other.load_state_dict(kde.state_dict())
    assert (other.bandwidth, other.kernel_covariance) == (kde.bandwidth, kde.kernel_covariance)
    assert torch.equal(other.log_prob(q), kde.log_prob(q))


def test_errors():
    x, y = _blobs(n=60)
    with pytest.raises(NotFittedError):
        KDE().log_prob(x)
    with pytest.raises(NotFittedError):
        KDE().sample(3, 0)
    y_one = y.clone()
    y_one[0] = 3  # class 3 has a single sample
    with pytest.raises(ValueError, match="at least 2 sample"):
        KDE().fit(x, y_one)
    kde = KDE().fit(x, y)
    with pytest.raises(ValueError, match="3-dimensional"):
        kde.log_prob(x[:, :2])
    x_nan = x.clone()
    x_nan[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        KDE().fit(x_nan, y)
    out = kde.log_prob(x_nan[:8])  # NaN queries score -inf ("cannot say"), never NaN
    assert bool(torch.isneginf(out[5]).all())
    assert bool(torch.isfinite(out[torch.arange(8) != 5]).all())
    flat = x.clone()
    flat[y == 1] = 1.0  # a class with no spread
    with pytest.raises(ValueError, match="no spread"):
        KDE(reg_covar=0.0).fit(flat, y)


def test_far_points_and_degenerate_classes_stay_finite():
    x, y = _blobs()
    far = torch.tensor([[1e3, -1e3, 1e3], [1e5, 0.0, 0.0], [-50.0, 50.0, 0.0]], dtype=torch.float64)
    for kwargs in ({}, {"kernel_covariance": "class"}, {"bandwidth": "scott"}):
        kde = KDE(**kwargs).fit(x, y)
        for q in (far, far.float()):
            out = kde.log_prob(q)
            assert bool(torch.isfinite(out).all()), (kwargs, out)
    # with the shared default bandwidth the class of the nearest points wins far away
    kde = KDE().fit(x, y)
    assert kde.log_prob(torch.tensor([[40.0, 40.0, 40.0]], dtype=torch.float64)).argmax() == 2
    flat = x.clone()
    flat[y == 1, 2] = 0.5  # class 1 is flat in one feature: reg_covar keeps it finite
    for kernel in ("isotropic", "class"):
        out = KDE(kernel_covariance=kernel).fit(flat, y).log_prob(torch.cat([flat, far]))
        assert bool(torch.isfinite(out).all())


def test_empty_batch_and_num_classes():
    x, y = _blobs(n=60)
    kde = KDE(bandwidth="scott", num_classes=3).fit(x, y)
    assert kde.log_prob(x[:0]).shape == (0, 3)
    torch.testing.assert_close(kde.class_prior(), torch.full((3,), 1 / 3, dtype=torch.float64))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_follows_the_module_to_cuda():
    x, y, _ = _circles(n_per_circle=50)
    kde = KDE().fit(x, y)
    q = torch.randn(100, 2, dtype=torch.float64)
    ref = kde.log_prob(q)
    kde = kde.to("cuda")
    torch.testing.assert_close(kde.log_prob(q.cuda()).cpu(), ref)
    assert kde.sample(5, 0, generator=torch.Generator().manual_seed(0)).device.type == "cuda"
    on_gpu = KDE(max_points_per_class=30).fit(x.cuda(), y.cuda())
    assert bool(torch.isfinite(on_gpu.log_prob(q.cuda().float())).all())


# -- the fast paths (issue 11) -------------------------------------------------------------------


def test_isotropic_kernel_stores_one_copy_and_no_matrices():
    x, y = _blobs(n=300, d=2)
    kde = KDE(bandwidth=0.5).fit(x.float(), y)
    k, d = 3, 2
    shapes = {name: tuple(b.shape) for name, b in kde.named_buffers()}
    assert not any(s[-2:] in ((d, d), (d, k * d)) for s in shapes.values()), shapes
    per_point = [n for n, s in shapes.items() if len(s) == 3]
    assert per_point == ["kernel_points"]  # the one stored copy, in the fit's dtype
    assert kde.kernel_points.dtype == torch.float32
    # and it still is the exact KDE: brute force from the points it rebuilds
    q = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for c in range(3):
        ref = _brute_log_prob(q, x[y == c], 0.25 * torch.eye(2, dtype=torch.float64))
        torch.testing.assert_close(kde.log_prob(q)[:, c], ref, rtol=1e-5, atol=1e-5)


def test_subsampled_cv_rescales_by_scotts_exponent():
    gen = torch.Generator().manual_seed(0)
    n, d = 3000, 2
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) + 3.0 * y[:, None]
    full = KDE(cv_points_per_class=None).fit(x, y)
    sub = KDE(cv_points_per_class=300).fit(x, y)
    assert full.cv_scores_.shape == sub.cv_scores_.shape
    # the CV ran on 300 points per class; the chosen h is its optimum (the refined best grid
    # value) times Scott's exponent for the points the KDE keeps, (1500 / 300)^(-1/(d+4))
    best = kde_module._refine(sub.cv_grid_[:1], sub.cv_scores_.sum(0, keepdim=True))
    torch.testing.assert_close(sub.bandwidth_, best.expand(2) * (1500 / 300) ** (-1 / (d + 4)))
    assert sub.cv_grid_[0, 0] > full.cv_grid_[0, 0]  # Scott's reference at 300 points is wider
    assert abs(sub.bandwidth_[0].item() / full.bandwidth_[0].item() - 1) < 0.15
    q = torch.randn(500, d, generator=gen, dtype=torch.float64) * 2 + 1.5
    tv = 0.5 * (sub.log_prob(q).softmax(1) - full.log_prob(q).softmax(1)).abs().sum(1)
    assert tv.mean() < 5e-3
    again = KDE(cv_points_per_class=300).fit(x, y)
    assert torch.equal(again.bandwidth_, sub.bandwidth_)  # the subset is seeded
    assert KDE(cv_points_per_class=5000).fit(x, y).bandwidth_.equal(full.bandwidth_)
    with pytest.raises(ValueError, match="cv_points_per_class"):
        KDE(cv_points_per_class=1)


# -- hostile inputs (issue 13) -------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["isotropic", "class"])
def test_far_float32_queries_never_flip_the_top_class(kernel):
    """|x| ~ 1e8 in float32 used to cancel to noise and flip the top class."""
    x, y = _blobs(n=300)
    kde = KDE(kernel_covariance=kernel).fit(x.float(), y)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    for scale in (1e4, 1e6, 1e8, 1e10):
        q = (direction * scale).float()
        exact = kde.log_prob(q.double())  # the same float32 points, scored in float64
        out = kde.log_prob(q)
        assert out.dtype == torch.float32 and not out.isnan().any()
        said = torch.isfinite(out).any(1)
        # where it answers, the answer is the float64 one; elsewhere the row is "cannot say"
        assert (out[said].argmax(1) == exact[said].argmax(1)).all(), scale
        assert bool(torch.isneginf(out[~said]).all())
        if scale <= 1e4:  # float32 still holds the gaps between classes: every row answers
            assert bool(said.all()), scale
        if scale <= 1e6:
            assert said.double().mean() > 0.75, scale


def test_refit_with_another_class_count():
    x, y = _blobs(n=120)
    kde = KDE()
    assert kde.fit(x, y).log_prob(x[:4]).shape == (4, 3)
    assert kde.fit(x, y % 2).log_prob(x[:4]).shape == (4, 2)
    assert kde.fit(x, y).log_prob(x[:4]).shape == (4, 3)
    cv = KDE().fit(x, y)
    kde = KDE(bandwidth=0.3).fit(x, y)
    kde.bandwidth = "cv"
    torch.testing.assert_close(kde.fit(x, y).log_prob(x), cv.log_prob(x))  # nothing stale
    with pytest.raises(ValueError):
        KDE(num_classes=3).fit(x, y + 1)  # a given class count still binds


@pytest.mark.parametrize("kwargs", [{}, {"kernel_covariance": "class"}, {"bandwidth": "scott"}])
def test_fit_on_tensors_that_require_grad_stores_no_graph(kwargs):
    x, y = _blobs(n=120)
    leaf = x.clone().requires_grad_(True)
    kde = KDE(**kwargs).fit(leaf * 1.0, y)
    assert all(not b.requires_grad for b in kde.buffers())
    torch.testing.assert_close(kde.log_prob(x), KDE(**kwargs).fit(x, y).log_prob(x))


def test_state_of_another_density_fails_at_load_and_changes_nothing():
    x, y = _blobs(n=120)
    gaussian_state = mixkit.Gaussian().fit(x, y).state_dict()
    kde = KDE(bandwidth=0.5).fit(x[:60], y[:60] % 2)
    before = kde.log_prob(x[:5])
    with pytest.raises(ValueError, match="saved by a Gaussian density and cannot be loaded into a KDE"):
        kde.load_state_dict(gaussian_state)
    assert kde.num_classes == 2 and torch.equal(kde.log_prob(x[:5]), before)
    with pytest.raises(ValueError, match="names no density class.*into a KDE"):
        KDE().load_state_dict({"_extra_state": {"num_classes": 2, "dim": 3, "fitted": True}})


def test_data_far_from_the_origin_score_as_near_it():
    """The float64 distance term is taken about the class means' centre: an offset of 1e7 on
    data and queries changes nothing (beyond float64 rounding of the offset itself)."""
    x, y = _blobs(n=150)
    q = torch.randn(20, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    near = KDE(bandwidth=0.05).fit(x, y).log_prob(q)
    far = KDE(bandwidth=0.05).fit(x + 1e7, y).log_prob(q + 1e7)
    torch.testing.assert_close(far, near, rtol=1e-6, atol=1e-3)
