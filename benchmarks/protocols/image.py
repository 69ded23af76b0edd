"""The genmix and image suites' protocols (Table 15 / Fig. 14, Table 7).

These suites train one model at a time (:func:`benchmarks.loop.train_module`): manifold mixup
wraps the model it mixes inside, and GenMix and the online GenLabel of Algorithm 3 change
the batch per step, which the batched trainer (input-space mixing only) cannot express.

``paper`` for genmix follows the official synthetic code (``Syn_model.py``): the last epoch
scored, gradient norm clipped at 5, lr x0.1 after epochs 60 and 80 (Circle, Moon), the
4-layer net (64, 128, 128, 128), one lam per batch. ``rigorous``: the epoch of the best
accuracy on a validation draw, decay at 50%/75% of the epochs, Table 10's (64, 128, 128).

For images the official repository has no code; ``paper`` follows the paper's appendix (the
mixup / manifold-mixup recipes: 200 epochs, decay at 50%/75%, last epoch, AutoAttack for
robustness). On a CPU the epochs are capped (``epochs``) and FGSM stands in for
AutoAttack (not installed); ``rigorous`` is the harness's CPU-scale run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.protocols.base import Protocol, choose


@dataclass(frozen=True)
class GenmixProtocol(Protocol):
    score: str  # "last" or "best_val"
    clip_norm: float | None
    milestones: tuple[int, ...] | None  # absolute epochs (None: 50% / 75% of the epochs)
    hidden: tuple[int, ...]
    epochs: int
    seeds: int = 5
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ImageProtocol(Protocol):
    epochs: dict[str, int]
    score: str  # "last"
    attack: str  # what the robust column measures
    fgsm_eps: float
    seeds: int = 2
    notes: tuple[str, ...] = field(default_factory=tuple)


GENMIX = {
    "paper": GenmixProtocol(
        name="paper",
        summary=("The official synthetic code's protocol: last epoch scored, gradient norm "
                 "clipped at 5, SGD lr 0.1 (momentum 0.9, wd 1e-4) with x0.1 after epochs 60 "
                 "and 80, the (64, 128, 128, 128) FC net, one lam per batch, 100 epochs."),
        score="last", clip_norm=5.0, milestones=(60, 80), hidden=(64, 128, 128, 128), epochs=100),
    "rigorous": GenmixProtocol(
        name="rigorous",
        summary=("The harness's protocol: the epoch of the best accuracy on a validation draw, "
                 "SGD lr 0.1 with x0.1 at 50% and 75% of 100 epochs, no clipping, Table 10's "
                 "(64, 128, 128) FC net."),
        score="best_val", clip_norm=None, milestones=None, hidden=(64, 128, 128), epochs=100),
}

IMAGE = {
    "paper": ImageProtocol(
        name="paper",
        summary=("The paper's image recipe (appendix A.1, Table 13) at the largest CPU scale "
                 "we run: SGD lr 0.1, momentum 0.9, wd 1e-4, batch 128, decay at 50%/75%, last "
                 "epoch scored; the paper trains 200 epochs on full MNIST / CIFAR and attacks "
                 "with AutoAttack (not installed: FGSM reported instead)."),
        epochs={"digits": 200, "mnist5k": 40, "cifar10": 200, "cifar100": 200},
        score="last", attack="fgsm (AutoAttack not available)", fgsm_eps=0.05),
    "rigorous": ImageProtocol(
        name="rigorous",
        summary=("The harness's CPU-scale run: as the paper's recipe with fewer epochs (digits "
                 "40, 5k MNIST 20), last epoch scored, FGSM (L-inf 0.05 on [0, 1] pixels)."),
        epochs={"digits": 40, "mnist5k": 20, "cifar10": 200, "cifar100": 200},
        score="last", attack="fgsm", fgsm_eps=0.05),
}


def genmix(name: str) -> GenmixProtocol:
    return choose(GENMIX, name)


def image(name: str) -> ImageProtocol:
    return choose(IMAGE, name)
