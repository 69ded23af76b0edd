"""Manifold mixup: hidden-state mixing through hooks, eval transparency, feature capture."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torchvision
from torch import nn

from mixkit.batch import MixedBatch
from mixkit.genlabel import GenLabel
from mixkit.mixers.base import Mixer
from mixkit.mixers.composite import MixChoice
from mixkit.mixers.cutmix import CutMix
from mixkit.mixers.mixup import Mixup
from mixkit.nn import FeatureTap, ManifoldMixup, default_layers, find_classifier, frozen_features
from mixkit.nn.layers import block_stack, resnet_layers

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


@pytest.fixture
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
    # a model wrapper that uses a mixer, not a mixer itself
    wrapper = ManifoldMixup(resnet, num_classes=K)
    assert not isinstance(wrapper, Mixer) and isinstance(wrapper.mixer, Mixup)
    assert wrapper.mixer.alpha == 2.0 and not hasattr(wrapper, "mix")
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
    # run before the wrapper's hook (prepend), so it sees the state before mixing ...
    h1 = (source.register_forward_hook(lambda m, a, out: seen.setdefault("h", out.detach()),
                                       prepend=True)
          if source is not None else None)
    # ... and the next module's input is the state after mixing
    h2 = resnet.get_submodule(NEXT[layer]).register_forward_pre_hook(
        lambda m, a: seen.setdefault("mixed", a[0].detach()))
    try:
        logits, rec = wrapper(x, y, layer=layer, return_batch=True)
    finally:
        for h in (h1, h2):
            if h is not None:
                h.remove()
    y_soft = rec.y
    lam, idx = float(rec.lam[0]), rec.index
    h = x if layer == "input" else seen["h"]
    assert rec.info["layer"] == layer
    assert not torch.equal(idx, torch.arange(4))
    torch.testing.assert_close(seen["mixed"], lam * h + (1 - lam) * h[idx])
    onehot = torch.nn.functional.one_hot(y, K).float()
    torch.testing.assert_close(y_soft, lam * onehot + (1 - lam) * onehot[idx])
    assert logits.shape == (4, K) and rec.x.shape == (4, 512) and not rec.x.requires_grad
    # the wrapper's hooks are persistent, and inert outside its own passes
    torch.testing.assert_close(resnet(x), wrapper.model(x))
    wrapper.remove_hooks()
    for m in resnet.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_input_mixing_equals_mixing_by_hand(resnet, batch):
    x, y = batch
    wrapper = ManifoldMixup(resnet, num_classes=K, seed=0).train()
    logits, rec = wrapper(x, y, layer="input", return_batch=True)
    lam, idx = float(rec.lam[0]), rec.index
    torch.testing.assert_close(logits, resnet(lam * x + (1 - lam) * x[idx]))


def test_eval_is_the_bare_model(resnet, batch):
    x, y = batch
    wrapper = ManifoldMixup(resnet, num_classes=K, seed=0).eval()
    ref = resnet.eval()(x)
    assert torch.equal(wrapper(x), ref)
    logits, y_soft = wrapper(x, y)
    assert torch.equal(logits, ref) and torch.equal(y_soft, torch.eye(K)[y])
    _, rec = wrapper(x, y, return_batch=True)  # the record of an unmixed batch
    assert rec.info["layer"] is None and torch.equal(rec.index, torch.arange(4))
    assert torch.equal(rec.lam, torch.ones(4)) and rec.x.shape == (4, 512)
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
            rec = w(x, y, return_batch=True)[1]
            out.append((rec.info["layer"], float(rec.lam[0])))
        return out

    a = layers(5)
    assert a == layers(5)
    assert {name for name, _ in a} == {"input", "layer1", "layer2"}


def test_generator_state_round_trips(resnet, batch):
    x, y = batch
    w = ManifoldMixup(resnet, num_classes=K, seed=2).train()
    w(x, y)
    state = w.state_dict()
    rec = w(x, y, return_batch=True)[1]
    expected = (rec.info["layer"], rec.lam, rec.index)
    w2 = ManifoldMixup(resnet, num_classes=K, seed=99).train()
    w2.load_state_dict(state)
    rec2 = w2(x, y, return_batch=True)[1]
    got = (rec2.info["layer"], rec2.lam, rec2.index)
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2])
    clone = copy.deepcopy(w)  # pickling keeps the stream too, and the copy hooks its own model
    a = clone(x, y, return_batch=True)[1]
    b = w(x, y, return_batch=True)[1]
    assert torch.equal(a.lam, b.lam) and a.info == b.info



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
    logits, rec = wrapper(x, y, return_batch=True)
    y_soft = rec.y
    assert isinstance(rec, MixedBatch) and "genlabel" in rec.info
    torch.testing.assert_close(y_soft.sum(1), torch.ones(4))
    assert int((y_soft > 0).sum(1).max()) <= 2  # top-2 rule
    # the same relabel, done by hand on the recorded features
    again = gl(MixedBatch(rec.x, rec.y_mix, rec.lam, rec.index, rec.labels, rec.y_mix))
    torch.testing.assert_close(again.y, y_soft)


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
    logits, rec = wrapper(x.cuda(), y.cuda(), layer="layer1", return_batch=True)
    assert logits.is_cuda and rec.y.is_cuda and rec.x.is_cuda


# -- default layers per architecture ----------------------------------------------------------


@pytest.mark.parametrize("name, stack, depth", [
    ("vit_tiny_patch16_224", "blocks", 12), ("deit_tiny_patch16_224", "blocks", 12),
    ("swin_tiny_patch4_window7_224", "layers", 4),
])
def test_transformer_defaults_cover_the_first_half(name, stack, depth):
    model = timm.create_model(name, pretrained=False, num_classes=K)
    layers = default_layers(model)
    assert block_stack(model) == (stack, depth)
    blocks = [int(n.rsplit(".", 1)[1]) for n in layers[1:]]
    assert layers[0] == "input" and all(n.startswith(stack + ".") for n in layers[1:])
    # the mixing points run to the end of the first half of the blocks, as
    # input/layer1/layer2 do on a 4-stage ResNet
    assert max(blocks) + 1 >= depth / 2 and max(blocks) < depth
    assert blocks == sorted(blocks) and blocks[0] <= 1
    if depth == 12:
        assert layers == ["input"] + [f"blocks.{i}" for i in range(6)]


def test_torchvision_feature_stacks_have_defaults():
    mb = torchvision.models.mobilenet_v2(num_classes=K)
    ef = torchvision.models.efficientnet_b0(num_classes=K)
    assert default_layers(mb) == ["input", "features.1", "features.3", "features.4",
                                  "features.6", "features.8", "features.9"]
    assert default_layers(ef) == ["input"] + [f"features.{i}" for i in range(5)]
    # a deep stack is thinned to MAX_BLOCK_POINTS points that still end at its middle
    deep = nn.Sequential()
    deep.blocks = nn.Sequential(*[nn.Linear(3, 3) for _ in range(24)])
    assert default_layers(deep) == ["input"] + [f"blocks.{i}" for i in (1, 3, 5, 7, 9, 11)]
    # and each default layer mixes: a MobileNet step at every one of them
    w = ManifoldMixup(mb, num_classes=K, seed=0).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    for layer in w.layers:
        logits, rec = w(x, y, layer=layer, return_batch=True)
        assert rec.info["layer"] == layer and torch.isfinite(logits).all()


# -- the mixer it uses ------------------------------------------------------------------------


def test_uses_any_mixer_through_the_contract(resnet, batch):
    x, y = batch
    cut = CutMix(1.0, num_classes=K, seed=0)
    w = ManifoldMixup(resnet, mixer=cut, seed=5, layers=["layer1"]).train()
    seen = {}
    h = resnet.layer1.register_forward_hook(lambda m, a, out: seen.setdefault("h", out.detach()),
                                            prepend=True)
    h2 = resnet.layer2.register_forward_pre_hook(lambda m, a: seen.setdefault("mixed", a[0]))
    try:
        _, rec = w(x, y, return_batch=True)
    finally:
        h.remove()
        h2.remove()
    # the same draw, made by hand with the wrapper's generator state: a box of layer1's shape
    g = torch.Generator().manual_seed(5)
    torch.randint(1, (), generator=g)  # the layer draw comes first
    hidden = seen["h"]
    params = cut.draw(4, hidden.shape, g)
    torch.testing.assert_close(seen["mixed"], cut.mix_inputs(hidden, params))
    torch.testing.assert_close(rec.y_mix, cut.mix_labels(torch.eye(K)[y], params))
    assert torch.equal(rec.lam, params.lam.float())
    assert cut.num_classes == K and cut._generator is None  # the caller's mixer is untouched

    blank = Mixup(1.0)
    w2 = ManifoldMixup(resnet, mixer=blank, num_classes=K)
    assert blank.num_classes is None and w2.mixer.num_classes == K
    with pytest.raises(ValueError, match="num_classes=3 but the mixer has num_classes=5"):
        ManifoldMixup(resnet, mixer=cut, num_classes=3)
    with pytest.raises(TypeError, match="only accepted with a mixer name"):
        ManifoldMixup(resnet, mixer=cut, alpha=1.0)
    with pytest.raises(TypeError, match="expected a registered mixer name"):
        ManifoldMixup(resnet, mixer=object())
    # per-sample lam through mixer keyword arguments
    ps = ManifoldMixup(resnet, num_classes=K, seed=0, per_sample=True).train()
    assert ps(x, y, return_batch=True)[1].lam.unique().numel() == 4


@pytest.mark.parametrize("mixer", [CutMix(num_classes=K, per_sample=True, seed=0),
                                   MixChoice(["mixup", "cutmix"], mode="elem", num_classes=K, seed=0)],
                         ids=["cutmix per sample", "mixup or cutmix per element"])
def test_mask_mixers_mix_hidden_states_that_require_grad(resnet, batch, mixer):
    """Box and per-element mixes of hidden states keep the graph (``where(..., out=)`` does
    not support autograd): the wrapper trains, and every output element passes a gradient of
    total weight 1 to the inputs it came from (one pasted element, or lam and 1 - lam)."""
    x, y = batch
    w = ManifoldMixup(resnet, mixer=mixer, layers=["layer1"]).train()
    logits, y_soft = w(x, y)
    torch.nn.functional.cross_entropy(logits, y_soft).backward()
    assert resnet.conv1.weight.grad is not None and torch.isfinite(resnet.conv1.weight.grad).all()
    h = torch.randn(4, 8, 6, 6, requires_grad=True)
    params = mixer.draw(4, h.shape, torch.Generator().manual_seed(3))
    out = mixer.mix_inputs(h, params)
    torch.testing.assert_close(out, mixer.mix_inputs(h.detach(), params), rtol=0, atol=0)
    out.sum().backward()
    torch.testing.assert_close(h.grad.sum(), torch.tensor(float(out.numel())))
    assert (h.grad >= 0).all()


def test_column_of_class_ids_keeps_labels(resnet, batch):
    # issue 13, finding 2: (B, 1) integer ids made the record's labels all 0
    x, y = batch
    w = ManifoldMixup(resnet, num_classes=K, seed=1).train()
    _, rec = w(x, y[:, None], return_batch=True)
    assert torch.equal(rec.labels, y) and torch.equal(rec.partner_labels, y[rec.index])
    torch.testing.assert_close(rec.y_mix.sum(1), torch.ones(4))


def test_a_layer_that_is_not_called_says_so(batch):
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Linear(8, 8)
            self.unused = nn.Linear(8, 8)
            self.fc = nn.Linear(8, K)

        def forward(self, x):
            return self.fc(self.layer1(x))

    w = ManifoldMixup(Skips(), num_classes=K, layers=["input", "unused"], seed=0).train()
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(RuntimeError, match="'unused' was not called .* list only layers"):
        w(x, y, layer="unused")
    with pytest.raises(ValueError, match="not one of the eligible layers"):
        w(x, y, layer="layer1")
    # the failed pass left nothing armed: the bare model and an input mix still work
    torch.testing.assert_close(w(x), w.model(x))
    assert w(x, y, layer="input")[0].shape == (4, K)
    # a hook that refuses its layer's output leaves nothing armed either
    class Pair(nn.Module):
        def forward(self, h):
            return h, h

    class Tupled(Skips):
        def __init__(self):
            super().__init__()
            self.pair = Pair()

        def forward(self, x):
            return self.fc(self.pair(self.layer1(x))[0])

    t = ManifoldMixup(Tupled(), num_classes=K, layers=["input", "pair"], seed=0).train()
    with pytest.raises(TypeError, match="'pair' returned tuple"):
        t(x, y, layer="pair")
    assert t._pass.target is None
    torch.testing.assert_close(t.model(x), t(x))
    with pytest.raises(ValueError, match="twice"):
        ManifoldMixup(Skips(), num_classes=K, layers=["input", "input"])
