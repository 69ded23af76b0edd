"""The timm entry point against timm itself: targets, inputs, lam distributions and frequencies."""

import inspect

import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import torch
import torch.nn.functional as F
from scipy import stats

import mixkit
from mixkit.mixers.base import MixParams
from mixkit.timm_compat import TIMM_DEFAULTS

K, B = 10, 8


def batch(n=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, K, (n,), generator=g)


def multi_hot(n=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, K, generator=g) < 0.3).float()


def timm_call(monkeypatch, mixer, x, y, *, batch_params=None, elem_params=None, bbox=None):
    """Run timm's Mixup with its random draws replaced by the given ones."""
    if batch_params is not None:
        monkeypatch.setattr(mixer, "_params_per_batch", lambda: batch_params)
    if elem_params is not None:
        monkeypatch.setattr(mixer, "_params_per_elem", lambda n: (elem_params[0][:n].copy(), elem_params[1][:n]))
    if bbox is not None:
        monkeypatch.setattr(timm_mixup, "rand_bbox", lambda *a, **k: bbox)
    return mixer(x.clone(), y)


def test_defaults_and_names_are_timms():
    params = inspect.signature(timm_mixup.Mixup).parameters
    assert {k: p.default for k, p in params.items()} == TIMM_DEFAULTS


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("lam", [0.3, 0.77])
def test_batch_mixup_equals_timm_for_a_fixed_lam(monkeypatch, lam, smoothing, multi_label):
    x, y = batch()
    if multi_label:
        y = multi_hot()
    args = dict(mixup_alpha=1.0, label_smoothing=smoothing, num_classes=K, multi_label=multi_label)
    x_t, target_t = timm_call(monkeypatch, timm_mixup.Mixup(**args), x, y, batch_params=(lam, False))
    x_before = x.clone()
    out = mixkit.from_timm(**args).mix(x, y, lam=lam)
    assert torch.equal(x, x_before)  # timm mixes the caller's batch in place; mixkit does not
    torch.testing.assert_close(out.y, target_t, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.y, timm_mixup.mixup_target(y, K, lam, smoothing, multi_label), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.x, x_t, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["elem", "pair"])
def test_elem_and_pair_modes_equal_timm(monkeypatch, mode):
    x, y = batch()
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.05, 0.95, B).astype(np.float32)
    m = B if mode == "elem" else B // 2
    lam[m - 1] = 1.0  # one element / pair not mixed
    args = dict(mixup_alpha=0.4, label_smoothing=0.1, num_classes=K, mode=mode)
    x_t, target_t = timm_call(monkeypatch, timm_mixup.Mixup(**args), x, y, elem_params=(lam, np.zeros(B, bool)))
    lam_rows = torch.tensor(lam[:m], dtype=torch.float64)
    if mode == "pair":  # row i and its partner B-1-i share pair i's draw
        lam_rows = torch.cat([lam_rows, lam_rows.flip(0)])
    out = mixkit.from_timm(**args).mix(x, y, lam=lam_rows)
    torch.testing.assert_close(out.y, target_t, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.x, x_t, rtol=0, atol=1e-5)


@pytest.mark.parametrize("correct_lam", [True, False])
def test_batch_cutmix_equals_timm_for_the_same_box(monkeypatch, correct_lam):
    x, y = batch()
    collate = mixkit.from_timm(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=K, correct_lam=correct_lam)
    params = collate.mixer.draw(B, x.shape, torch.Generator().manual_seed(3), lam=0.6)
    t, b, l, r = (int(v) for v in params.box[0])
    timm = timm_mixup.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=K, correct_lam=correct_lam)
    x_t, target_t = timm_call(monkeypatch, timm, x, y, batch_params=(0.6, True), bbox=(t, b, l, r))
    out = collate.mix(x, y, params=params)
    torch.testing.assert_close(out.x, x_t, rtol=0, atol=0)
    torch.testing.assert_close(out.y, target_t, rtol=0, atol=1e-6)


def test_cutmix_minmax_box_sides_follow_timm():
    collate = mixkit.from_timm(mixup_alpha=0.0, cutmix_minmax=(0.25, 0.75), num_classes=K)
    g = torch.Generator().manual_seed(0)
    sides = torch.stack([collate.mixer.draw(2, (2, 3, 32, 32), g).box[0] for _ in range(2000)])
    heights = (sides[:, 1] - sides[:, 0]).numpy()
    np.random.seed(0)
    timm_h = np.array([np.subtract(*timm_mixup.rand_bbox_minmax((3, 32, 32), (0.25, 0.75))[1::-1])
                       for _ in range(2000)])
    assert heights.min() == timm_h.min() == 8 and heights.max() == timm_h.max() == 23
    assert stats.ks_2samp(heights, timm_h).pvalue > 1e-3


def binomial_close(k1, n1, k2, n2, sigmas=4.0):
    p = (k1 + k2) / (n1 + n2)
    return abs(k1 / n1 - k2 / n2) <= sigmas * np.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))


ARGS = dict(mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3, num_classes=K)
N = 10_000


def test_batch_mode_frequencies_and_lam_distribution_match_timm():
    mixer = mixkit.from_timm(**ARGS).mixer
    g = torch.Generator().manual_seed(0)
    ours = [mixer.draw(4, (4, 3, 32, 32), g) for _ in range(N)]
    choice = np.array([p.extra["choice"] for p in ours])
    lam = np.array([float(p.lam[0]) for p in ours])
    timm = timm_mixup.Mixup(**ARGS)
    np.random.seed(0)
    t_lam, t_cut, t_applied = [], [], []
    for _ in range(N):
        lam_t, cut = timm._params_per_batch()
        applied = lam_t != 1.0
        if applied and cut:
            lam_t = timm_mixup.cutmix_bbox_and_lam((4, 3, 32, 32), lam_t)[1]
        t_lam.append(lam_t), t_cut.append(cut), t_applied.append(applied)
    t_lam, t_cut, t_applied = np.array(t_lam), np.array(t_cut), np.array(t_applied)
    applied = choice >= 0
    assert binomial_close(applied.sum(), N, t_applied.sum(), N)
    assert binomial_close((choice == 1).sum(), applied.sum(), (t_cut & t_applied).sum(), t_applied.sum())
    assert binomial_close(applied.sum(), N, 0.6 * N, N)
    assert (lam[~applied] == 1).all() and all(int(p.index[0]) == 0 for p, a in zip(ours, applied) if not a)
    for k, t_mask in ((0, t_applied & ~t_cut), (1, t_applied & t_cut)):
        assert stats.ks_2samp(lam[choice == k], t_lam[t_mask]).pvalue > 1e-3


@pytest.mark.parametrize("mode", ["elem", "pair"])
def test_elem_and_pair_frequencies_match_timm(mode):
    mixer = mixkit.from_timm(**ARGS, mode=mode).mixer
    n = N if mode == "elem" else 2 * N
    p = mixer.draw(n, (n, 3, 8, 8), torch.Generator().manual_seed(1))
    choice = p.extra["choice"].numpy()
    if mode == "pair":  # one draw per pair (row i and row n-1-i)
        choice = choice[:N]
        assert (p.extra["choice"].flip(0).numpy()[:N] == choice).all()
    np.random.seed(1)
    t_lam, t_cut = timm_mixup.Mixup(**ARGS, mode=mode)._params_per_elem(N)
    t_applied = t_lam != 1.0
    assert binomial_close((choice >= 0).sum(), N, t_applied.sum(), N)
    assert binomial_close((choice == 1).sum(), (choice >= 0).sum(), (t_cut & t_applied).sum(), t_applied.sum())
    lam = p.lam.numpy()[: N]
    assert stats.ks_2samp(lam[choice == 0], t_lam[t_applied & ~t_cut]).pvalue > 1e-3


@pytest.mark.parametrize("smoothing", [0.05, 0.2])
def test_smoothing_equals_cross_entropy_label_smoothing(smoothing):
    x, y = batch(16)
    logits = torch.randn(16, K, generator=torch.Generator().manual_seed(5))
    smoothed = mixkit.MixCollate("mixup", K, seed=1, label_smoothing=smoothing).mix(x, y, lam=0.35)
    plain = mixkit.MixCollate("mixup", K, seed=1).mix(x, y, lam=0.35)
    torch.testing.assert_close(smoothed.x, plain.x)
    torch.testing.assert_close(F.cross_entropy(logits, smoothed.y),
                               F.cross_entropy(logits, plain.y, label_smoothing=smoothing))
    # unmixed (switched off): the identity with class ids, as CrossEntropyLoss applies it
    off = mixkit.MixCollate("mixup", K, label_smoothing=smoothing)
    off.enabled = False
    torch.testing.assert_close(F.cross_entropy(logits, off.mix(x, y).y),
                               torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, y))


def test_smoothing_applies_to_the_relabeled_targets():
    x, y = batch(32)
    flat = x.flatten(1)
    relabel = mixkit.LogisticLabel(sigma=0.5)
    ref = mixkit.MixCollate("mixup", K, relabel=relabel, seed=2).mix(flat, y)
    out = mixkit.MixCollate("mixup", K, relabel=relabel, seed=2, label_smoothing=0.1).mix(flat, y)
    torch.testing.assert_close(out.y, ref.y * 0.9 + 0.1 / K)
    torch.testing.assert_close(out.y_mix, ref.y_mix)


def test_train_py_mixup_args_work_and_refusals_are_clear():
    mixup_args = dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                      mode="batch", label_smoothing=0.1, num_classes=K)
    for make in (mixkit.from_timm, mixkit.MixCollate.from_timm):
        collate = make(**mixup_args)
        x, y = batch(7)  # odd: timm asserts an even batch
        xm, ym = collate(x, y)
        assert xm.shape == x.shape and ym.shape == (7, K)
        torch.testing.assert_close(ym.sum(1), torch.ones(7))
        collate.mixup_enabled = False  # timm's train loop switch
        torch.testing.assert_close(collate(x, y)[0], x)
    with pytest.raises(ValueError, match="half"):
        mixkit.from_timm(mode="half")
    with pytest.raises(ValueError, match="nothing to mix"):
        mixkit.from_timm(mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(TypeError, match="unknown arguments.*mixup_prob"):
        mixkit.from_timm(mixup_prob=0.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        mixkit.from_timm(mode="element")
    with pytest.raises(ValueError, match="minmax"):
        mixkit.from_timm(cutmix_minmax=(0.8, 0.2))


def test_explicit_params_through_the_mixer_reproduce_mixup_target():
    x, y = batch()
    mixer = mixkit.from_timm(mixup_alpha=1.0, num_classes=K).mixer
    flip = torch.arange(B - 1, -1, -1)
    p = MixParams(torch.full((B,), 0.42, dtype=torch.float64), flip, extra={"choice": 0})
    torch.testing.assert_close(mixer(x, y, params=p).y, timm_mixup.mixup_target(y, K, 0.42, 0.0),
                               rtol=0, atol=1e-6)
