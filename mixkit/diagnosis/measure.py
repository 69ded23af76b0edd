"""Measure, without training a classifier, whether mixup is likely to hurt on a dataset.

The paper names two mechanisms by which mixup hurts (section 3) and a condition
for GenLabel to fix them (a generative model that fits, > 95% training accuracy
of the generative classifier). Each is measured here on a sample of mixed points
``x = lam * x_i + (1 - lam) * x_j`` with ``lam ~ Beta(alpha, alpha)`` and the
pair ``(i, j)`` drawn uniformly and independently from the training split:

* **intrusion**: the share of mixed points whose nearest training point belongs
  to neither parent class (the paper's relaxed definition, section 3.1), and,
  per fitted density, whose Bayes label is neither parent class;
* **label conflict**: the share of mixed points whose top-1 label differs from
  the class of the nearest training point (the statistic of Fig. 6), for the
  mixup label and for the GenLabel label of each density;
* **fit**: per density, held-out log-likelihood per class, generative-classifier
  accuracy on the training and held-out splits, and time to fit.

Every share comes with a 95% Wilson interval over the sample of mixed points.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from mixkit._validation import as_class_ids, as_tensor, check_finite, check_int, check_positive, check_range
from mixkit.baselines import nearest_labels
from mixkit.data import iter_batches
from mixkit.genlabel import GenLabel
from mixkit.random import sample_beta
from mixkit.registry import resolve

#: densities fitted by default: fast to fit on a few thousand points (flow, vae, gan: when asked)
DEFAULT_DENSITIES = ("gaussian", "kde")
#: the paper's criterion for a generative model that fits (training accuracy of its classifier)
FIT_THRESHOLD = 0.95
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """A share ``count / n`` with its 95% Wilson interval ``[low, high]``."""

    count: int
    n: int
    value: float
    low: float
    high: float

    @classmethod
    def of(cls, count: int, n: int) -> Rate:
        if n == 0:
            return cls(0, 0, math.nan, 0.0, 1.0)
        p = count / n
        denom = 1 + _Z95**2 / n
        centre = (p + _Z95**2 / (2 * n)) / denom
        half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / denom
        return cls(int(count), int(n), p, max(0.0, centre - half), min(1.0, centre + half))

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass(frozen=True)
class PairRate:
    """The intrusion rate of mixed points of one unordered class pair."""

    classes: tuple[int, int]
    rate: Rate


@dataclass
class DensityReport:
    """How one density fits, and what GenLabel with it does to the mixed points."""

    name: str
    fit_seconds: float = math.nan
    train_accuracy: float = math.nan
    heldout_accuracy: float = math.nan
    heldout_loglik: list[float] = field(default_factory=list)
    heldout_loglik_mean: float = math.nan
    intrusion: Rate | None = None
    conflict: Rate | None = None
    fallback: int = 0
    error: str | None = None

    @property
    def fits(self) -> bool:
        """The paper's criterion: the generative classifier reaches 95% on the training split."""
        return self.error is None and self.train_accuracy >= FIT_THRESHOLD


@dataclass
class Diagnosis:
    """What :func:`diagnose` measured, and the recommendation it draws from it."""

    n: int
    d: int
    num_classes: int
    alpha: float
    n_mixed: int
    seed: int
    intrusion: Rate
    conflict_mixup: Rate
    worst_pairs: list[PairRate]
    densities: list[DensityReport]
    recommendation: str
    gamma: float | None
    density: str | None
    reason: str
    # the sample itself, for pictures (not serialised)
    samples: dict[str, Tensor] = field(default_factory=dict, repr=False)
    fitted: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("samples")
        out.pop("fitted")
        for rep, src in zip(out["densities"], self.densities):
            rep["fits"] = src.fits
        return out


def wilson(mask: Tensor) -> Rate:
    """The Rate of a boolean mask."""
    return Rate.of(int(mask.sum()), int(mask.numel()))


def _as_xy(x: Any, y: Any, input_key: str | None, label_key: str | None) -> tuple[Tensor, Tensor]:
    if y is None:  # a dataset, a loader or an iterable of batches
        xs, ys = zip(*iter_batches(x, input_key=input_key, label_key=label_key), strict=True)
        x, y = torch.cat([as_tensor(b, "x") for b in xs]), torch.cat([as_tensor(b, "y") for b in ys])
    x = as_tensor(x, "x")
    y = as_tensor(y, "y")
    if x.ndim < 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"need x of shape (N, d) with N > 0 and one label per row, got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    x = x.reshape(x.shape[0], -1).double()
    check_finite(x, "x")
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(1)
    y = as_class_ids(y, None, "y")
    if y.numel() and int(y.min()) < 0:
        raise ValueError("class ids must be non-negative; remap the labels to 0..K-1")
    return x, y


def _split(y: Tensor, holdout: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A stratified split: ``holdout`` of each class (at least one point where a class has two)."""
    order = torch.randperm(y.numel(), generator=generator)
    ys = y[order]
    rank = torch.empty_like(order)
    sorted_idx = torch.argsort(ys, stable=True)
    counts = torch.bincount(ys)
    starts = torch.cumsum(counts, 0) - counts
    rank[sorted_idx] = torch.arange(y.numel()) - starts[ys[sorted_idx]]
    n_hold = (counts.double() * holdout).floor().long().clamp(max=(counts - 1).clamp(min=0))
    n_hold = torch.where((counts >= 2) & (n_hold == 0) & (holdout > 0), torch.ones_like(n_hold), n_hold)
    held = rank < n_hold[ys]
    return order[~held], order[held]


def _density_report(name: str, spec: Any, x_tr: Tensor, y_tr: Tensor, x_ho: Tensor, y_ho: Tensor,
                    x_mix: Tensor, c_i: Tensor, c_j: Tensor, truth: Tensor, mix_top1: Tensor
                    ) -> tuple[DensityReport, Any]:
    """The report of one density and the fitted density (``None`` where it failed)."""
    rep, density = DensityReport(name), None
    try:
        density = resolve("density", spec)
        start = time.perf_counter()
        density.fit(x_tr.float(), y_tr)
        rep.fit_seconds = time.perf_counter() - start
        gl = GenLabel(density, gamma=1.0)
        prior = torch.log(density.class_prior()).float()
        with torch.no_grad():
            lp_tr = density.log_prob(x_tr.float())
            rep.train_accuracy = float(((lp_tr + prior).argmax(1) == y_tr).double().mean())
            if x_ho.shape[0]:
                lp_ho = density.log_prob(x_ho.float())
                rep.heldout_accuracy = float(((lp_ho + prior).argmax(1) == y_ho).double().mean())
                own = lp_ho.gather(1, y_ho[:, None]).squeeze(1).double()
                k = lp_ho.shape[1]
                sums = torch.zeros(k, dtype=torch.float64).index_add_(0, y_ho, own)
                counts = torch.bincount(y_ho, minlength=k).double()
                per_class = sums / counts  # NaN for a class without held-out points
                rep.heldout_loglik = [round(v, 4) for v in per_class.tolist()]
                finite = per_class[torch.isfinite(per_class)]
                rep.heldout_loglik_mean = float(finite.mean()) if finite.numel() else -math.inf
            y_gen, dead = gl.posterior(x_mix.float())
        top1 = torch.where(dead, mix_top1, y_gen.argmax(1))
        rep.fallback = int(dead.sum())
        rep.intrusion = wilson(~dead & (top1 != c_i) & (top1 != c_j))
        rep.conflict = wilson(top1 != truth)
    except Exception as exc:  # one density failing must not hide what the others say
        rep.error = f"{type(exc).__name__}: {exc}"
        density = None
    return rep, density


def _recommend(intrusion: Rate, conflict: Rate, reports: list[DensityReport]
               ) -> tuple[str, str | None, float | None, str]:
    """(recommendation, density, gamma, reason) from the measured rates; a reading, not a proof."""
    fitting = [r for r in reports if r.fits and r.conflict is not None]
    # the density whose labels conflict least with the data, then the one that generalises best
    best = min(fitting, key=lambda r: (r.conflict.value, -(r.heldout_accuracy if not math.isnan(r.heldout_accuracy)
                                                           else r.train_accuracy)), default=None)
    if intrusion.high < 0.01 and conflict.high < 0.05:
        reason = (f"mixed points rarely land on a third class (intrusion {intrusion}) and their mixup label "
                  f"rarely conflicts with the nearest class ({conflict}), so mixup's labels agree with the data")
        if best is not None:
            reason += (f"; {best.name} fits (train accuracy {100 * best.train_accuracy:.1f}%), so GenLabel is "
                       "available if you want the larger margins of section 3.2")
        return "mixup", None, None, reason
    if best is not None and best.conflict.high < conflict.low:  # fewer conflicts, beyond sampling error
        gamma = 1.0 if best.heldout_accuracy >= FIT_THRESHOLD else 0.5
        return "mixup+genlabel", best.name, gamma, (
            f"mixup's label conflicts with the nearest class for {conflict} of mixed points "
            f"(intrusion {intrusion}); with GenLabel({best.name!r}) the conflict is {best.conflict}, and "
            f"{best.name} fits (train {100 * best.train_accuracy:.1f}%, held-out "
            f"{100 * best.heldout_accuracy:.1f}%); start at gamma={gamma} and tune it by validation")
    notes = "; ".join(f"{r.name}: " + (r.error or f"train accuracy {100 * r.train_accuracy:.1f}%, conflict "
                                                   f"{r.conflict}") for r in reports) or "no density was fitted"
    why = (f"no density both fits (the paper's criterion: {100 * FIT_THRESHOLD:.0f}% training accuracy of its "
           f"classifier) and relabels with fewer conflicts ({notes})")
    if intrusion.value >= 0.05:
        return "no-mixup", None, None, f"{intrusion} of mixed points land nearest to a third class and {why}"
    return "mixup", None, None, (
        f"intrusion is moderate ({intrusion}), the mixup label conflicts with the nearest class for {conflict}, "
        f"and {why}; plain mixup, validated against no mixup, is the safer start")


def diagnose(
    x: Any,
    y: Any = None,
    *,
    alpha: float = 1.0,
    n_mixed: int = 4000,
    densities: Sequence[Any] = DEFAULT_DENSITIES,
    holdout: float = 0.2,
    standardize: bool = True,
    worst: int = 5,
    seed: int = 0,
    input_key: str | None = None,
    label_key: str | None = None,
    progress: bool = False,
) -> Diagnosis:
    """Will mixup hurt on this data, and which density should relabel it?

    Args:
        x, y: features ``(N, ...)`` (flattened) and class ids (or soft labels); or, with
            ``y=None``, a ``Dataset``, ``DataLoader`` or iterable of ``(x, y)`` / dict batches.
        alpha: the Beta parameter of the mixup you plan to use.
        n_mixed: mixed points drawn (the intervals narrow as ``1/sqrt(n_mixed)``).
        densities: registered names or :class:`mixkit.Density` instances to fit;
            by default the fast ones (``"gaussian"``, ``"kde"``).
        holdout: share of each class held out to score the densities.
        standardize: scale features to zero mean, unit variance (train statistics),
            as a training pipeline would, before distances and densities.
        worst: how many class pairs to list, worst intrusion first.
        seed: seed of every draw (split, pairs, lam): the same seed repeats the report.
        progress: print one line per stage to stderr.

    Returns a :class:`Diagnosis`; ``diagnosis.recommendation`` is ``"mixup"``,
    ``"mixup+genlabel"`` (with ``.density`` and a starting ``.gamma``) or ``"no-mixup"``,
    and ``.reason`` says which numbers led there.
    """
    alpha = check_positive("alpha", alpha)
    n_mixed = check_int("n_mixed", n_mixed, 1)
    holdout = check_range("holdout", holdout, 0.0, 0.9)
    worst = check_int("worst", worst, 0)
    seed = check_int("seed", seed)
    x, y = _as_xy(x, y, input_key, label_key)
    k = int(y.max()) + 1 if y.numel() else 0
    present = int((torch.bincount(y, minlength=k) > 0).sum()) if k else 0
    if present < 2:
        raise ValueError(f"diagnose needs at least two classes, got {present}; check the target column")
    g = torch.Generator().manual_seed(seed)
    say = _Progress(progress)
    tr, ho = _split(y, holdout, g)
    if standardize:
        mean, std = x[tr].mean(0), x[tr].std(0)
        x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    x_tr, y_tr, x_ho, y_ho = x[tr], y[tr], x[ho], y[ho]

    say("drawing mixed points")
    i = torch.randint(x_tr.shape[0], (n_mixed,), generator=g)
    j = torch.randint(x_tr.shape[0], (n_mixed,), generator=g)
    lam = sample_beta(alpha, alpha, n_mixed, g)
    x_mix = torch.lerp(x_tr[j], x_tr[i], lam[:, None])
    c_i, c_j = y_tr[i], y_tr[j]
    # the top-1 mixup label: argmax of lam e_ci + (1 - lam) e_cj (ties to the lower class id, as argmax)
    mix_top1 = torch.where((lam > 0.5) | ((lam == 0.5) & (c_i < c_j)) | (c_i == c_j), c_i, c_j)
    say("nearest training points")
    truth = nearest_labels(x_mix, x_tr, y_tr)
    intr_mask = (truth != c_i) & (truth != c_j)
    intrusion = wilson(intr_mask)
    conflict = wilson(mix_top1 != truth)

    lo, hi = torch.minimum(c_i, c_j), torch.maximum(c_i, c_j)
    pair_id = lo * k + hi
    n_pair = torch.bincount(pair_id, minlength=k * k)
    n_intr = torch.bincount(pair_id[intr_mask], minlength=k * k)
    rates = torch.where(n_pair > 0, n_intr.double() / n_pair.clamp(min=1), torch.zeros(()).double())
    order = torch.argsort(rates, descending=True, stable=True)
    worst_pairs = [PairRate((int(p) // k, int(p) % k), Rate.of(int(n_intr[p]), int(n_pair[p])))
                   for p in order[:worst].tolist() if n_intr[p] > 0]

    reports, fitted = [], {}
    for spec in densities:
        name = spec if isinstance(spec, str) else type(spec).__name__
        say(f"fitting and scoring density {name!r}")
        rep, density = _density_report(name, spec, x_tr, y_tr, x_ho, y_ho, x_mix, c_i, c_j, truth, mix_top1)
        reports.append(rep)
        if density is not None:
            fitted[name] = density
    rec, dens, gamma, reason = _recommend(intrusion, conflict, reports)
    say("done")
    return Diagnosis(
        n=int(y.numel()), d=int(x.shape[1]), num_classes=k, alpha=alpha, n_mixed=n_mixed, seed=seed,
        intrusion=intrusion, conflict_mixup=conflict, worst_pairs=worst_pairs, densities=reports,
        recommendation=rec, gamma=gamma, density=dens, reason=reason,
        samples={"x_train": x_tr, "y_train": y_tr, "x_mix": x_mix, "c_i": c_i, "c_j": c_j, "lam": lam,
                 "nearest": truth, "conflict": mix_top1 != truth, "intrusion": intr_mask},
        fitted=fitted,
    )


class _Progress:
    """One line per stage with the elapsed time, to stderr (the stages are few and long)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {stage}", file=sys.stderr, flush=True)
