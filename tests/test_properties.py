"""Property-based tests over the public API (hypothesis).

Profiles (tests/conftest.py): ``ci`` (default, bounded so the module runs in well under
three minutes on a 2-core machine) and ``long`` for a soak run:

    python -m pytest tests/test_properties.py --hypothesis-profile=long
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import mixkit

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@st.composite
def labelled_batch(draw, min_b: int = 1, max_b: int = 33, spatial: bool = False):
    """A batch ``(x, y, k)``: any batch size, shape and dtype, labels as ids, (B, 1) ids or soft."""
    b = draw(st.integers(min_b, max_b))
    k = draw(st.integers(1, 6))
    shape = (b, draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(2, 9))) if spatial else \
        (b, *draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    dtype = draw(st.sampled_from((*FLOATS, torch.uint8)))
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) if dtype == torch.uint8 else \
        (torch.randn(shape, generator=g) * draw(st.sampled_from((1e-3, 1.0, 1e3)))).to(dtype)
    ids = torch.randint(0, k, (b,), generator=g)
    form = draw(st.sampled_from(("ids", "column", "soft", "int8")))
    if form == "column":
        y = ids[:, None]
    elif form == "soft":
        y = torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), 1)
    elif form == "int8":
        y = ids.to(torch.int8)
    else:
        y = ids
    return x, y, k, seed


@given(labelled_batch(), st.sampled_from(("mixup", "mixup-per-sample")), st.floats(0.05, 5.0))
def test_mixup_outputs_are_convex_mixes(batch, kind, alpha):
    x, y, k, seed = batch
    x_before, y_before = x.clone(), y.clone()
    mixer = mixkit.Mixup(alpha=alpha, num_classes=k, per_sample=kind.endswith("sample"), seed=seed)
    out = mixer(x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)  # never mutates the input
    assert out.x.shape == x.shape and out.y.shape == (x.shape[0], k)
    assert torch.isfinite(out.y).all() and (out.y >= 0).all()
    torch.testing.assert_close(out.y.sum(1).double(), torch.ones(x.shape[0], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert ((out.lam >= 0) & (out.lam <= 1)).all()
    assert sorted(out.index.tolist()) == list(range(x.shape[0]))
    lam = out.lam.double().reshape((-1,) + (1,) * (x.ndim - 1))
    xf = x.double()
    expected = lam * xf + (1 - lam) * xf[out.index]
    tol = 1e-2 if x.dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(out.x.double(), expected, atol=tol * (1 + xf.abs().max().item()), rtol=tol)
    assert len(out) == 2 and out[0] is out.x and out[1] is out.y


@given(labelled_batch(min_b=1, spatial=True), st.booleans())
def test_cutmix_lam_is_the_area_kept(batch, per_sample):
    x, y, k, seed = batch
    out = mixkit.CutMix(alpha=1.0, num_classes=k, per_sample=per_sample, seed=seed)(x, y)
    assert out.x.shape == x.shape
    kept = (out.x == x.to(out.x.dtype)).reshape(x.shape[0], -1, *x.shape[-2:]).all(1).double().mean((1, 2))
    self_pair = out.index == torch.arange(x.shape[0])
    # a pasted pixel can equal the own pixel by chance only for uint8/low-precision data
    same_values = (x.to(out.x.dtype) == x.to(out.x.dtype)[out.index]).reshape(x.shape[0], -1, *x.shape[-2:])
    exact = ~same_values.any(1).any(1).any(1)
    sel = ~self_pair & exact
    torch.testing.assert_close(kept[sel], out.lam.double()[sel], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.y.sum(1).double(), torch.ones(x.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)


@given(st.integers(0, 2**31 - 1), st.floats(1e-4, 20.0))
def test_beta_draws_lie_in_the_unit_interval_without_atoms(seed, alpha):
    from mixkit.random import sample_beta

    draws = sample_beta(alpha, alpha, 512, torch.Generator().manual_seed(seed))
    assert ((draws >= 0) & (draws <= 1)).all()
    # the distribution is continuous: no value repeats more than chance allows (the old 0.5 atom)
    assert (draws == 0.5).double().mean() < 0.02


@st.composite
def fitted_density(draw):
    k = draw(st.integers(2, 5))
    d = draw(st.integers(1, 6))
    per_class = draw(st.integers(3, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(("gaussian-full", "gaussian-diag", "gaussian-spherical", "gaussian-tied", "kde")))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(per_class)
    x = torch.randn(k * per_class, d, generator=g, dtype=torch.float64) + 4 * torch.randn(k, d, generator=g,
                                                                                             dtype=torch.float64)[y]
    if kind == "kde":
        density = mixkit.create_density("kde", bandwidth=draw(st.sampled_from(("scott", "silverman", "cv"))))
    else:
        density = mixkit.create_density("gaussian", covariance=kind.split("-")[1], reg_covar=1e-4)
    density.fit(x, y)
    return density, x, y, k, d, g


@given(fitted_density(), st.sampled_from(FLOATS), st.sampled_from((0.0, 1.0, 1e4, 1e8)))
def test_log_probs_never_nan_in_any_dtype_and_far_away(fd, dtype, offset):
    density, x, _, k, d, g = fd
    q = (torch.randn(17, d, generator=g, dtype=torch.float64) + offset).to(dtype)
    lp = density.log_prob(q)
    assert lp.shape == (17, k)
    assert not torch.isnan(lp).any()
    assert lp.dtype == torch.promote_types(dtype, torch.float32)
    assert (lp < math.inf).all()  # a density is never infinite: -inf (cannot say) is allowed


@given(fitted_density())
def test_state_dict_round_trip_gives_identical_log_probs(fd):
    import io

    density, x, _, _, _, _ = fd
    buf = io.BytesIO()
    torch.save(density.state_dict(), buf)
    buf.seek(0)
    fresh = type(density)(**{k: getattr(density, k) for k in ("covariance",) if hasattr(density, k)}) \
        if type(density).__name__ == "Gaussian" else type(density)(bandwidth=density.bandwidth)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(fresh.log_prob(x[:9]), density.log_prob(x[:9]), rtol=0, atol=0)


@given(fitted_density(), st.integers(2, 4))
def test_refit_with_another_class_count(fd, k2):
    density, x, _, _, d, g = fd
    assume(x.shape[0] // k2 >= 2)  # every density needs two points per class
    y2 = torch.arange(x.shape[0]) % k2
    density.fit(x, y2)
    assert density.log_prob(x[:5]).shape == (5, k2)


@given(
    fitted_density(),
    st.floats(0.0, 1.0),
    st.sampled_from((1e-300, 1e-3, 1.0, 50.0)),
    st.sampled_from((None, 1, 2, 3)),
    st.sampled_from(("uniform", "empirical")),
)
def test_genlabel_rows_are_distributions_and_fallbacks_are_counted(fd, gamma, temperature, top_k, prior):
    density, x, y, k, d, g = fd
    gl = mixkit.GenLabel(density, gamma=gamma, temperature=temperature, top_k=top_k, prior=prior)
    xs = torch.cat([x[:20], torch.full((3, d), 1e30, dtype=x.dtype)])  # far rows may fall back
    ys = torch.cat([y[:20], y[:3]])
    batch = mixkit.Mixup(num_classes=k, seed=0)(xs, ys)
    out = gl(batch)
    assert torch.isfinite(out.y).all() and (out.y >= 0).all()
    torch.testing.assert_close(out.y.sum(1).double(), torch.ones(out.y.shape[0], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    if top_k is not None and gamma == 1.0:
        assert ((out.y > 0).sum(1) <= max(top_k, 2)).all()  # top_k classes, plus fallback rows' two
    stats = gl.stats()
    assert 0 <= stats["fallback"] <= out.y.shape[0]


@given(st.integers(0, 1000), st.integers(1, 40), st.integers(2, 5))
def test_mixcollate_repeats_with_its_seed(seed, n, k):
    g = torch.Generator().manual_seed(seed)
    samples = [(torch.randn(3, generator=g), int(torch.randint(0, k, (), generator=g))) for _ in range(n)]
    a = mixkit.MixCollate("mixup", num_classes=k, seed=seed)(samples)
    b = mixkit.MixCollate("mixup", num_classes=k, seed=seed)(samples)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0])
def test_bad_alpha_is_refused(bad):
    with pytest.raises(ValueError, match="alpha"):
        mixkit.Mixup(alpha=bad)
