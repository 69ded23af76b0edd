"""Manifold mixup: hidden-state mixing through hooks, eval transparency, feature capture."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mixkit.batch import MixedBatch
from mixkit.genlabel import GenLabel
from mixkit.latent import FeatureTap, find_classifier, frozen_features
from mixkit.mixers.base import Mixer
from mixkit.mixers.manifold import ManifoldMixup, default_layers, resnet_layers

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

K = 5
# the module that consumes each layer's output in a ResNet, to observe the mixed state
NEXT = {"input": "conv1", "maxpool": "layer1", "layer1": "layer2", "layer2": "layer3",
        "layer3": "layer4", "layer4": "global_pool"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=K)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3])


def test_defaults_follow_official_manifold_mixup(resnet):
    assert default_layers(resnet) == ["input", "layer1", "layer2"]
    assert resnet_layers(resnet) == ["input", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    tv = torchvision.models.resnet18(num_classes=K)
    assert default_layers(tv) == ["input", "layer1", "layer2"]
    assert isinstance(ManifoldMixup(resnet, num_classes=K), Mixer)
    with pytest.raises(ValueError, match="no default manifold mixup layers"):
        ManifoldMixup(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), num_classes=2)
    with pytest.raises(ValueError, match="no submodule 'layer9'"):
        ManifoldMixup(resnet, num_classes=K, layers=["input", "layer9"])


@pytest.mark.parametrize("layer", list(NEXT))
def test_mixes_hidden_state_at_each_layer(resnet, batch, layer):
    x, y = batch
    wrapper = ManifoldMixup(resnet, alpha=1.0, num_classes=K, layers=resnet_layers(resnet), seed=3)
    wrapper.train()
    seen: dict[str, torch.Tensor] = {}
    source = None if layer == "input" else resnet.get_submodule(layer)
    # registered before the wrapper's hook, so it sees the state before mixing ...
    h1 = (source.register_forward_hook(lambda m, a, out: seen.setdefault("h", out.detach()))
          if source is not None else None)
    # ... and the next module's input is the state after mixing
    h2 = resnet.get_submodule(NEXT[layer]).register_forward_pre_hook(
        lambda m, a: seen.setdefault("mixed", a[0].detach()))
    try:
        logits, y_soft = wrapper(x, y, layer=layer)
    finally:
        for h in (h1, h2):
            if h is not None:
                h.remove()
    rec = wrapper.last_mix
    lam, idx = float(rec.lam[0]), rec.index
    h = x if layer == "input" else seen["h"]
    assert rec.info["layer"] == layer
    assert not torch.equal(idx, torch.arange(4))
    torch.testing.assert_close(seen["mixed"], lam * h + (1 - lam) * h[idx])
    onehot = torch.nn.functional.one_hot(y, K).float()
    torch.testing.assert_close(y_soft, lam * onehot + (1 - lam) * onehot[idx])
    assert logits.shape == (4, K) and rec.x.shape == (4, 512) and not rec.x.requires_grad
    # no hook is left behind
    for m in resnet.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_input_mixing_equals_mixing_by_hand(resnet, batch):
    x, y = batch
    wrapper = ManifoldMixup(resnet, num_classes=K, seed=0).train()
    logits, _ = wrapper(x, y, layer="input")
    lam, idx = float(wrapper.last_mix.lam[0]), wrapper.last_mix.index
    torch.testing.assert_close(logits, resnet(lam * x + (1 - lam) * x[idx]))


def test_eval_is_the_bare_model(resnet, batch):
    x, y = batch
    wrapper = ManifoldMixup(resnet, num_classes=K, seed=0).eval()
    ref = resnet.eval()(x)
    assert torch.equal(wrapper(x), ref)
    logits, y_soft = wrapper(x, y)
    assert torch.equal(logits, ref) and torch.equal(y_soft, torch.eye(K)[y])
    assert wrapper.last_mix is None
    # in train mode, wrapper(x) without labels is the bare model too
    wrapper.train()
    assert torch.equal(wrapper(x), resnet(x))
    wrapper.eval()


def test_layer_draws_are_seeded_and_cover_layers(resnet, batch):
    x, y = batch
    x = x[:, :, :16, :16]

    def layers(seed):
        w = ManifoldMixup(resnet, num_classes=K, seed=seed).train()
        out = []
        for _ in range(12):
            w(x, y)
            out.append((w.last_mix.info["layer"], float(w.last_mix.lam[0])))
        return out

    a = layers(5)
    assert a == layers(5)
    assert {name for name, _ in a} == {"input", "layer1", "layer2"}


def test_generator_state_round_trips(resnet, batch):
    x, y = batch
    w = ManifoldMixup(resnet, num_classes=K, seed=2).train()
    w(x, y)
    state = w.state_dict()
    w(x, y)
    expected = (w.last_mix.info["layer"], w.last_mix.lam, w.last_mix.index)
    w2 = ManifoldMixup(resnet, num_classes=K, seed=99).train()
    w2.load_state_dict(state)
    w2(x, y)
    got = (w2.last_mix.info["layer"], w2.last_mix.lam, w2.last_mix.index)
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2])
    clone = copy.deepcopy(w)  # pickling keeps the stream too
    clone(x, y)
    w(x, y)
    assert torch.equal(clone.last_mix.lam, w.last_mix.lam)


def test_features_for_relabel_match_forward_head(resnet, batch):
    x, y = batch
    resnet.eval()
    with FeatureTap(resnet) as tap:
        resnet(x)
    ref = resnet.forward_head(resnet.forward_features(x), pre_logits=True)
    torch.testing.assert_close(tap.get(), ref)
    assert find_classifier(resnet) is resnet.fc
    tv = torchvision.models.resnet18(num_classes=K).eval()
    with FeatureTap(tv) as t1, torch.no_grad():
        tv(x)
    with FeatureTap(tv, "avgpool") as t2, torch.no_grad():
        tv(x)
    torch.testing.assert_close(t1.get(), t2.get())


def test_relabel_on_penultimate_features(resnet, batch):
    x, y = batch
    # a density over penultimate features of the clean batch
    fit_x = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    z = frozen_features(resnet)(fit_x)
    gl = GenLabel("gaussian", covariance="spherical", top_k=2).fit(z, torch.arange(K).repeat(2))
    wrapper = ManifoldMixup(resnet, num_classes=K, seed=4, relabel=gl).train()
    logits, y_soft = wrapper(x, y)
    rec = wrapper.last_mix
    assert isinstance(rec, MixedBatch) and "genlabel" in rec.info
    torch.testing.assert_close(y_soft.sum(1), torch.ones(4))
    assert int((y_soft > 0).sum(1).max()) <= 2  # top-2 rule
    # the same relabel, done by hand on the recorded features
    again = gl(MixedBatch(rec.x, rec.y_mix, rec.lam, rec.index, rec.labels, rec.y_mix))
    torch.testing.assert_close(again.y, y_soft)
    resnet.eval()


def test_frozen_features_is_eval_no_grad_and_chunked(resnet, batch):
    x, _ = batch
    resnet.train()
    fmap = frozen_features(resnet, batch_size=3)
    z = fmap(x)
    assert not resnet.training and not z.requires_grad and z.shape == (4, 512)
    torch.testing.assert_close(z, resnet.forward_head(resnet.forward_features(x), pre_logits=True))
    gl = GenLabel("gaussian", covariance="diag", feature_map=fmap)
    gl.fit(torch.cat([x, x + 0.1]), torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]))
    post, dead = gl.posterior(x)
    assert post.shape == (4, 2) and not bool(dead.any())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_manifold_mixup_on_cuda(batch):
    x, y = batch
    model = timm.create_model("resnet18", pretrained=False, num_classes=K).cuda()
    wrapper = ManifoldMixup(model, num_classes=K, seed=0).train()
    logits, y_soft = wrapper(x.cuda(), y.cuda(), layer="layer1")
    assert logits.is_cuda and y_soft.is_cuda and wrapper.last_mix.x.is_cuda
