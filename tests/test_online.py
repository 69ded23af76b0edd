"""OnlineGaussian (streaming statistics of Algorithm 3) and OnlineGenLabel (the three-line loop)."""

from __future__ import annotations

import collections
import contextlib
import traceback

import pytest
import torch
from torch import nn

from mixkit.batch import MixedBatch
from mixkit.densities.gaussian import Gaussian
from mixkit.densities.online import OnlineGaussian
from mixkit.nn import ManifoldMixup, OnlineGenLabel, frozen_bn_stats

K, D = 4, 6


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    x = torch.randn(n, D, generator=g, dtype=torch.float64) * (1 + y[:, None]) + 3 * y[:, None]
    return x, y


def one_pass(x, y):
    means = torch.stack([x[y == c].mean(0) for c in range(K)])
    var = torch.stack([x[y == c].var(0, unbiased=False) for c in range(K)])
    return means, var


@pytest.mark.parametrize("covariance", ["diag", "spherical"])
def test_running_sums_equal_one_pass_statistics(covariance):
    x, y = make_data()
    dens = OnlineGaussian(K, memory=None, covariance=covariance)
    for xb, yb in zip(x.split(17), y.split(17), strict=True):
        dens.update(xb, yb)
    means, var = dens.gaussian_parameters()
    ref_means, ref_var = one_pass(x, y)
    if covariance == "spherical":
        ref_var = ref_var.mean(1, keepdim=True).expand(K, D)
    torch.testing.assert_close(means, ref_means, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(var, ref_var, rtol=1e-10, atol=1e-12)
    assert torch.equal(dens.class_counts, torch.bincount(y, minlength=K))
    # the same density as a batch Gaussian fitted in one pass
    ref = Gaussian(covariance, reg_covar=dens.reg_covar).fit(x, y)
    torch.testing.assert_close(dens.log_prob(x), ref.log_prob(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dens.log_prob(x.float()), ref.log_prob(x.float()), rtol=1e-4,
                               atol=1e-3)
    # fit = reset + one update: the same statistics
    refit = OnlineGaussian(K, memory=None, covariance=covariance).fit(x, y)
    torch.testing.assert_close(refit.gaussian_parameters()[1], var, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance", ["diag", "spherical"])
def test_ema_memory_zero_is_last_batch_and_absent_classes_keep_state(covariance):
    x, y = make_data()
    dens = OnlineGaussian(K, D, memory=0.0, covariance=covariance)
    m0, v0 = (t.clone() for t in dens.gaussian_parameters())
    assert torch.equal(m0, torch.zeros(K, D)) and torch.equal(v0, torch.ones(K, D))  # (0, I)
    for xb, yb in zip(x.split(30), y.split(30), strict=True):
        dens.update(xb, yb)
    last_x, last_y = x[-30:], y[-30:]
    means, var = dens.gaussian_parameters()
    ref_means, ref_var = one_pass(last_x, last_y)
    if covariance == "spherical":
        ref_var = ref_var.mean(1, keepdim=True).expand(K, D)
    torch.testing.assert_close(means, ref_means)
    torch.testing.assert_close(var, ref_var)
    # a batch without class 3 leaves class 3 alone
    keep = y != 3
    before = [t.clone() for t in dens.gaussian_parameters()]
    dens.update(x[keep][:20], y[keep][:20])
    after = dens.gaussian_parameters()
    assert torch.equal(after[0][3], before[0][3]) and torch.equal(after[1][3], before[1][3])
    assert not torch.equal(after[0][0], before[0][0])


def test_ema_rule_weights_the_past_by_memory():
    x, y = make_data()
    mem = 0.7
    dens = OnlineGaussian(K, memory=mem, covariance="spherical")
    mean, var = torch.zeros(K, D, dtype=torch.float64), torch.ones(K, 1, dtype=torch.float64)
    for xb, yb in zip(x.split(40), y.split(40), strict=True):
        dens.update(xb, yb)
        bm, bv = one_pass(xb, yb)
        mean = mem * mean + (1 - mem) * bm
        var = mem * var + (1 - mem) * bv.mean(1, keepdim=True)
    got_mean, got_var = dens.gaussian_parameters()
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got_var, var.expand(K, D))
    # soft labels are reduced to their argmax
    soft = OnlineGaussian(K, memory=mem).update(x[:40], torch.eye(K)[y[:40]])
    hard = OnlineGaussian(K, memory=mem).update(x[:40], y[:40])
    assert torch.equal(soft.ema_means, hard.ema_means)


@pytest.mark.parametrize("memory", [0.9, None])
def test_state_dict_round_trips_into_fresh_instance(tmp_path, memory):
    x, y = make_data()
    dens = OnlineGaussian(K, memory=memory, covariance="diag")
    dens.update(x[:60], y[:60])
    torch.save(dens.state_dict(), tmp_path / "d.pt")
    fresh = OnlineGaussian(memory=memory, covariance="diag")
    fresh.load_state_dict(torch.load(tmp_path / "d.pt", weights_only=True))
    assert torch.equal(fresh.log_prob(x), dens.log_prob(x))
    fresh.update(x[60:], y[60:])
    dens.update(x[60:], y[60:])
    assert torch.equal(fresh.log_prob(x), dens.log_prob(x))
    with pytest.raises(ValueError, match="memory"):
        OnlineGaussian(memory=0.5 if memory else 0.1, covariance="diag").load_state_dict(
            dens.state_dict())


def test_input_validation():
    with pytest.raises(ValueError, match="weight of the past"):
        OnlineGaussian(K, memory=1.5)
    with pytest.raises(ValueError, match="covariance"):
        OnlineGaussian(K, covariance="full")
    dens = OnlineGaussian(K, memory=0.5).update(torch.randn(5, D), torch.tensor([0, 1, 1, 2, 3]))
    with pytest.raises(ValueError, match="6-dimensional"):
        dens.update(torch.randn(5, D + 1), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie"):
        dens.update(torch.randn(2, D), torch.tensor([0, K]))


# -- OnlineGenLabel --------------------------------------------------------------------------


class TinyNet(nn.Module):
    """conv -> BN -> pool -> fc: has a batch norm and a classifier named fc."""

    def __init__(self, k=K):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, k)

    def forward(self, x):
        h = self.layer2(self.layer1(torch.relu(self.bn(self.conv(x)))))
        return self.fc(self.pool(h).flatten(1))


def image_batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = torch.randn(n, 1, 8, 8, generator=g) + y[:, None, None, None].float()
    return x, y


def test_clean_pass_leaves_batchnorm_running_stats_alone():
    torch.manual_seed(0)
    net = TinyNet().train()
    x, _ = image_batch()
    rm, nbt = net.bn.running_mean.clone(), net.bn.num_batches_tracked.clone()
    with torch.no_grad(), frozen_bn_stats(net):
        net(x)
    assert torch.equal(net.bn.running_mean, rm) and torch.equal(net.bn.num_batches_tracked, nbt)
    assert net.bn.momentum == 0.1
    net(x)
    assert not torch.equal(net.bn.running_mean, rm)


@pytest.mark.parametrize("manifold", [False, True])
def test_step_updates_with_clean_features_and_relabels_mixed(manifold):
    torch.manual_seed(0)
    net = TinyNet().train()
    model = ManifoldMixup(net, num_classes=K, seed=1) if manifold else net
    online = OnlineGenLabel(K, memory=0.5, gamma=1.0, seed=1)
    x, y = image_batch()
    with torch.no_grad(), frozen_bn_stats(net):
        clean = net.pool(net.layer2(net.layer1(torch.relu(net.bn(net.conv(x)))))).flatten(1)
    rm = net.bn.running_mean.clone()
    logits, batch = online.step(model, x, y, return_batch=True)
    y_soft = batch.y
    # the density saw exactly the clean features (memory 0.5 from the (0, I) start)
    ref = OnlineGaussian(K, memory=0.5).update(clean, y)
    torch.testing.assert_close(online.density.ema_means, ref.ema_means)
    # one forward updated the BN running stats: the mixed one
    assert not torch.equal(net.bn.running_mean, rm)
    assert logits.shape == (16, K) and logits.requires_grad and not y_soft.requires_grad
    torch.testing.assert_close(y_soft.sum(1), torch.ones(16))
    assert int((y_soft > 0).sum(1).max()) <= 2  # top-2 rule of Algorithm 3
    assert isinstance(batch, MixedBatch) and batch.x.shape == (16, 8)
    torch.testing.assert_close(y_soft, online.genlabel.posterior(batch.x)[0])
    # gamma blends with the mixing label
    half = OnlineGenLabel(K, memory=0.5, gamma=0.25, seed=1)
    half.density.load_state_dict(online.density.state_dict())
    rb = half.relabel(batch.replace(y=batch.y_mix))  # relabelers blend with batch.y (chaining rule)
    torch.testing.assert_close(rb.y, 0.25 * y_soft + 0.75 * batch.y_mix)
    # eval mode: no mixing, no update
    model.eval()
    steps = int(online.density.steps)
    logits, y_eval = online.step(model, x, y)
    assert torch.equal(y_eval, torch.eye(K)[y]) and int(online.density.steps) == steps
    model.train()
    (nn.functional.cross_entropy(online.step(model, x, y)[0], y_soft)).backward()


def test_three_line_loop_trains():
    torch.manual_seed(0)
    net = TinyNet()
    online = OnlineGenLabel(K, memory=0.9, gamma=0.5, seed=0)
    x, y = image_batch(64)
    for _ in range(5):
        logits, y_soft = online.step(net, x, y)
        loss = nn.functional.cross_entropy(logits, y_soft)
        net.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD (torch.optim's first import costs seconds)
            for p in net.parameters():
                p -= 0.05 * p.grad
    assert online.stats()["calls"] == 5 and torch.isfinite(loss)


@pytest.mark.parametrize("manifold", [False, True])
def test_checkpoint_resume_gives_the_same_next_relabel(tmp_path, manifold):
    def build():
        torch.manual_seed(0)
        net = TinyNet()
        model = ManifoldMixup(net, num_classes=K, seed=3) if manifold else net
        return model, OnlineGenLabel(K, memory=0.8, gamma=1.0, seed=3)

    model, online = build()
    for s in range(3):
        online.step(model, *image_batch(seed=s))
    torch.save({"model": model.state_dict(), "online": online.state_dict()}, tmp_path / "ck.pt")
    x, y = image_batch(seed=10)
    _, expected = online.step(model, x, y)

    model2, online2 = build()
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    model2.load_state_dict(ck["model"])
    online2.load_state_dict(ck["online"])
    _, got = online2.step(model2, x, y)
    assert torch.equal(got, expected)
    assert torch.equal(online2.density.ema_means, online.density.ema_means)


def test_is_a_module_whose_density_is_a_submodule():
    online = OnlineGenLabel(K, memory=0.9)
    assert isinstance(online, nn.Module) and dict(online.named_children())["density"] is \
        online.density
    holder = nn.Module()
    holder.online = online
    online.update(torch.randn(8, D), torch.arange(8) % K)
    assert "online.density.ema_means" in holder.state_dict()
    with pytest.raises(ValueError, match="update_every"):
        OnlineGenLabel(K, update_every=0)
    with pytest.raises(ValueError, match="clean_pass"):
        OnlineGenLabel(K, clean_pass="test")
    # a mixer instance is used, not changed: the seed gives OnlineGenLabel its own stream
    from mixkit.mixers.mixup import Mixup

    mine = Mixup(1.0, num_classes=K, seed=5)
    OnlineGenLabel(K, mixer=mine, seed=7).step(TinyNet(), *image_batch())
    assert mine.seed == 5 and mine._generator is None


@pytest.mark.parametrize("manifold", [False, True])
def test_update_every_n_steps_skips_the_clean_pass_in_between(manifold):
    torch.manual_seed(0)
    net = TinyNet().train()
    model = ManifoldMixup(net, num_classes=K, seed=1) if manifold else net
    online = OnlineGenLabel(K, memory=0.5, seed=1, update_every=3)
    calls = []
    handle = net.register_forward_pre_hook(lambda m, a: calls.append(torch.is_grad_enabled()))
    steps = []
    for s in range(7):
        before = len(calls)
        ema = online.density.ema_means.clone() if online.density.fitted else None
        logits, batch = online.step(model, *image_batch(seed=s), return_batch=True)
        steps.append(calls[before:])
        assert torch.isfinite(batch.y).all()
        if s % 3:  # relabeled with the density as it was
            assert torch.equal(online.density.ema_means, ema)
    handle.remove()
    # a clean pass without gradients on steps 0, 3, 6, then the mixed pass with them
    assert steps == [[False, True] if s % 3 == 0 else [True] for s in range(7)]
    assert int(online.density.steps) == 3 and online.steps == 7


@contextlib.contextmanager
def tensor_reads():
    """Count reads of tensor values on the host (.item(), bool(), int(), float(), ...) by the
    mixkit function that made them: on an accelerator each one is a host-device sync."""
    hits: collections.Counter = collections.Counter()
    names = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def counting(original):
        def read(self, *args, **kwargs):
            frames = [f for f in traceback.extract_stack()[:-1] if "/mixkit/" in f.filename]
            if frames:
                hits[(frames[-1].filename.split("/mixkit/")[1], frames[-1].name)] += 1
            return original(self, *args, **kwargs)
        return read

    for n, f in saved.items():
        setattr(torch.Tensor, n, counting(f))
    try:
        yield hits
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


# reads of the CPU generator's draws (a few numbers that never live on the device): not syncs
CPU_DRAWS = {("random.py", "sample_beta"), ("mixers/mixup.py", "mix_inputs"), ("mixers/base.py", "mix_labels"),
             ("nn/manifold.py", "_begin"),
             # the CPU-only shortcut of the rounding check (off the CPU it reads nothing)
             ("densities/base.py", "cannot_say")}
# OnlineGaussian.update's input checks (finite features, ids in range): 3 device syncs
UPDATE_CHECKS = {("_validation.py", "check_finite"), ("_validation.py", "check_id_range")}


@pytest.mark.parametrize("manifold", [False, True])
def test_step_reads_no_device_value_outside_the_density_update(manifold):
    torch.manual_seed(0)
    net = TinyNet().train()
    # validate=False: what runs on an accelerator (value checks are off there by default)
    model = ManifoldMixup(net, num_classes=K, seed=1, validate=False) if manifold else net
    online = OnlineGenLabel(K, memory=0.9, seed=1, update_every=2, validate=False)
    x, y = image_batch()
    online.step(model, x, y)  # the first step allocates the statistics
    with tensor_reads() as update_step:
        online.step(model, x, y)
        online.step(model, x, y)  # step 2: an update step
    with tensor_reads() as plain_step:
        online.step(model, x, y)  # step 3: no update
    assert set(plain_step) <= CPU_DRAWS, plain_step
    assert set(update_step) <= CPU_DRAWS | UPDATE_CHECKS, update_step
    assert sum(v for k, v in update_step.items() if k in UPDATE_CHECKS) <= 3
    assert not any(f.startswith("nn/") and (f, n) not in CPU_DRAWS for f, n in update_step)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_online_genlabel_on_cuda():
    torch.manual_seed(0)
    net = TinyNet().cuda()
    online = OnlineGenLabel(K, memory=0.9, seed=0)
    x, y = image_batch()
    for model in (net, ManifoldMixup(net, num_classes=K, seed=0)):
        logits, y_soft = online.step(model, x.cuda(), y.cuda())
        assert y_soft.is_cuda and online.density.ema_means.is_cuda
    # running sums on the GPU equal those on the CPU
    xs, ys = make_data()
    gpu = OnlineGaussian(K, memory=None).update(xs.cuda(), ys.cuda())
    cpu = OnlineGaussian(K, memory=None).update(xs, ys)
    torch.testing.assert_close(gpu.gaussian_parameters()[1].cpu(), cpu.gaussian_parameters()[1])
