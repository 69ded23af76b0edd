"""First-party density plugins flow (normflows), vae (pyro-ppl) and gan.

Each is used as a generative classifier (argmax of log_prob) on two moons and
on three overlapping Gaussians (against the exact Bayes accuracy), and checked
for finite scores far from the data, state-dict round trips into a fresh
instance, seeded repeatability, discovery through the entry point and the
error a missing optional dependency gives. Sizes are small so that each
density's tests stay well under a minute on a 2-core CPU.
"""

import io
import math
import subprocess
import sys

import pytest
import torch
from mixkit_plugins.flow import FlowDensity
from mixkit_plugins.gan import GANDensity
from mixkit_plugins.vae import VAEDensity
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

import mixkit

CLASSES = {"flow": FlowDensity, "vae": VAEDensity, "gan": GANDensity}
NAMES = list(CLASSES)
# settings for the accuracy fits: smaller than the defaults, still real training
SETTINGS = {
    "flow": dict(num_layers=3, hidden=32, max_epochs=80, patience=10, seed=0, progress=False),
    "vae": dict(max_epochs=250, patience=20, seed=0, progress=False),
    "gan": dict(steps=600, seed=0, progress=False),
}
# settings for the quick fits (repeatability, errors): a few optimisation steps
TINY = {
    "flow": dict(num_layers=1, hidden=8, max_epochs=3, seed=3, progress=False),
    "vae": dict(hidden=8, max_epochs=3, kl_warmup=1, num_samples=8, seed=3, progress=False),
    "gan": dict(hidden=8, steps=20, bank_size=32, inversion_steps=5, encoder_steps=20, seed=3,
                progress=False),
}
TRIANGLE = torch.tensor([[0.0, 0.0], [2.5, 0.0], [1.25, 2.5 * math.sqrt(3) / 2]])


def moons():
    x, y = make_moons(n_samples=1000, noise=0.1, random_state=0)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    f = torch.tensor
    return f(x_tr, dtype=torch.float32), f(y_tr), f(x_te, dtype=torch.float32), f(y_te)


def three_gaussians(n=2400):
    """Means at the vertices of a triangle of side 2.5, identity covariance, equal priors."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = TRIANGLE[y] + torch.randn(n, 2, generator=g)
    half = n // 2
    return x[:half], y[:half], x[half:], y[half:]


def bayes_accuracy(x, y):
    """Equal priors and covariances: the Bayes rule picks the nearest mean."""
    log_p = -0.5 * torch.cdist(x, TRIANGLE).square()
    return (log_p.argmax(1) == y).double().mean().item()


def small_data(n=120):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) + 3.0 * y[:, None]
    return x, y


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: intra-op threads only add synchronisation, which on a busy
    2-core machine costs far more than the work (a GAN fit went from 4 s to minutes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_FITTED = {}


def fitted(name, dataset):
    """Fit once per (density, dataset) for the whole module."""
    key = (name, dataset)
    if key not in _FITTED:
        x_tr, y_tr, x_te, y_te = moons() if dataset == "moons" else three_gaussians()
        density = mixkit.create_density(name, **SETTINGS[name]).fit(x_tr, y_tr)
        _FITTED[key] = (density, x_te, y_te)
    return _FITTED[key]


def accuracy(density, x, y):
    return (density.log_prob(x).argmax(1) == y).double().mean().item()


# -- quality --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_moons_generative_classifier(name):
    density, x_te, y_te = fitted(name, "moons")
    assert accuracy(density, x_te, y_te) >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_three_gaussians_near_bayes(name):
    density, x_te, y_te = fitted(name, "gauss")
    bayes = bayes_accuracy(x_te, y_te)
    assert 0.75 < bayes < 0.9  # the classes overlap
    assert accuracy(density, x_te, y_te) >= bayes - 0.02


# -- numerics -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_finite_far_from_data(name):
    density, x_te, _ = fitted(name, "moons")
    far = torch.tensor([[1e3, -1e3], [-1e3, 1e3], [1e6, 1e6], [1e30, -1e30]])
    out = density.log_prob(far)
    assert out.dtype == torch.float32 and out.shape == (4, 2)
    assert torch.isfinite(out[:3]).all()
    # beyond what float32 holds a score is -inf ("cannot say"), never NaN or a floored value
    assert not out.isnan().any() and ((out[3] == -math.inf) | out[3].isfinite()).all()
    assert (out != torch.finfo(torch.float32).min).all()
    near = density.log_prob(x_te[:4])
    assert out[:2].max() < near.min()
    out64 = density.log_prob(far.double())  # scored by float32 networks: the same rows answer
    assert out64.dtype == torch.float64 and torch.isfinite(out64[:3]).all()
    assert torch.equal(out64.isfinite(), out.isfinite()) and not out64.isnan().any()


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_does_not_depend_on_the_batch(name):
    density, x_te, _ = fitted(name, "moons")
    full = density.log_prob(x_te[:40])
    torch.testing.assert_close(density.log_prob(x_te[5:9]), full[5:9], rtol=1e-5, atol=1e-4)
    assert torch.equal(density.log_prob(x_te[:40]), full)  # repeated calls are identical


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_is_differentiable_in_x(name):
    density, x_te, _ = fitted(name, "moons")
    x = x_te[:6].clone().requires_grad_(True)
    density.log_prob(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in density.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_under_no_grad_and_inference_mode(name):
    density, x_te, _ = fitted(name, "moons")
    expected = density.log_prob(x_te[:8])
    with torch.no_grad():
        torch.testing.assert_close(density.log_prob(x_te[:8]), expected)
    with torch.inference_mode():
        torch.testing.assert_close(density.log_prob(x_te[:8]), expected)


def test_flow_is_a_normalized_density():
    density, _, _ = fitted("flow", "moons")
    grid = torch.linspace(-4.0, 5.0, 361)
    pts = torch.cartesian_prod(grid, grid - 0.5)
    cell = (grid[1] - grid[0]) ** 2
    mass = density.log_prob(pts).double().exp().sum(0) * cell
    torch.testing.assert_close(mass, torch.ones(2, dtype=torch.float64), atol=0.03, rtol=0)


def test_vae_bound_tightens_with_more_samples():
    density, x_te, _ = fitted("vae", "moons")
    loose = VAEDensity(**{**SETTINGS["vae"], "num_samples": 1})
    loose.load_state_dict(density.state_dict())
    assert loose.log_prob(x_te).mean() < density.log_prob(x_te).mean()


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_gan_distance_to_manifold(norm):
    x, y = small_data()
    kw = {**TINY["gan"], "norm": norm, "latent_prior": 0.0, "z_dim": 1, "temperature": 0.5}
    density = GANDensity(**kw).fit(x, y)
    dist = density.distance(x[:10])
    assert dist.shape == (10, 2) and (dist >= 0).all()
    # with latent_prior=0 the score is exactly -d(x, M_c) / T
    torch.testing.assert_close(density.log_prob(x[:10]), -dist / 0.5, rtol=1e-5, atol=1e-5)
    # the inversion never does worse than the nearest bank point
    with torch.no_grad():
        gen = [density.net(density.bank_z, torch.full((32,), c)) * density.x_std + density.x_mean
               for c in range(2)]
    p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[norm]
    nearest = torch.stack([torch.cdist(x[:10], g, p=p).min(1).values for g in gen], 1)
    assert (dist <= nearest + 1e-4).all()


def test_gan_temperature_is_set_from_the_data():
    x, y = small_data()
    density = GANDensity(**TINY["gan"]).fit(x, y)
    spread = (x - torch.stack([x[y == c].mean(0) for c in range(2)])[y]).norm(dim=1).mean()
    torch.testing.assert_close(density.temperature_, 0.25 * spread)


# -- state, seeds, devices ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    density, x_te, _ = fitted(name, "moons")
    buffer = io.BytesIO()
    torch.save(density.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = mixkit.create_density(name, **{**SETTINGS[name], "seed": None})
    with pytest.raises(mixkit.NotFittedError):
        fresh.log_prob(x_te)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.log_prob(x_te), density.log_prob(x_te))
    assert fresh.sample(5, 1, torch.Generator().manual_seed(0)).shape == (5, 2)


@pytest.mark.parametrize("name", NAMES)
def test_loading_into_another_architecture_fails_clearly(name):
    x, y = small_data()
    density = CLASSES[name](**TINY[name]).fit(x, y)
    other = CLASSES[name](**{**TINY[name], "hidden": 12})
    with pytest.raises(ValueError, match="hidden=8"):
        other.load_state_dict(density.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_seeded_fit_repeats_exactly(name):
    x, y = small_data()
    a = CLASSES[name](**TINY[name]).fit(x, y)
    b = CLASSES[name](**TINY[name]).fit(x, y)
    c = CLASSES[name](**{**TINY[name], "seed": 4}).fit(x, y)
    assert torch.equal(a.log_prob(x), b.log_prob(x))
    assert not torch.equal(a.log_prob(x), c.log_prob(x))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))


@pytest.mark.parametrize("name", NAMES)
def test_seed_none_follows_the_global_rng(name):
    x, y = small_data()
    kw = {**TINY[name], "seed": None}
    torch.manual_seed(11)
    a = CLASSES[name](**kw).fit(x, y)
    torch.manual_seed(11)
    b = CLASSES[name](**kw).fit(x, y)
    assert torch.equal(a.log_prob(x), b.log_prob(x))


@pytest.mark.parametrize("name", NAMES)
def test_fit_leaves_the_global_rng_alone(name):
    x, y = small_data()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    CLASSES[name](**TINY[name]).fit(x, y)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", NAMES)
def test_to_device_and_dtype_follow_the_module(name):
    density, x_te, _ = fitted(name, "moons")
    assert density.to("cpu") is density
    assert density.log_prob(x_te[:3]).device == x_te.device


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_cuda_fit_and_score(name):
    x, y = small_data()
    density = CLASSES[name](**TINY[name]).fit(x, y)
    expected = density.log_prob(x)
    density.to("cuda")
    out = density.log_prob(x.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-3, atol=1e-3)
    on_gpu = CLASSES[name](**TINY[name]).fit(x.cuda(), y.cuda())
    assert torch.isfinite(on_gpu.log_prob(x.cuda())).all()


# -- plugin plumbing ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_found_through_the_entry_point(name):
    component = mixkit.available("density")[name]
    assert component.cls is CLASSES[name]
    assert component.plugin == name
    assert component.description == CLASSES[name].__doc__.strip().splitlines()[0]
    assert name in {p.name for p in mixkit.plugins() if p.error is None}
    assert isinstance(mixkit.create_density(name), CLASSES[name])


@pytest.mark.parametrize(("name", "module", "extra"), [("flow", "normflows", "flow"), ("vae", "pyro", "vae")])
def test_missing_dependency_says_how_to_install(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now raises ImportError
    x, y = small_data()
    with pytest.raises(ImportError, match=rf'pip install "mixkit\[{extra}\]"'):
        CLASSES[name](**TINY[name]).fit(x, y)


def test_importing_the_plugins_does_not_import_their_dependencies():
    code = (
        "import sys, mixkit_plugins.flow, mixkit_plugins.vae, mixkit_plugins.gan; "
        "heavy = [m for m in ('normflows', 'pyro') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_and_inputs(name):
    cls = CLASSES[name]
    with pytest.raises(ValueError, match="hidden"):
        cls(hidden=0)
    x, y = small_data()
    density = cls(**TINY[name]).fit(x, y)
    with pytest.raises(ValueError, match="2-dimensional"):
        density.log_prob(torch.zeros(3, 5))
    assert density.history  # what training did is kept for inspection


def test_gan_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        GANDensity(norm="l3")


# -- hostile inputs (issue 13) ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_queries_are_scored_in_float32(name):
    """fp16 scores used to overflow: every class floored at -65504, a uniform label."""
    density, x_te, _ = fitted(name, "moons")
    far = torch.tensor([[3.0, -2.0], [-2.5, 2.5], [40.0, 40.0]])
    q = torch.cat([x_te[:32], far])
    out = density.log_prob(q.half())
    assert out.dtype == torch.float32 and not out.isnan().any()
    assert (out > torch.finfo(torch.float32).min).all()  # no floored class anywhere
    ref = density.log_prob(q.half().float())
    torch.testing.assert_close(out, ref)
    assert bool((out[:, 0] != out[:, 1]).all())  # a real preference in every row
    assert (out.argmax(1)[:32] == density.log_prob(x_te[:32]).argmax(1)).double().mean() >= 0.9
    assert density.log_prob(q.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_refit_with_another_class_count(name):
    x, y = small_data()
    y3 = torch.arange(x.shape[0]) % 3
    density = CLASSES[name](**TINY[name])
    assert density.fit(x, y3).log_prob(x[:5]).shape == (5, 3)
    assert density.fit(x, y).log_prob(x[:5]).shape == (5, 2)
    assert density.fit(x, y3).log_prob(x[:5]).shape == (5, 3)
    fixed = CLASSES[name](**TINY[name], num_classes=3).fit(x, y3)
    with pytest.raises(ValueError):
        fixed.fit(x, y3 + 1)  # a given class count still binds


@pytest.mark.parametrize("name", NAMES)
def test_fit_on_tensors_that_require_grad_stores_no_graph(name):
    x, y = small_data()
    leaf = x.clone().requires_grad_(True)
    density = CLASSES[name](**TINY[name]).fit(leaf * 1.0, y)  # a non-leaf with a graph
    assert all(not b.requires_grad and b.grad_fn is None for b in density.buffers())
    assert all(not p.requires_grad for p in density.parameters())
    reference = CLASSES[name](**TINY[name]).fit(x, y)
    assert torch.equal(density.log_prob(x), reference.log_prob(x))
    assert leaf.grad is None


def test_gan_state_with_another_norm_fails_at_load():
    x, y = small_data()
    density = GANDensity(**TINY["gan"], norm="l1").fit(x, y)
    other = GANDensity(**TINY["gan"])  # norm="l2"
    with pytest.raises(ValueError, match=r"norm='l1'.*norm='l2'"):
        other.load_state_dict(density.state_dict())
    assert not other.fitted


@pytest.mark.parametrize("name", NAMES)
def test_state_of_another_density_class_fails_at_load(name):
    x, y = small_data()
    kde_state = mixkit.KDE(bandwidth=0.5).fit(x, y).state_dict()
    target = CLASSES[name](**TINY[name])
    with pytest.raises(ValueError, match="saved by a KDE density"):
        target.load_state_dict(kde_state)
    assert not target.fitted and "points" not in dict(target.named_buffers())
    other = next(n for n in NAMES if n != name)
    state = CLASSES[other](**TINY[other]).fit(x, y).state_dict()
    with pytest.raises(ValueError, match=f"saved by a {CLASSES[other].__name__} density"):
        target.load_state_dict(state)
    foreign = f"saved by a {CLASSES[other].__name__} density and cannot be loaded into a KDE"
    with pytest.raises(ValueError, match=foreign):
        mixkit.KDE().load_state_dict(state)


def test_gan_encoder_agrees_with_the_exact_search():
    """The default amortised inversion against the multi-restart search (the same weights)."""
    density, x_te, _ = fitted("gan", "moons")
    assert density.inversion == "encoder" and density.encoder is not None
    search = GANDensity(**{**SETTINGS["gan"], "inversion": "search"})
    search.load_state_dict(density.state_dict())
    g = torch.Generator().manual_seed(0)
    i, j = torch.randint(len(x_te), (2, 200), generator=g)
    lam = torch.rand(200, 1, generator=g)
    q = torch.cat([x_te[:100], lam * x_te[i] + (1 - lam) * x_te[j]])
    fast, exact = density.log_prob(q), search.log_prob(q)
    assert (fast.argmax(1) == exact.argmax(1)).double().mean() >= 0.99
    tv = 0.5 * (fast.softmax(1) - exact.softmax(1)).abs().sum(1)
    assert tv.mean() < 0.02
    # a state fitted without an encoder cannot be scored by one
    bare = GANDensity(**{**TINY["gan"], "inversion": "search"}).fit(*small_data())
    wants = GANDensity(**TINY["gan"])
    wants.load_state_dict(bare.state_dict())
    with pytest.raises(ValueError, match="without an inversion encoder"):
        wants.log_prob(torch.zeros(2, 2))


@pytest.mark.parametrize("name", ["gan", "flow", "vae"])
def test_log_prob_reads_nothing_back_to_the_host(name, monkeypatch):
    """Scoring a batch never reads a tensor value back (a host sync per call on a GPU): the
    GAN's distance floor, for one, is a tensor, not ``float(x_std.mean())``."""
    x, y = small_data()
    density = CLASSES[name](**TINY[name]).fit(x, y)
    expected = density.log_prob(x[:16])

    def refuse(method):
        def guarded(*args, **kwargs):
            raise AssertionError(f"Tensor.{method} called while scoring")
        return guarded

    for method in ("item", "tolist", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, method, refuse(method))
    out = density.log_prob(x[:16])
    monkeypatch.undo()
    torch.testing.assert_close(out, expected)
