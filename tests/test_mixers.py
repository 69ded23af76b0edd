"""Mixup and CutMix: invariants, shapes, dtypes, seeding, bad input."""

import pytest
import torch

import mixkit
from mixkit.random import _sample_beta_gamma, sample_beta


def batch(n=7, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_mixup_is_the_convex_combination(per_sample, n):
    x, y = batch(n)
    out = mixkit.Mixup(alpha=0.4, num_classes=3, per_sample=per_sample, seed=1)(x, y)
    lam = out.lam[:, None].to(x.dtype)
    expected = lam * x + (1 - lam) * x[out.index]
    torch.testing.assert_close(out.x, expected, rtol=0, atol=1e-6)
    y1 = torch.nn.functional.one_hot(y, 3).float()
    torch.testing.assert_close(out.y, lam * y1 + (1 - lam) * y1[out.index], rtol=0, atol=1e-6)
    assert out.y.dtype == torch.float32
    torch.testing.assert_close(out.y.sum(1), torch.ones(n))
    assert sorted(out.index.tolist()) == list(range(n))  # a permutation
    assert torch.equal(out.labels, y)
    if not per_sample:
        assert torch.all(out.lam == out.lam[0])


def test_mixup_size_one_batch_is_unchanged():
    x, y = batch(1)
    out = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    torch.testing.assert_close(out.x, x)
    assert out.index.tolist() == [0]


def test_mixup_images_integer_input_and_no_mutation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    x_before = x.clone()
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    out = mixkit.Mixup(num_classes=10, seed=3)(x, y)
    assert torch.equal(x, x_before)
    assert out.x.dtype == torch.float32 and out.x.shape == x.shape
    lam = float(out.lam[0])
    torch.testing.assert_close(out.x, lam * x.float() + (1 - lam) * x.float()[out.index], rtol=0, atol=1e-4)


def test_mixup_accepts_soft_labels_and_keeps_float64_if_asked():
    x, y = batch(5)
    soft = torch.softmax(torch.randn(5, 3, dtype=torch.float64), 1)
    out = mixkit.Mixup(seed=0, label_dtype=torch.float64)(x, soft)
    assert out.y.dtype == torch.float64
    lam = out.lam[:, None].double()
    torch.testing.assert_close(out.y, lam * soft + (1 - lam) * soft[out.index])
    assert torch.equal(out.labels, soft.argmax(1))


def test_seeded_mixers_repeat_and_generators_differ():
    x, y = batch(16)
    a = mixkit.Mixup(num_classes=3, seed=5)(x, y)
    b = mixkit.Mixup(num_classes=3, seed=5)(x, y)
    c = mixkit.Mixup(num_classes=3, seed=6)(x, y)
    assert torch.equal(a.x, b.x) and torch.equal(a.index, b.index)
    assert not torch.equal(a.index, c.index)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    m = mixkit.Mixup(num_classes=3)
    assert torch.equal(m(x, y, generator=g1).x, m(x, y, generator=g2).x)


@pytest.mark.parametrize("sampler", [sample_beta, _sample_beta_gamma])
def test_beta_sampler_matches_moments(sampler):
    g = torch.Generator().manual_seed(0)
    for a in (0.2, 1.0, 2.0):
        s = sampler(a, a, 200_000, g)
        assert 0 <= float(s.min()) and float(s.max()) <= 1
        assert abs(float(s.mean()) - 0.5) < 0.01
        var = 1 / (4 * (2 * a + 1))
        assert abs(float(s.var()) - var) < 0.01 * var / 0.05 + 2e-3


def test_cutmix_pastes_a_box_and_corrects_lam():
    x = torch.arange(4, dtype=torch.float32)[:, None, None, None].expand(4, 2, 10, 12).clone()
    y = torch.arange(4)
    for per_sample in (False, True):
        out = mixkit.CutMix(alpha=1.0, num_classes=4, per_sample=per_sample, seed=2)(x, y)
        own = (out.x == x).all(1).float().mean((1, 2))  # share of pixels still the sample's own
        partner_is_self = out.index == torch.arange(4)
        torch.testing.assert_close(
            torch.where(partner_is_self, torch.ones(4), own), torch.where(partner_is_self, torch.ones(4), out.lam)
        )
        torch.testing.assert_close(out.y.sum(1), torch.ones(4))
        torch.testing.assert_close(out.y[torch.arange(4), y], torch.where(partner_is_self, torch.ones(4), out.lam))


def test_cutmix_rejects_tabular_input():
    x, y = batch(4)
    with pytest.raises(ValueError, match="spatial inputs"):
        mixkit.CutMix(num_classes=3)(x, y)


@pytest.mark.parametrize(
    "x,y,kw,match",
    [
        (torch.randn(4, 2), torch.tensor([0, 1, 2]), {"num_classes": 3}, "4 samples but y has 3"),
        (torch.randn(3, 2), torch.tensor([0, 1, 3]), {"num_classes": 3}, r"lie in \[0, 3\)"),
        (torch.randn(3, 2), torch.tensor([0, -1, 2]), {"num_classes": 3}, r"lie in \[0, 3\)"),
        (torch.tensor([[0.0, float("nan")], [1, 1]]), torch.tensor([0, 1]), {"num_classes": 2, "validate": True},
         "NaN/Inf"),
        (torch.randn(3, 2), torch.tensor([0, 1, 2]), {}, "num_classes is needed"),
        (torch.randn(3, 2), torch.full((3, 2), 0.7), {}, "rows summing to 1"),
        (torch.randn(3, 2), torch.rand(3, 2, 2), {}, "class ids"),
        (torch.randn(0, 2), torch.zeros(0, dtype=torch.long), {"num_classes": 2}, "non-empty"),
    ],
)
def test_bad_input_raises_clear_errors(x, y, kw, match):
    with pytest.raises(ValueError, match=match):
        mixkit.Mixup(**kw)(x, y)


def test_default_validation_skips_input_values_but_never_lets_nan_into_labels():
    # the default checks the labels (cheap) but not every input value (a quarter of the call):
    # a NaN input mixes into NaN inputs, and the labels stay exact mixing labels
    x = torch.tensor([[0.0, float("nan")], [1.0, 1.0], [2.0, 2.0]])
    y = torch.tensor([0, 1, 2])
    out = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    assert torch.isfinite(out.y).all()
    torch.testing.assert_close(out.y.sum(1), torch.ones(3))
    assert torch.isnan(out.x).any()
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):  # labels are still checked by default
        mixkit.Mixup(num_classes=3)(x, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        mixkit.Mixup(num_classes=3, validate=True)(x, y)
    mixkit.Mixup(num_classes=3, validate=False)(x, torch.tensor([0, 1, 2]))


def test_mixers_pickle_with_generator_state():
    import pickle

    m = mixkit.Mixup(num_classes=3, seed=0)
    x, y = batch(8)
    m(x, y)
    clone = pickle.loads(pickle.dumps(m))
    assert torch.equal(clone(x, y).x, m(x, y).x)  # the stream continues identically


# -- layouts and tensor types are kept ------------------------------------------------------


def mixers_for_images():
    return [
        mixkit.Mixup(num_classes=3, seed=0),
        mixkit.Mixup(num_classes=3, per_sample=True, seed=0),
        mixkit.CutMix(num_classes=3, seed=0),
        mixkit.CutMix(num_classes=3, per_sample=True, seed=0),
        mixkit.MixChoice(["mixup", "cutmix"], mode="elem", num_classes=3, seed=0),
    ]


@pytest.mark.parametrize("mixer", mixers_for_images(), ids=repr)
def test_tv_tensor_images_and_channels_last_are_kept(mixer):
    from torchvision import tv_tensors
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ref = mixer(x, y, generator=torch.Generator().manual_seed(1))
    image = mixer(tv_tensors.Image(x), y, generator=torch.Generator().manual_seed(1))
    assert type(image.x) is tv_tensors.Image and torch.equal(image.x.as_subclass(torch.Tensor), ref.x)
    cl = mixer(x.to(memory_format=torch.channels_last), y, generator=torch.Generator().manual_seed(1))
    assert cl.x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl.x, ref.x, rtol=0, atol=1e-6)
    assert type(ref.x) is torch.Tensor and ref.x.is_contiguous()


def test_mixed_batch_is_sized_and_indexed_like_its_tuple():
    x, y = batch(5)
    out = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    assert len(out) == 2 and out[0] is out.x and out[1] is out.y and out[-1] is out.y
    assert list(out[:]) == [out.x, out.y]
    xm, ym = out
    assert xm is out.x
    assert out.y.data_ptr() != out.y_mix.data_ptr()
    same = mixkit.MixedBatch(out.x, out.y, out.lam, out.index, out.labels, out.y)  # aliasing is undone
    same.y.mul_(0)
    assert torch.equal(same.y_mix, out.y_mix) and float(same.y_mix.sum()) > 0


# -- the Beta sampler (issue 13, finding 9) -------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 0.01, 0.1, 0.4, 1.0, 3.0])
def test_beta_sampler_matches_scipy_cdf(alpha):
    import scipy.stats as scipy_stats
    n = 40_000
    s = sample_beta(alpha, alpha, n, torch.Generator().manual_seed(0)).numpy()
    assert (s >= 0).all() and (s <= 1).all()
    assert float((s == 0.5).mean()) < 1e-3  # no atom at 0.5 (24% of draws at alpha=1e-3 before)
    for t in (1e-6, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        p = scipy_stats.beta(alpha, alpha).cdf(t)
        se = (p * (1 - p) / n) ** 0.5
        assert abs(float((s <= t).mean()) - p) <= 5 * se + 1e-4, (alpha, t)


def test_beta_sampler_asymmetric_and_cached_concentration_repeat():
    import scipy.stats as scipy_stats
    s = sample_beta(0.05, 2.0, 40_000, torch.Generator().manual_seed(1)).numpy()
    assert scipy_stats.kstest(s[(s > 0)], scipy_stats.beta(0.05, 2.0).cdf).statistic < 0.02
    a = sample_beta(0.4, 0.4, 16, torch.Generator().manual_seed(2))
    b = sample_beta(0.4, 0.4, 16, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


# -- hostile inputs (issue 13, findings 2, 8, 14) -------------------------------------------


def test_column_of_integer_ids_gives_the_right_labels():
    x, y = batch(6)
    out = mixkit.Mixup(num_classes=3, seed=0)(x, y[:, None])
    assert torch.equal(out.labels, y)
    ref = mixkit.Mixup(num_classes=3, seed=0)(x, y)
    assert torch.equal(out.y, ref.y)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -1.0, 0.0])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        mixkit.Mixup(alpha)
    with pytest.raises(ValueError, match="alpha"):
        mixkit.CutMix(alpha)


def test_bad_hyperparameters_and_inputs_are_refused():
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        mixkit.Mixup(num_classes=2.5)
    x, y = batch(4)
    with pytest.raises(TypeError, match="complex"):
        mixkit.Mixup(num_classes=3)(x.to(torch.complex64), y)
    with pytest.raises(ValueError, match="0-d"):
        mixkit.Mixup(num_classes=3)(x, torch.tensor(1))
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        mixkit.Mixup(num_classes=3)(x, y, lam=float("nan"))


def test_soft_labels_slightly_off_are_renormalised():
    x, _ = batch(4)
    soft = torch.tensor([[0.5, 0.5009, 0.0]] * 4)
    for validate in (None, False):
        out = mixkit.Mixup(seed=0, validate=validate)(x, soft, lam=1.0)
        torch.testing.assert_close(out.y.sum(1), torch.ones(4), rtol=0, atol=1e-7)


def test_label_dtype_by_name():
    x, y = batch(4)
    out = mixkit.Mixup(num_classes=3, label_dtype="float64")(x, y)
    assert out.y.dtype == torch.float64
    with pytest.raises(ValueError, match="floating torch dtype"):
        mixkit.Mixup(num_classes=3, label_dtype="int64")
