"""The synthetic suite's protocols (Table 1's synthetic columns, Table 10).

``paper`` is what the official code does (``Syn_model.py``, ``2dcube_model.py`` of
UW-Madison-Lee-Lab/GenLabel_official): the *last* epoch is scored (the checkpoint named
"best" is overwritten every epoch), one lam per batch, gradients clipped at norm 5, lr x0.1
after epochs 20 and 50 (Two-circle) or 60 and 80 (Circle, Moon), none for the cubes, the
4-layer FC net (64, 128, 128, 128) on the 2-D sets, Two-circle's centres at x = +-1.2, and
GenLabel with a KDE whose kernel is ``bw^2 * class covariance`` (scipy's ``gaussian_kde``
with a fixed factor) and a top-2 label. Every method and seed is an independent run.

``rigorous`` is the harness's own: the epoch chosen on a separate validation draw, lam per
mixed pair (the paper's equations; one lam per batch reported as a second table), decay at
50% and 75% of the epochs, Table 10's nets, Two-circle's sets 3.0 apart, GenLabel with
mixkit's Gaussian and its default KDE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.protocols.base import Protocol, choose

DATASETS = ("circle", "moon", "two_circle", "cube2d", "cube3d")


@dataclass(frozen=True)
class SyntheticProtocol(Protocol):
    score: str  # "last" epoch, or "best_val": the epoch of the best validation accuracy
    lam_modes: tuple[str, ...]  # "per_pair" and/or "per_batch"; the first is the main table
    clip_norm: float | None
    milestones: dict[str, tuple[int, ...] | None]  # absolute epochs (None: 50%/75% of epochs)
    hidden: dict[str, tuple[int, ...]]
    epochs: dict[str, int]
    sizes: dict[str, dict[str, int]]  # generator size argument of train / val / test draws
    two_circle_shift: float  # distance between the two circle sets' centres
    gamma: dict[str, float]
    densities: dict[str, tuple[str, ...]]  # GenLabel densities run per dataset
    kde: dict[str, Any]  # mixkit KDE keyword arguments (bandwidth may be per dataset)
    top_k: int | None
    independent: bool  # every method its own lam, partners and batch order (not shared)
    seeds: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    notes: tuple[str, ...] = field(default_factory=tuple)


_SIZES_2D = {"train": 1000, "val": 1000, "test": 1000}
_SIZES_CUBE = {"train": 20, "val": 1000, "test": 10000}
_SIZES = {"circle": _SIZES_2D, "moon": _SIZES_2D, "two_circle": _SIZES_2D,
          "cube2d": _SIZES_CUBE, "cube3d": _SIZES_CUBE}
_EPOCHS = {"circle": 100, "moon": 100, "two_circle": 100, "cube2d": 40, "cube3d": 40}
_GAMMA = {"cube2d": 1.0, "cube3d": 0.8, "moon": 1.0, "circle": 0.8, "two_circle": 1.0}

PAPER = SyntheticProtocol(
    name="paper",
    summary=("The official code's protocol (Syn_model.py, 2dcube_model.py): last epoch scored, "
             "one lam per batch, gradient norm clipped at 5, SGD lr 0.1 with x0.1 after the "
             "milestone epochs, GenLabel with scipy-style KDE (kernel bw^2 x class covariance, "
             "+1e-8 I, fixed bw) and a top-2 label (the cubes: one Gaussian per class), every "
             "method and seed an independent run."),
    score="last",
    lam_modes=("per_batch",),
    clip_norm=5.0,
    milestones={"two_circle": (20, 50), "circle": (60, 80), "moon": (60, 80), "cube2d": (),
                "cube3d": ()},
    hidden={"circle": (64, 128, 128, 128), "moon": (64, 128, 128, 128),
            "two_circle": (64, 128, 128, 128), "cube2d": (64, 128), "cube3d": (64, 128)},
    epochs=_EPOCHS,
    sizes=_SIZES,
    two_circle_shift=2.4,
    gamma=_GAMMA,
    densities={"circle": ("kde",), "moon": ("kde",), "two_circle": ("kde",),
               "cube2d": ("gaussian",), "cube3d": ("gaussian",)},
    kde={"kernel_covariance": "class", "reg_covar": 1e-8,
         "bandwidth": {"two_circle": 0.1, "circle": 0.2, "moon": 0.2}},
    top_k=2,
    independent=True,
    notes=("The official validation draw is scored every epoch but never used for selection.",
           "Cubes: the official GenLabel uses unit-covariance Gaussians at the known centres; "
           "here mixkit's fitted Gaussian (class mean and covariance)."),
)

RIGOROUS = SyntheticProtocol(
    name="rigorous",
    summary=("The harness's protocol: the epoch of the best accuracy on a separate validation "
             "draw is scored on the test draw, lam per mixed pair (and per batch as a second "
             "table), SGD lr 0.1 with x0.1 at 50% and 75% of the epochs, no clipping, Table "
             "10's nets, GenLabel with mixkit's Gaussian and default KDE; the methods of a "
             "seed share batches, lam and partners (common random numbers)."),
    score="best_val",
    lam_modes=("per_pair", "per_batch"),
    clip_norm=None,
    milestones={d: None for d in DATASETS},
    hidden={"circle": (64, 128, 128), "moon": (64, 128, 128), "two_circle": (64, 128, 128),
            "cube2d": (64, 128), "cube3d": (64, 128)},
    epochs=_EPOCHS,
    sizes=_SIZES,
    two_circle_shift=3.0,
    gamma=_GAMMA,
    densities={d: ("gaussian", "kde") for d in DATASETS},
    kde={},
    top_k=None,
    independent=False,
)

PROTOCOLS = {"paper": PAPER, "rigorous": RIGOROUS}


def get(name: str) -> SyntheticProtocol:
    return choose(PROTOCOLS, name)


def kde_kwargs(protocol: SyntheticProtocol, dataset: str) -> dict[str, Any]:
    """mixkit ``KDE`` keyword arguments of ``protocol`` for ``dataset``."""
    kw = dict(protocol.kde)
    bw = kw.get("bandwidth")
    if isinstance(bw, dict):
        if dataset in bw:
            kw["bandwidth"] = bw[dataset]
        else:
            kw["bandwidth"] = "scott"
    return kw
