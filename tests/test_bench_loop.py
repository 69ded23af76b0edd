"""The harness's one-model training loop (benchmarks/loop.py) and its FGSM (benchmarks/attacks.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mixkit
from benchmarks.attacks import fgsm
from benchmarks.loop import train_module


def _data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _net(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


def test_loop_repeats_the_hand_written_loop_exactly() -> None:
    """Same row orders, same mixup draws from the shared generator, same SGD and decay steps."""
    x, y = _data()
    mixer = mixkit.Mixup(1.0, num_classes=2)
    ref = _net()
    g = torch.Generator().manual_seed(5)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 3], 0.1)
    for _ in range(4):
        for rows in torch.randperm(40, generator=g).split(16):
            mb = mixer(x[rows], y[rows], generator=g)
            loss = F.cross_entropy(ref(mb.x), mb.y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            opt.step()
        sched.step()

    net = _net()
    g2 = torch.Generator().manual_seed(5)

    def step_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        mb = mixer(xb, yb, generator=g2)
        return F.cross_entropy(net(mb.x), mb.y)

    out = train_module(net, step_loss, x, y, epochs=4, batch_size=16, generator=g2, lr=0.1,
                       milestones=[2, 3], clip_norm=0.5)
    assert out.best_epoch == 4 and out.scores == []
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(g.get_state(), g2.get_state())  # the generator was consumed identically


def test_best_val_returns_the_best_epochs_state() -> None:
    x, y = _data()
    net = _net()
    scripted = iter([0.2, 0.9, 0.5, 0.9, 0.1])  # epoch 2 is best; epoch 4 ties and must not win
    seen: list[dict[str, torch.Tensor]] = []
    modes: list[bool] = []

    def select(model: nn.Module) -> float:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        modes.append(model.training or torch.is_grad_enabled())
        return next(scripted)

    out = train_module(net, lambda xb, yb: F.cross_entropy(net(xb), yb), x, y, epochs=5, batch_size=8,
                       generator=torch.Generator().manual_seed(0), lr=0.1, milestones=[],
                       select=select, score="best_val")
    assert out.best_epoch == 2 and out.scores == [0.2, 0.9, 0.5, 0.9, 0.1]
    assert not any(modes)  # scored in eval mode without gradients
    assert not torch.equal(seen[1]["0.weight"], seen[4]["0.weight"])  # training moved on after epoch 2
    for key, value in net.state_dict().items():  # the model holds epoch 2's parameters
        assert torch.equal(value, seen[1][key]) and torch.equal(out.state[key], seen[1][key])

    last = train_module(net, lambda xb, yb: F.cross_entropy(net(xb), yb), x, y, epochs=3, batch_size=8,
                        generator=torch.Generator().manual_seed(0), lr=0.1, milestones=[],
                        select=lambda m: 1.0 / (1 + len(seen)), score="last")
    assert last.best_epoch == 3 and len(last.scores) == 3


@pytest.mark.parametrize("clip", [None, 0.01])
def test_clipping_bounds_the_step(clip) -> None:
    """One plain SGD step (lr 1, no momentum, no decay) moves the parameters by the gradient,
    whose norm clipping caps at ``clip_norm``."""
    x, y = _data()
    net = _net()
    before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
    loss_fn = lambda xb, yb: 100 * F.cross_entropy(net(xb), yb)  # noqa: E731 - a large gradient
    grad = torch.autograd.grad(loss_fn(x, y), list(net.parameters()))
    full = float(torch.cat([g.flatten() for g in grad]).norm())
    train_module(net, loss_fn, x, y, epochs=1, batch_size=len(x), generator=torch.Generator().manual_seed(0),
                 lr=1.0, momentum=0.0, weight_decay=0.0, milestones=[], clip_norm=clip)
    moved = float((torch.cat([p.detach().flatten() for p in net.parameters()]) - before).norm())
    assert full > 1.0
    assert moved == pytest.approx(full if clip is None else clip, rel=1e-4)


def test_loop_refuses_best_val_without_a_validation_score() -> None:
    x, y = _data()
    net = _net()
    with pytest.raises(ValueError, match="needs select"):
        train_module(net, lambda xb, yb: F.cross_entropy(net(xb), yb), x, y, epochs=1, batch_size=8,
                     generator=torch.Generator(), lr=0.1, milestones=[], score="best_val")
    with pytest.raises(ValueError, match="score must be one of"):
        train_module(net, lambda xb, yb: F.cross_entropy(net(xb), yb), x, y, epochs=1, batch_size=8,
                     generator=torch.Generator(), lr=0.1, milestones=[], score="best_test")


def test_fgsm_on_a_logistic_model_is_its_closed_form() -> None:
    """Logistic loss ``softplus(-s w.x - s b)`` (``s = +-1``) has ``grad_x = -s sigmoid(.) w``, so
    FGSM moves every row by ``-eps * s * sign(w)``."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.tensor([1.5, -0.5, 0.0, 2.0]), torch.tensor(0.3)
    x = torch.randn(10, 4, generator=g)
    y = (torch.rand(10, generator=g) > 0.5).float()
    keep = x.clone()

    def loss_sum(xr: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(xr @ w + b, y, reduction="sum")

    x_adv = fgsm(loss_sum, x, 0.1)
    s = 2 * y - 1
    assert torch.allclose(x_adv, x - 0.1 * s[:, None] * torch.sign(w))
    assert torch.equal(x, keep) and not x_adv.requires_grad  # the input is untouched, the result detached
    assert torch.equal(x_adv[:, 2], x[:, 2])  # a zero gradient leaves the coordinate alone
    boxed = fgsm(loss_sum, x.clamp(-0.05, 0.05), 0.1, clamp=(-0.1, 0.1))
    assert boxed.abs().max() <= 0.1 and torch.allclose(
        boxed, (x.clamp(-0.05, 0.05) - 0.1 * s[:, None] * torch.sign(w)).clamp(-0.1, 0.1))
