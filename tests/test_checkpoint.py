"""Checkpoints carry the online relabeler: a module holding a model and an OnlineGenLabel
round-trips through torch.save / torch.load(weights_only=True) into a fresh one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixkit.nn import ManifoldMixup, OnlineGenLabel

K = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(x))).flatten(1))


class Trainer(nn.Module):
    """What a LightningModule holds: the model and the relabeler, as submodules."""

    def __init__(self, manifold: bool, update_every: int = 1):
        super().__init__()
        net = Net()
        self.model = ManifoldMixup(net, num_classes=K, seed=3) if manifold else net
        self.online = OnlineGenLabel(K, memory=0.8, gamma=0.5, seed=3, update_every=update_every)

    def training_step(self, x, y):
        logits, y_soft = self.online.step(self.model, x, y)
        loss = nn.functional.cross_entropy(logits, y_soft)
        self.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in self.parameters():
                p -= 0.05 * p.grad
        return loss


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(16) % K
    return torch.randn(16, 1, 8, 8, generator=g) + y[:, None, None, None].float(), y


@pytest.mark.parametrize("manifold, update_every", [(False, 1), (True, 1), (False, 3)])
def test_save_after_10_steps_and_resume_in_a_fresh_module(tmp_path, manifold, update_every):
    torch.manual_seed(0)
    trainer = Trainer(manifold, update_every).train()
    for s in range(10):
        trainer.training_step(*batch(s))
    state = trainer.state_dict()
    assert {"online.density.ema_means", "online.density.ema_vars",
            "online.density.class_counts"} <= set(state)
    torch.save(state, tmp_path / "ck.pt")

    torch.manual_seed(1)  # other initial weights: everything must come from the checkpoint
    fresh = Trainer(manifold, update_every).train()
    assert "ema_means" not in dict(fresh.online.density.named_buffers())  # not allocated yet
    fresh.load_state_dict(torch.load(tmp_path / "ck.pt", weights_only=True))
    assert fresh.online.density.fitted and fresh.online.steps == 10

    x, y = batch(42)
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(fresh.online.posterior(z), trainer.online.posterior(z))
    # the next steps relabel identically: density, draws and update schedule all resumed
    for s in range(3):
        want = trainer.online.step(trainer.model, x + s, y, return_batch=True)[1]
        got = fresh.online.step(fresh.model, x + s, y, return_batch=True)[1]
        assert torch.equal(got.y, want.y) and torch.equal(got.index, want.index)
    assert torch.equal(fresh.online.density.ema_means, trainer.online.density.ema_means)


def test_relabeler_state_alone_loads_with_weights_only(tmp_path):
    online = OnlineGenLabel(K, memory=None, covariance="diag", seed=0)
    online.update(torch.randn(20, 6), torch.arange(20) % K)
    torch.save(online.state_dict(), tmp_path / "o.pt")
    fresh = OnlineGenLabel(K, memory=None, covariance="diag")
    fresh.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
    z = torch.randn(7, 6)
    assert torch.equal(fresh.posterior(z), online.posterior(z))
    with pytest.raises(ValueError, match="memory"):  # a relabeler built otherwise refuses it
        OnlineGenLabel(K, memory=0.9, covariance="diag").load_state_dict(online.state_dict())
