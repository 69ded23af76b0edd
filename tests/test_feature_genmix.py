"""GenMix in feature space (appendix F.4): mixkit.nn.FeatureGenMix."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mixkit import Gaussian, GenMix, MixParams, OnlineGaussian
from mixkit.genmix_solver import intrudes
from mixkit.nn import FeatureGenMix

torch.set_num_threads(1)

K, D_IN, D_FEAT = 3, 6, 4


def data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(K).repeat(n // K)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x = torch.randn(n, D_IN, generator=g)
    x[:, :2] += centres[y]
    return x, y


def body(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D_IN, D_FEAT), nn.Tanh())


def pair_ratio(density, z, c_a, c_b):
    lp = density.log_prob(z.double())
    return torch.sigmoid(lp.gather(1, c_a[:, None]) - lp.gather(1, c_b[:, None])).squeeze(1)


def drawn_lam(seed, n):
    return GenMix(Gaussian()).draw(n, (n,), torch.Generator().manual_seed(seed)).lam


def check_on_segment_and_ratio(fgm, out, lam, min_solved):
    """Every row kept (intrusion='relabel'): on its segment, at the drawn ratio when solved."""
    batch, dens = out.batch, fgm.density
    assert batch.x.shape[0] == out.features.shape[0]
    diff = batch.labels != batch.partner_labels
    info = batch.info["genmix"]
    assert int(info["solved"]) >= min_solved * int(diff.sum())
    # the mixed features lie on the segment between the row's features and its partner's
    zi, zj = out.features.detach(), out.features.detach()[batch.index]
    seg, span = batch.x.detach() - zj, zi - zj
    t = (seg * span).sum(1) / span.square().sum(1).clamp_min(1e-30)
    assert torch.allclose(seg, t[:, None] * span, atol=1e-4)
    assert bool(((t > -1e-4) & (t < 1 + 1e-4))[diff].all())
    # solved pairs reach the drawn ratio; the label (and lam) is the ratio reached
    r = pair_ratio(dens, batch.x.detach(), batch.labels, batch.partner_labels)
    assert int((diff & ((r - lam).abs() < 1e-4)).sum()) >= int(info["solved"])
    two = diff & ~intruding(dens, batch)
    yi = batch.y.gather(1, batch.labels[:, None]).squeeze(1).double()
    assert torch.allclose(yi[two], r[two], atol=1e-4)
    assert torch.allclose(batch.lam.double()[diff], r[diff], atol=1e-4)
    check_distributions(out)


def intruding(dens, batch):
    return intrudes(dens.log_prob(batch.x.detach().double()), batch.labels, batch.partner_labels)


def check_distributions(out):
    for t in (out.targets, out.batch.y):
        assert bool((t >= 0).all()) and torch.allclose(t.sum(1), torch.ones(t.shape[0]), atol=1e-6)
    assert bool(torch.isfinite(out.logits).all())


def frozen(seed=3, **kw):
    x, y = data()
    fgm = FeatureGenMix(nn.Linear(D_FEAT, K), body(), num_classes=K, seed=seed, **kw).fit(x, y)
    return fgm, x, y


def test_frozen_features_reach_the_ratio():
    fgm, x, y = frozen(intrusion="relabel")
    assert isinstance(fgm.density, Gaussian) and fgm.mixer.method == "auto"
    fgm.train()
    assert not fgm.features.training and fgm.head.training  # the extractor stays frozen
    n = 96
    out = fgm.mix(x[:n], y[:n], generator=torch.Generator().manual_seed(3))
    check_on_segment_and_ratio(fgm, out, drawn_lam(3, n), 0.8)
    assert out.logits.shape == (2 * n, K)
    out.loss().backward()
    assert fgm.head.weight.grad is not None and fgm.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in fgm.features.parameters())


def test_frozen_discard_drops_intruding_rows():
    fgm, x, y = frozen(intrusion="discard", lam=0.5)
    out = fgm.mix(x, y, generator=torch.Generator().manual_seed(4))
    info = out.batch.info["genmix"]
    m = out.batch.x.shape[0]
    assert m == x.shape[0] - int(info["discarded"]) and out.logits.shape == (x.shape[0] + m, K)
    assert not bool(intruding(fgm.density, out.batch).any())
    diff = out.batch.labels != out.batch.partner_labels
    r = pair_ratio(fgm.density, out.batch.x, out.batch.labels, out.batch.partner_labels)
    reached = diff & ((r - 0.5).abs() < 1e-4)  # float32 features
    assert int(reached.sum()) >= int(diff.sum()) - int(info["clamped"])
    check_distributions(out)


def test_features_none_is_genmix_on_the_features():
    fgm, x, y = frozen(intrusion="relabel")
    z = fgm.extract(x)
    plain = FeatureGenMix(fgm.head, None, fgm.density, num_classes=K, intrusion="relabel")
    ref = GenMix(fgm.density, intrusion="relabel")(z, y, generator=torch.Generator().manual_seed(5))
    out = plain.mix(z, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.batch.x, ref.x) and torch.equal(out.batch.y, ref.y)
    assert torch.equal(out.targets[: z.shape[0]], nn.functional.one_hot(y, K).float())


def test_online_gaussian_of_the_features():
    x, y = data()
    fgm = FeatureGenMix(nn.Linear(D_FEAT, K), body(), online=True, num_classes=K, seed=0,
                        intrusion="relabel", tol=1e-7, memory=None)
    assert isinstance(fgm.density, OnlineGaussian) and fgm.online
    fgm.train()
    assert fgm.features.training
    for xb, yb in zip(x.split(60), y.split(60), strict=True):  # a few steps: the density follows
        out = fgm.mix(xb, yb)
    assert int(fgm.density.steps) == 4 and int(fgm.density.class_counts.sum()) == 240
    # exact running sums: the density is the Gaussian of every feature seen so far
    # (features changed only through the graph, not the weights: no optimizer step ran)
    z_all = fgm.extract(x).detach()
    means, _ = fgm.density.gaussian_parameters()
    ref = torch.stack([z_all[y == c].double().mean(0) for c in range(K)])
    assert torch.allclose(means, ref, atol=1e-5)
    n = 60
    out = fgm.mix(x[:n], y[:n], generator=torch.Generator().manual_seed(9))
    check_on_segment_and_ratio(fgm, out, drawn_lam(9, n), 0.6)
    out.loss().backward()  # the mixed features carry gradients into the extractor
    assert fgm.features[0].weight.grad is not None and fgm.features[0].weight.grad.abs().sum() > 0


def test_every_row_discarded_still_trains():
    # class 2 sits between classes 0 and 1 in feature space: {0, 1} midpoints intrude on it
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 0.0]])
    y = torch.arange(3).repeat_interleave(30)
    z = centres[y] + 0.3 * torch.randn(90, 2, generator=g)
    head = nn.Linear(2, 3)
    fgm = FeatureGenMix(head, None, num_classes=3, include_clean=False).fit(z, y)
    index = torch.cat([torch.arange(30) + 30, torch.arange(30)])  # every row with the other class
    params = MixParams(torch.full((60,), 0.5, dtype=torch.float64), index)
    out = fgm.mix(z[:60], y[:60], params=params)
    assert out.batch.x.shape == (0, 2) and out.logits.shape == out.targets.shape == (0, 3)
    assert int(out.batch.info["genmix"]["discarded"]) == 60
    loss = out.loss()
    assert float(loss.detach()) == 0.0
    loss.backward()  # a step without mixed rows is a no-op, not a NaN
    assert float(head.weight.grad.abs().sum()) == 0.0


def test_state_dict_round_trip_gives_identical_mixes():
    fgm, x, y = frozen(intrusion="relabel")
    buf = io.BytesIO()
    torch.save(fgm.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = FeatureGenMix(nn.Linear(D_FEAT, K), body(seed=7), num_classes=K, intrusion="relabel")
    fresh.load_state_dict(state)
    assert fresh.density.fitted
    a = fgm.mix(x[:50], y[:50], generator=torch.Generator().manual_seed(1))
    b = fresh.mix(x[:50], y[:50], generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.batch.x, b.batch.x) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.logits, b.logits)


def test_fit_from_a_loader_of_dicts():
    fgm, x, y = frozen()
    samples = [{"pixel_values": xi, "label": yi} for xi, yi in zip(x, y, strict=True)]
    other = FeatureGenMix(fgm.head, fgm.features, num_classes=K)
    other.fit(DataLoader(samples, batch_size=64))
    assert torch.allclose(other.density.means, fgm.density.means, atol=1e-6)
    assert torch.allclose(other.density.covariances, fgm.density.covariances, atol=1e-6)
    # (N, 1) and uint8 ids give the same density
    col = FeatureGenMix(fgm.head, fgm.features, num_classes=K).fit(x, y[:, None].to(torch.uint8))
    assert torch.allclose(col.density.means, fgm.density.means)


def test_bad_arguments():
    with pytest.raises(ValueError, match="no update"):
        FeatureGenMix(nn.Linear(2, 2), None, "gaussian", online=True)
    with pytest.raises(TypeError, match="head"):
        FeatureGenMix(lambda z: z)
    with pytest.raises(ValueError, match="closed_form"):
        FeatureGenMix(nn.Linear(2, 2), None, online=True, num_classes=2, method="closed_form")
    fgm, x, y = frozen()
    with pytest.raises(ValueError, match="non-integer"):
        fgm.fit(x, y.double() + 0.5)


@pytest.mark.cuda
def test_online_on_cuda():
    x, y = data()
    fgm = FeatureGenMix(nn.Linear(D_FEAT, K), body(), online=True, num_classes=K, seed=0,
                        intrusion="relabel", memory=None).cuda()
    fgm.train()
    for xb, yb in zip(x.cuda().split(60), y.cuda().split(60), strict=True):
        out = fgm.mix(xb, yb)
    assert out.logits.is_cuda and fgm.density.class_counts.is_cuda
    check_distributions(out)
    out.loss().backward()
    assert fgm.features[0].weight.grad.abs().sum() > 0
