"""The harness's one training loop for suites that train one model at a time.

Why it exists: the genmix suite, the image suite and the F.4 feature-space benchmark
(:mod:`benchmarks.genmix_features`) train one ``nn.Module`` at a time (manifold mixup wraps
the model, GenMix and the online GenLabel of Algorithm 3 change the batch per step; see
:mod:`benchmarks.protocols.image`), and they used to write the same loop three times. Here
it is once: shuffled batches from a ``torch.Generator``, SGD with momentum and weight decay,
a multi-step learning-rate decay after given epochs, optional gradient-norm clipping, and
either the last epoch or the epoch of the best validation score. What differs between the
methods (vanilla, mixup, manifold mixup, GenMix, OnlineGenLabel, FeatureGenMix) is only the
loss of a batch, the ``step_loss`` callable.

The order of random draws is part of the contract, so that seeded runs repeat exactly:
every epoch draws ``torch.randperm(n, generator=generator)`` first, then ``step_loss`` runs
on each batch in turn (it may draw from the same generator). Per step: ``loss =
step_loss(xb, yb)``, ``zero_grad``, ``backward``, clipping, ``step``; the scheduler steps
once per epoch. The many small tabular models train instead as one batched model
(:func:`benchmarks.batched.train_batched`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the loss of one batch ``(xb, yb)``: the per-method part of the loop
StepLoss = Callable[[Tensor, Tensor], Tensor]
SCORES = ("last", "best_val")


@dataclass
class LoopResult:
    """What :func:`train_module` returns.

    ``model`` holds the selected parameters (already loaded), ``state`` is a copy of them,
    ``best_epoch`` is the 1-based epoch they come from (``epochs`` when ``score="last"``)
    and ``scores`` the validation score of every epoch (empty without ``select``).
    """

    model: nn.Module
    state: dict[str, Tensor]
    best_epoch: int
    scores: list[float] = field(default_factory=list)


def mixing_step(net: nn.Module, generator: torch.Generator, *, mixer: Callable[..., object] | None = None,
                wrapper: nn.Module | None = None) -> StepLoss:
    """The ``step_loss`` of the methods every suite runs: plain training (no ``mixer``, no
    ``wrapper``), input mixing by a mixkit mixer (``mixer(xb, yb, generator=)``, a
    ``MixedBatch``), or a model-side wrapper that mixes inside and returns ``(logits,
    y_soft)`` (``mixkit.nn.ManifoldMixup``); soft-target cross-entropy in every case."""

    def step_loss(xb: Tensor, yb: Tensor) -> Tensor:
        if wrapper is not None:
            logits, y_soft = wrapper(xb, yb, generator=generator)
            return F.cross_entropy(logits, y_soft)
        if mixer is not None:
            mb = mixer(xb, yb, generator=generator)
            return F.cross_entropy(net(mb.x), mb.y)
        return F.cross_entropy(net(xb), yb)

    return step_loss


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_module(model: nn.Module, step_loss: StepLoss, x: Tensor, y: Tensor, *, epochs: int,
                 batch_size: int, generator: torch.Generator, lr: float, milestones: Sequence[int],
                 momentum: float = 0.9, weight_decay: float = 1e-4, lr_decay: float = 0.1,
                 clip_norm: float | None = None, params: Iterable[nn.Parameter] | None = None,
                 train_modules: Sequence[nn.Module] | None = None,
                 select: Callable[[nn.Module], float] | None = None,
                 score: str = "last") -> LoopResult:
    """Train ``model`` on ``(x, y)`` with SGD; see the module docstring for the step order.

    Args:
        model: the network whose parameters are trained, selected and returned.
        step_loss: ``(xb, yb) -> loss`` of one batch (a scalar tensor with a graph).
        x, y: the training inputs and labels (rows are batched along dim 0).
        epochs, batch_size: passes over the data and rows per batch (the last may be smaller).
        generator: draws each epoch's row order (and whatever ``step_loss`` draws).
        lr, momentum, weight_decay: ``torch.optim.SGD``'s.
        milestones: epochs after which the learning rate is multiplied by ``lr_decay``
            (``torch.optim.lr_scheduler.MultiStepLR``; repeats decay twice).
        clip_norm: clip the gradient norm of ``params`` to this value before each step.
        params: what the optimizer trains (default ``model.parameters()``), e.g. a head only.
        train_modules: put in train mode at the start of each epoch (default ``(model,)``;
            pass a wrapper such as ``ManifoldMixup`` when it holds the model).
        select: ``model -> score`` on a validation set, called after every epoch with the
            model in eval mode and gradients off; higher is better.
        score: ``"last"`` keeps the final parameters; ``"best_val"`` those of the first
            epoch with the highest ``select`` score (needs ``select``).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if score == "best_val" and select is None:
        raise ValueError("score='best_val' needs select, a callable scoring the model on validation data")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same number of rows")
    params = list(model.parameters() if params is None else params)
    train_modules = (model,) if train_modules is None else tuple(train_modules)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), lr_decay)
    n = x.shape[0]
    scores: list[float] = []
    best_score, best_epoch, best_state = -float("inf"), epochs, None
    for e in range(epochs):
        for m in train_modules:
            m.train()
        for rows in torch.randperm(n, generator=generator).split(batch_size):
            loss = step_loss(x[rows], y[rows])
            opt.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
        sched.step()
        if select is not None:
            model.eval()
            with torch.no_grad():
                val = float(select(model))
            scores.append(val)
            if score == "best_val" and val > best_score:  # ties keep the earlier epoch
                best_score, best_epoch, best_state = val, e + 1, _snapshot(model)
    if best_state is not None:
        model.load_state_dict(best_state)
    return LoopResult(model=model, state=best_state or _snapshot(model), best_epoch=best_epoch,
                      scores=scores)
