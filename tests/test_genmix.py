"""GenMix: the mixer (closed form and bisection) and the dataset-level augmentation."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from mixkit import KDE, Gaussian, MixCollate, MixParams, NotFittedError
from mixkit.densities.base import Density
from mixkit.genmix_dataset import class_pairs, genmix_dataset
from mixkit.genmix_solver import intrudes, solve_quadratic_on_unit, solve_segment
from mixkit.mixers.genmix import GenMix

torch.set_num_threads(1)


def blobs(means, n=60, std=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.as_tensor(means, dtype=dtype)
    k, d = means.shape
    x = means.repeat_interleave(n, 0) + std * torch.randn(k * n, d, generator=g, dtype=dtype)
    return x, torch.arange(k).repeat_interleave(n)


FOUR = [[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 4.0, -1.0], [3.0, 3.0, 3.0]]
TETRA = [[3.0, 3.0, 3.0], [3.0, -3.0, -3.0], [-3.0, 3.0, -3.0], [-3.0, -3.0, 3.0]]
# class 2 sits between classes 0 and 1: the {0, 1} midpoints intrude on it
COLLINEAR = [[-4.0, 0.0], [4.0, 0.0], [0.0, 0.0]]


def pair_ratio(density, x, c_a, c_b):
    lp = density.log_prob(x.reshape(x.shape[0], -1))
    la = lp.gather(1, c_a[:, None]).squeeze(1)
    lb = lp.gather(1, c_b[:, None]).squeeze(1)
    return torch.sigmoid(la - lb)


def drawn(mixer, n):
    """The lam and partners a freshly seeded mixer draws on its first call."""
    p = mixer.draw(n, (n,), torch.Generator().manual_seed(mixer.seed))
    return p.lam, p.index


class StudentT(Density):
    """A non-Gaussian density: independent Student-t per class (heavy tails)."""

    def __init__(self, df: float = 3.0) -> None:
        super().__init__()
        self.df = df

    def _fit(self, x, y):
        k = self.num_classes
        onehot = torch.nn.functional.one_hot(y, k).to(x.dtype)
        counts = onehot.sum(0)[:, None]
        means = onehot.T @ x / counts
        var = onehot.T @ x.square() / counts - means.square()
        self.register_buffer("loc", means)
        self.register_buffer("scale", var.sqrt())

    def _log_prob(self, x):
        dist = torch.distributions.StudentT(self.df, self.loc.to(x.dtype), self.scale.to(x.dtype))
        return dist.log_prob(x[:, None, :]).sum(-1)


# -- the mixer -------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical", "tied"])
def test_closed_form_reaches_the_ratio(covariance):
    x, y = blobs(FOUR)
    dens = Gaussian(covariance=covariance).fit(x, y)
    mixer = GenMix(dens, seed=3, intrusion="relabel")
    batch = mixer(x, y)
    lam, perm = drawn(mixer, x.shape[0])
    assert torch.equal(batch.index, perm)
    diff = batch.labels != batch.partner_labels
    r = pair_ratio(dens, batch.x, batch.labels, batch.partner_labels)
    info = batch.info["genmix"]
    assert int(info["solved"]) + int(info["clamped"]) == int(diff.sum())
    assert int(info["solved"]) >= 0.9 * int(diff.sum())
    # solved pairs: the ratio of the row's own class is the drawn lam
    solved = diff & ((r - lam).abs() < 1e-6)
    assert int(solved.sum()) == int(info["solved"])
    # the reported lam is the reached ratio, and the label says the same
    assert torch.allclose(batch.lam.double()[diff], r[diff], atol=1e-6)
    lp = dens.log_prob(batch.x)
    intr = diff & intrudes(lp, batch.labels, batch.partner_labels)
    assert int(intr.sum()) == int(info["intruding"])
    two = diff & ~intr
    yi = batch.y.gather(1, batch.labels[:, None]).squeeze(1).double()
    yj = batch.y.gather(1, batch.partner_labels[:, None]).squeeze(1).double()
    assert torch.allclose(yi[two], r[two], atol=1e-6)
    assert torch.allclose(yj[two], 1 - r[two], atol=1e-6)
    post = torch.softmax(lp[intr], 1).float()
    assert torch.allclose(batch.y[intr], post, atol=1e-6)
    # the points lie on the segments: x = t x_i + (1 - t) x_j with t read off y_mix
    t = batch.y_mix.gather(1, batch.labels[:, None]).squeeze(1).double()
    t = torch.where(diff, t, lam)
    expect = t[:, None] * x + (1 - t[:, None]) * x[perm]
    assert torch.allclose(batch.x, expect, atol=1e-5)


def test_float32_inputs_and_image_shape():
    x, y = blobs(FOUR, dtype=torch.float32)
    dens = Gaussian().fit(x, y)
    imgs = torch.nn.functional.pad(x, (0, 1)).reshape(-1, 1, 2, 2)  # 4 features, last one 0
    dens4 = Gaussian().fit(imgs.reshape(imgs.shape[0], -1), y)
    batch = GenMix(dens4, seed=0, intrusion="relabel")(imgs, y)
    assert batch.x.shape == imgs.shape and batch.x.dtype == torch.float32
    assert batch.y.dtype == torch.float32
    lam, _ = drawn(GenMix(dens, seed=0), x.shape[0])
    diff = batch.labels != batch.partner_labels
    r = pair_ratio(dens4, batch.x.double(), batch.labels, batch.partner_labels)
    assert ((r - lam)[diff].abs() < 1e-3).float().mean() > 0.9


def test_bisection_non_gaussian_density():
    x, y = blobs(FOUR, n=80)
    dens = StudentT().fit(x, y)
    mixer = GenMix(dens, seed=1, intrusion="relabel", tol=1e-7)
    assert mixer.stats()["calls"] == 0
    batch = mixer(x, y)
    lam, _ = drawn(mixer, x.shape[0])
    diff = batch.labels != batch.partner_labels
    info = batch.info["genmix"]
    assert int(info["solved"]) >= 0.8 * int(diff.sum())
    r = pair_ratio(dens, batch.x, batch.labels, batch.partner_labels)
    reached = diff & ((r - lam).abs() < 1e-4)
    assert int(reached.sum()) == int(info["solved"])
    assert mixer.stats()["solved"] == int(info["solved"])


def test_bisection_with_kde():
    x, y = blobs(FOUR, n=50)
    dens = KDE(bandwidth=0.7).fit(x, y)
    mixer = GenMix(dens, seed=2, intrusion="relabel", tol=1e-7)
    batch = mixer(x, y)
    lam, _ = drawn(mixer, x.shape[0])
    diff = batch.labels != batch.partner_labels
    r = pair_ratio(dens, batch.x, batch.labels, batch.partner_labels)
    reached = diff & ((r - lam).abs() < 1e-4)
    assert int(reached.sum()) == int(batch.info["genmix"]["solved"]) > 0.8 * int(diff.sum())


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_closed_form_equals_bisection(covariance):
    x, y = blobs(FOUR)
    dens = Gaussian(covariance=covariance).fit(x, y)
    closed = GenMix(dens, seed=4, intrusion="relabel", method="closed_form")(x, y)
    bisect = GenMix(dens, seed=4, intrusion="relabel", method="bisection", tol=1e-9)(x, y)
    assert torch.equal(closed.index, bisect.index)
    assert int(closed.info["genmix"]["solved"]) == int(bisect.info["genmix"]["solved"])
    assert torch.allclose(closed.x, bisect.x, atol=1e-6)
    assert torch.allclose(closed.y, bisect.y, atol=1e-5)


def test_quadratic_root_selection():
    # (t - 0.2)(t - 0.7): two roots, the one near `near` is taken
    a, b, c = torch.tensor([1.0, 1.0]), torch.tensor([-0.9, -0.9]), torch.tensor([0.14, 0.14])
    sol = solve_quadratic_on_unit(a, b, c, torch.tensor([0.1, 0.9]))
    assert torch.allclose(sol.t, torch.tensor([0.2, 0.7], dtype=sol.t.dtype))
    assert bool(sol.solved.all())
    # no root: the closest value on [0, 1]: the vertex 0.5 of t^2 - t + 1, the endpoint 1
    # of t - 2 and of 5 - t
    sol = solve_quadratic_on_unit(
        torch.tensor([1.0, 0.0, 0.0]),
        torch.tensor([-1.0, 1.0, -1.0]),
        torch.tensor([1.0, -2.0, 5.0]),
        torch.tensor([0.5, 0.5, 0.5]),
    )
    assert not bool(sol.solved.any())
    assert torch.allclose(sol.t, torch.tensor([0.5, 1.0, 1.0], dtype=sol.t.dtype))


def test_unreachable_ratio_is_clamped_and_counted():
    x, y = blobs([[0.0], [1.0]], n=30, std=0.5)
    dens = Gaussian().fit(x, y)
    # overlapping classes: a ratio this extreme is reached nowhere near the data
    lam = torch.full((1,), 1 - 1e-12)
    sol = solve_segment(dens, x[:1], x[30:31], torch.tensor([0]), torch.tensor([1]), lam)
    assert not bool(sol.solved.any()) and float(sol.t[0]) in (0.0, 1.0)
    batch = GenMix(dens, lam=1.0, seed=0, intrusion="relabel")(x, y)
    diff = batch.labels != batch.partner_labels
    assert int(batch.info["genmix"]["clamped"]) == int(diff.sum()) > 0
    assert torch.allclose(batch.y.sum(1), torch.ones(x.shape[0]))


@pytest.mark.parametrize("intrusion", ["discard", "relabel"])
def test_labels_are_distributions(intrusion):
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    batch = GenMix(dens, alpha=0.4, seed=7, intrusion=intrusion)(x, y)
    for t in (batch.y, batch.y_mix):
        assert bool((t >= 0).all())
        assert torch.allclose(t.sum(1), torch.ones(t.shape[0]), atol=1e-6)
    assert bool(((batch.lam >= 0) & (batch.lam <= 1)).all())
    n_in = int(batch.info["genmix"]["n"])
    assert batch.x.shape[0] == n_in - int(batch.info["genmix"]["discarded"])


def _collinear(intrusion):
    x, y = blobs(COLLINEAR, n=60, std=0.4)
    dens = Gaussian().fit(x, y)
    mixer = GenMix(dens, lam=0.5, seed=0, intrusion=intrusion)
    return x, y, dens, mixer, mixer(x, y)


def test_intrusion_discard_collinear():
    x, y, dens, mixer, batch = _collinear("discard")
    _, perm = drawn(mixer, x.shape[0])
    pair01 = ((y == 0) & (y[perm] == 1)) | ((y == 1) & (y[perm] == 0))
    assert int(pair01.sum()) > 5
    info = batch.info["genmix"]
    assert int(info["discarded"]) == int(info["intruding"]) >= int(pair01.sum())
    # no {0, 1} pair survives; the rest are kept and not intruding
    kept = torch.stack([batch.labels, batch.partner_labels], 1).sort(1).values
    assert not bool(((kept[:, 0] == 0) & (kept[:, 1] == 1)).any())
    assert batch.x.shape[0] == x.shape[0] - int(info["discarded"])
    diff = batch.labels != batch.partner_labels
    r = pair_ratio(dens, batch.x, batch.labels, batch.partner_labels)
    assert torch.allclose(r[diff], torch.full_like(r[diff], 0.5), atol=1e-6)
    assert mixer.stats()["discarded"] == int(info["discarded"])


def test_intrusion_relabel_collinear():
    x, y, dens, mixer, batch = _collinear("relabel")
    _, perm = drawn(mixer, x.shape[0])
    pair01 = ((y == 0) & (y[perm] == 1)) | ((y == 1) & (y[perm] == 0))
    assert batch.x.shape[0] == x.shape[0] and int(batch.info["genmix"]["discarded"]) == 0
    # the {0, 1} midpoints land on class 2 and get its posterior mass
    assert bool((batch.y[pair01, 2] > 0.9).all())
    post = torch.softmax(dens.log_prob(batch.x[pair01]), 1).float()
    assert torch.allclose(batch.y[pair01], post, atol=1e-5)
    # the pairs with class 2 do not intrude: two-class labels at ratio 0.5
    pair2 = (y != y[perm]) & ~pair01
    top = batch.y[pair2].max(1).values
    assert torch.allclose(top, torch.full_like(top, 0.5), atol=1e-5)


def test_same_class_pairs():
    x, y = blobs([[0.0, 0.0], [5.0, 5.0]], n=20)
    dens = Gaussian().fit(x, y)
    x0, y0 = x[:20], y[:20]  # one class only: every pair is a same-class pair
    mix = GenMix(dens, seed=5, same_class="mixup")
    batch = mix(x0, y0)
    lam, perm = drawn(mix, 20)
    assert int(batch.info["genmix"]["same_class"]) == 20
    assert torch.allclose(batch.x, lam[:, None] * x0 + (1 - lam[:, None]) * x0[perm])
    assert torch.allclose(batch.lam.double(), lam, atol=1e-7)
    assert torch.equal(batch.y, torch.nn.functional.one_hot(y0, 2).float())
    keep = GenMix(dens, seed=5, same_class="keep")(x0, y0)
    assert torch.equal(keep.x, x0) and bool((keep.lam == 1).all())
    assert torch.equal(keep.y, torch.nn.functional.one_hot(y0, 2).float())


def test_seeded_repeat_and_generator():
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    a = GenMix(dens, seed=11)(x, y)
    b = GenMix(dens, seed=11)(x, y)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mix = GenMix(dens)
    c, d = mix(x, y, generator=g1), mix(x, y, generator=g2)
    assert torch.equal(c.x, d.x)
    e = mix(x, y, generator=g1)  # the stream moves on
    assert not torch.equal(c.index, e.index)


def test_unfitted_density_errors():
    x, y = blobs(FOUR, n=10)
    mixer = GenMix("gaussian", num_classes=4)
    with pytest.raises(NotFittedError, match="fit"):
        mixer(x, y)
    with pytest.raises(NotFittedError, match="fit"):
        GenMix(Gaussian())(x, y)
    with pytest.raises(NotFittedError, match="fit"):
        genmix_dataset(Gaussian(), x, y, 5)
    batch = mixer.fit(x, y)(x, y)  # the same mixer works once fitted
    assert batch.y.shape[1] == 4
    with pytest.raises(ValueError, match="closed_form"):
        GenMix(StudentT(), method="closed_form")
    with pytest.raises(ValueError, match="intrusion"):
        GenMix(Gaussian(), intrusion="drop")
    with pytest.raises(ValueError, match="3 classes"):
        GenMix(Gaussian().fit(*blobs(COLLINEAR, n=10)), num_classes=4)(x, y)


def test_refit_density_is_picked_up():
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    mixer = GenMix(dens, lam=0.3, seed=0, intrusion="relabel")
    mixer(x, y)
    x2 = x * 2 + 1  # refit on other data: the cached precision factors must be rebuilt
    dens.fit(x2, y)
    batch = mixer(x2, y)
    diff = batch.labels != batch.partner_labels
    r = pair_ratio(dens, batch.x, batch.labels, batch.partner_labels)
    solved = int(batch.info["genmix"]["solved"])
    assert int((diff & ((r - 0.3).abs() < 1e-6)).sum()) == solved > 0


def test_in_mixcollate():
    x, y = blobs(FOUR, n=10, dtype=torch.float32)
    dens = Gaussian().fit(x, y)
    collate = MixCollate(GenMix(dens, intrusion="relabel"), seed=0)
    samples = list(zip(x, y, strict=True))
    xm, ym = collate(samples)
    assert xm.shape == x.shape and torch.allclose(ym.sum(1), torch.ones(40))
    clone = pickle.loads(pickle.dumps(collate))  # DataLoader workers pickle the collate_fn
    assert clone(samples)[0].shape == x.shape


# -- dataset-level -----------------------------------------------------------------------------


def check_dataset_points(dens, x_aug, y_aug, info, lam, eps):
    pc = info["pairs"][info["pair_index"]]
    r = pair_ratio(dens, x_aug.double(), pc[:, 0], pc[:, 1])
    assert bool(((r - lam).abs() <= eps).all())
    # labels: mass on the pair only, equal to the ratio; the pair is the top-2 (no intrusion)
    assert torch.allclose(y_aug.sum(1), torch.ones(y_aug.shape[0]), atol=1e-6)
    assert torch.allclose(y_aug.gather(1, pc[:, :1]).squeeze(1).double(), r, atol=1e-4)
    top2 = dens.log_prob(x_aug).topk(2, 1).indices.sort(1).values
    assert torch.equal(top2, pc.sort(1).values)


@pytest.mark.parametrize("method", ["segment", "projection"])
def test_dataset_gaussian(method):
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    eps = 1e-3
    x_aug, y_aug, info = genmix_dataset(
        dens, x, y, 20, lam=0.3, eps=eps, method=method,
        generator=torch.Generator().manual_seed(0), return_info=True,
    )
    assert info["pairs"].shape == (6, 2)
    assert info["counts"].tolist() == [20] * 6
    assert x_aug.shape == (120, 3) and y_aug.shape == (120, 4)
    assert torch.equal(info["pair_index"], torch.arange(6).repeat_interleave(20))
    check_dataset_points(dens, x_aug, y_aug, info, 0.3, eps)


@pytest.mark.parametrize("method", ["segment", "projection"])
def test_dataset_non_gaussian(method):
    x, y = blobs(TETRA, n=50)  # no edge midpoint of a tetrahedron is near a third vertex
    dens = StudentT().fit(x, y)
    x_aug, y_aug, info = genmix_dataset(
        dens, x, y, 15, lam=None, alpha=2.0, eps=2e-3, method=method, pairs="ordered",
        generator=torch.Generator().manual_seed(1), return_info=True,
    )
    assert info["counts"].tolist() == [15] * 12
    pc = info["pairs"][info["pair_index"]]
    r = pair_ratio(dens, x_aug, pc[:, 0], pc[:, 1])
    assert bool(((r - info["target"]).abs() <= 2e-3).all())
    assert info["target"].std() > 0.05  # Beta draws, not a constant


def test_dataset_intruding_pair_and_repeat():
    x, y = blobs(COLLINEAR, n=40, std=0.4)
    dens = Gaussian().fit(x, y)
    kw = dict(lam=0.5, max_rounds=3, return_info=True)
    with pytest.warns(UserWarning, match=r"\(0, 1\): 0"):
        x_aug, y_aug, info = genmix_dataset(
            dens, x, y, 10, generator=torch.Generator().manual_seed(0), **kw
        )
    assert info["counts"].tolist() == [0, 10, 10]  # pairs (0, 1), (0, 2), (1, 2)
    assert info["intruding"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = genmix_dataset(dens, x, y, 10, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(x_aug, again[0]) and torch.equal(y_aug, again[1])


def test_dataset_from_density_samples():
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    x_aug, y_aug = genmix_dataset(dens, None, None, 10, pairs=[(0, 3), (2, 1)],
                                  generator=torch.Generator().manual_seed(0))
    assert x_aug.shape == (20, 3)
    assert torch.allclose(y_aug[:10, [0, 3]].sum(1), torch.ones(10))
    assert torch.allclose(y_aug[10:, [2, 1]].sum(1), torch.ones(10))
    with pytest.raises(ValueError, match="sample"):
        genmix_dataset(StudentT().fit(x, y), None, None, 5)


def test_class_pairs():
    assert class_pairs(3).tolist() == [[0, 1], [0, 2], [1, 2]]
    assert class_pairs(3, "ordered").shape == (6, 2)
    with pytest.raises(ValueError):
        class_pairs(3, [(1, 1)])


# -- inputs that never break it (issue 13: findings 2, 7, 13) ----------------------------------


def test_column_of_class_ids_gives_the_right_labels_and_pairs():
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)
    ref = GenMix(dens, seed=3, intrusion="relabel")(x, y)
    for col in (y[:, None], y[:, None].int(), y[:, None].to(torch.uint8)):
        batch = GenMix(dens, seed=3, intrusion="relabel")(x, col)
        assert torch.equal(batch.labels, y)
        assert torch.equal(batch.partner_labels, y[batch.index])
        assert int(batch.info["genmix"]["same_class"]) == int((y == y[batch.index]).sum()) < 100
        assert torch.equal(batch.x, ref.x) and torch.equal(batch.y, ref.y)
    # fit with a (N, 1) column: the density learns all four classes, not one
    mixer = GenMix("gaussian", seed=3, intrusion="relabel").fit(x, y[:, None])
    assert mixer.density.num_classes == 4
    assert torch.allclose(mixer.density.means, dens.means)
    with pytest.raises(ValueError, match="non-integer"):
        GenMix("gaussian").fit(x, y.double() + 0.5)


def test_dataset_class_id_dtypes():
    x, y = blobs(FOUR)
    dens = Gaussian().fit(x, y)

    def run(labels):
        return genmix_dataset(dens, x, labels, 5, generator=torch.Generator().manual_seed(0))

    ref = run(y)
    for labels in (y.to(torch.uint8), y.to(torch.int16), y.to(torch.int8), y.double(), y[:, None]):
        out = run(labels)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1]), labels.dtype
    with pytest.raises(ValueError, match="non-integer"):
        run(y.double() + 0.25)  # truncating 0.25 to 0 would be a silent wrong label
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        run(y + 1)
    with pytest.raises(ValueError, match="bool"):
        run(y > 1)
    with pytest.raises(ValueError, match="non-integer"):
        class_pairs(3, [(0.5, 1)])


def _all_intruding_params(n_per_class):
    # rows of class 0 paired with rows of class 1 and back: every midpoint lands on class 2
    a = torch.arange(n_per_class)
    index = torch.cat([a + n_per_class, a])
    return MixParams(torch.full((2 * n_per_class,), 0.5, dtype=torch.float64), index)


@pytest.mark.parametrize("shape", [None, (1, 2, 1)])
def test_discarding_every_row_gives_a_valid_empty_batch(shape):
    x, y = blobs(COLLINEAR, n=30, std=0.4, dtype=torch.float32)
    dens = Gaussian().fit(x, y)
    x01, y01 = x[:60], y[:60]
    xin = x01 if shape is None else x01.reshape(60, *shape)
    mixer = GenMix(dens, intrusion="discard")
    batch = mixer(xin, y01, params=_all_intruding_params(30))
    info = batch.info["genmix"]
    assert int(info["n"]) == 60 and int(info["discarded"]) == 60
    assert batch.x.shape == (0, *xin.shape[1:]) and batch.x.dtype == torch.float32
    assert batch.y.shape == (0, 3) and batch.y_mix.shape == (0, 3)
    assert batch.lam.shape == batch.index.shape == batch.labels.shape == (0,)
    assert batch.partner_labels.shape == (0,) and batch.labels.dtype == torch.long
    assert batch.num_classes == 3
    xs, ys = batch  # unpacks as a training loop expects
    assert xs.shape[0] == ys.shape[0] == 0
    again = batch.to("cpu").select(torch.zeros(0, dtype=torch.bool))
    assert again.x.shape == batch.x.shape
    assert mixer.stats()["discarded"] == 60
    # the loss of an empty batch: sum-reduction is 0 (a mean over 0 rows would be NaN)
    logits = torch.zeros(0, 3, requires_grad=True)
    assert float(torch.nn.functional.cross_entropy(logits, ys, reduction="sum").detach()) == 0.0


def test_dataset_with_no_point_kept_is_empty_not_broken():
    x, y = blobs(COLLINEAR, n=40, std=0.3)
    dens = Gaussian().fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_aug, y_aug, info = genmix_dataset(dens, x, y, 4, pairs=[(0, 1)], max_rounds=2,
                                            generator=torch.Generator().manual_seed(0),
                                            return_info=True)
    assert x_aug.shape == (0, 2) and y_aug.shape == (0, 3)
    assert x_aug.dtype == torch.float64 and y_aug.dtype == torch.float32
    assert info["counts"].tolist() == [0] and info["pair_index"].shape == (0,)
    x0, y0 = genmix_dataset(dens, x, y, 0)
    assert x0.shape == (0, 2) and y0.shape == (0, 3)
