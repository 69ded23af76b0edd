"""ManifoldMixup under torch.compile: every layer it may draw, whatever the first draw is.

The eager backend (``CompileCounter``, which also counts the graphs compiled) keeps the
tests on the CPU; the wrapper compiles the same way under the default backend.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from torch import nn

from mixkit.nn import ManifoldMixup, OnlineGenLabel
from mixkit.random import make_generator

K, B, STEPS = 10, 8, 20


@pytest.fixture(autouse=True)
def _one_thread_fresh_caches():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.compiler.reset()
    yield
    torch.compiler.reset()
    torch.set_num_threads(n)


def planned_layers(w: ManifoldMixup, seed: int, steps: int = STEPS) -> list[str]:
    """The layers a wrapper seeded with ``seed`` draws: the layer, then the mixer's draw."""
    g = make_generator(seed)
    out = []
    for _ in range(steps):
        out.append(w.layers[int(torch.randint(len(w.layers), (), generator=g))])
        w.mixer.draw(B, (B,), g)
    return out


def seed_for(w: ManifoldMixup, input_first: bool) -> int:
    """A seed whose draws cover every layer, starting at the input or at a hidden layer."""
    for seed in range(500):
        plan = planned_layers(w, seed)
        if set(plan) == set(w.layers) and (plan[0] == "input") == input_first:
            return seed
    raise AssertionError("no seed covers every layer")


def batch(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g), torch.randint(0, K, (B,), generator=g)


def train(step_fn, params, steps: int = STEPS) -> tuple[list[float], list[str]]:
    losses, layers = [], []
    for s in range(steps):
        x, y = batch(s)
        logits, rec = step_fn(x, y)
        loss = F.cross_entropy(logits, rec.y)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():  # plain SGD (torch.optim's first import costs seconds)
            for p in params:
                if p.grad is not None:
                    p -= 0.02 * p.grad
        losses.append(float(loss.detach()))
        layers.append(rec.info["layer"])
    return losses, layers


def compiled_run(make_model, input_first: bool, compare_eager: bool):
    torch.manual_seed(0)
    model = make_model()
    probe = ManifoldMixup(copy.deepcopy(model), num_classes=K)
    seed = seed_for(probe, input_first)
    reference = copy.deepcopy(model)
    w = ManifoldMixup(model, num_classes=K, seed=seed).train()
    counter = torch._dynamo.testing.CompileCounter()
    cw = torch.compile(w, backend=counter)
    graphs = []

    def step(x, y):
        out = cw(x, y, return_batch=True)
        graphs.append(counter.frame_count)
        return out

    losses, layers = train(step, list(w.parameters()))
    assert layers == planned_layers(w, seed)  # every default layer, in the seeded order
    assert set(layers) == set(w.layers) and (layers[0] == "input") == input_first
    assert all(torch.isfinite(torch.tensor(losses)))
    # the graphs are compiled at the first step; later draws of other layers add none
    assert graphs[0] > 0 and graphs[-1] <= graphs[0] + len(w.layers)
    if compare_eager:
        e = ManifoldMixup(reference, num_classes=K, seed=seed).train()
        eager_losses, eager_layers = train(lambda x, y: e(x, y, return_batch=True),
                                           list(e.parameters()))
        assert eager_layers == layers
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager_losses),
                                   rtol=1e-4, atol=1e-4)
    return graphs


@pytest.mark.parametrize("input_first", [True, False])
def test_compiled_resnet18_trains_at_every_default_layer(input_first):
    graphs = compiled_run(lambda: timm.create_model("resnet18", num_classes=K), input_first,
                          compare_eager=True)
    assert graphs[-1] == graphs[0]  # no recompile at all for a new layer


@pytest.mark.parametrize("input_first", [True, False])
def test_compiled_vit_tiny_trains_at_every_default_layer(input_first):
    def vit():
        return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4,
                                 num_classes=K)

    w = ManifoldMixup(vit(), num_classes=K)
    depth = len(w.model.blocks)
    deepest = max(int(name.split(".")[1]) for name in w.layers[1:])
    assert deepest + 1 >= depth / 2  # the defaults cover the first half of the blocks
    compiled_run(vit, input_first, compare_eager=False)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(x))).flatten(1))


def _train_small(call, w: ManifoldMixup, steps: int = 9) -> list[str]:
    layers = []
    for s in range(steps):
        x, y = batch(s, 8)
        logits, rec = call(x, y)
        F.cross_entropy(logits, rec.y).backward()
        assert torch.isfinite(logits).all()
        layers.append(rec.info["layer"])
    return layers


@pytest.mark.parametrize("how", ["wrapper.compile()", "inner.compile()", "torch.compile(inner)"])
def test_every_way_of_compiling(how):
    torch.manual_seed(0)
    inner = Small()
    if how == "inner.compile()":
        inner.compile(backend="eager")
    elif how == "torch.compile(inner)":
        inner = torch.compile(inner, backend="eager")
    w = ManifoldMixup(inner, num_classes=K, seed=seed_for(ManifoldMixup(Small(), num_classes=K),
                                                          True)).train()
    if how == "wrapper.compile()":
        w.compile(backend="eager")
    layers = _train_small(lambda x, y: w(x, y, return_batch=True), w)
    assert set(layers) == {"input", "layer1", "layer2"} and layers[0] == "input"
    # the compiled results are those of the eager wrapper
    torch.manual_seed(0)
    e = ManifoldMixup(Small(), num_classes=K, seed=w.seed).train()
    x, y = batch(99, 8)
    w.model.load_state_dict(e.model.state_dict()) if how != "torch.compile(inner)" else \
        inner._orig_mod.load_state_dict(e.model.state_dict())
    for layer in ("input", "layer1", "layer2"):
        got = w(x, y, layer=layer, generator=torch.Generator().manual_seed(1))
        want = e(x, y, layer=layer, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])


def test_model_compiled_and_run_before_wrapping_gets_a_clear_error():
    torch.manual_seed(0)
    inner = Small()
    inner.compile(backend="eager")
    inner(batch(0, 8)[0])  # traced without the wrapper's hooks, which are not guarded on
    w = ManifoldMixup(inner, num_classes=K, seed=0).train()
    x, y = batch(1, 8)
    with pytest.raises(RuntimeError, match="compiled graph predates the wrapper's hooks"):
        w(x, y, layer="layer1")
    torch.compiler.reset()  # what the message suggests: then it mixes
    _, rec = w(x, y, layer="layer1", return_batch=True)
    assert rec.info["layer"] == "layer1"


def test_online_genlabel_with_a_compiled_manifold_wrapper():
    torch.manual_seed(0)
    w = ManifoldMixup(Small(), num_classes=K, seed=0).train()
    cw = torch.compile(w, backend="eager")
    online = OnlineGenLabel(K, memory=0.9, gamma=1.0)
    for s in range(6):
        x, y = batch(s, 8)
        logits, rec = online.step(cw, x, y, return_batch=True)
        F.cross_entropy(logits, rec.y).backward()
        assert torch.isfinite(rec.y).all() and int((rec.y > 0).sum(1).max()) <= 2
    assert int(online.density.steps) == 6
