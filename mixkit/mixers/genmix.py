"""GenMix (GenLabel paper, section 7.2 and appendix F): mix where the densities say.

Mixup places a mixed point at ``lam * x_i + (1 - lam) * x_j``. GenMix keeps the
segment between the two samples but moves along it to the point whose class
likelihood ratio is ``lam``, and labels it with that ratio, so every mixed point
sits on a level set of the generative classifier (at ``lam = 1/2``: on the
Bayes boundary of the two classes, the "equiprobable" points of Fig. 14).

Convention. For a row ``i`` with partner ``j = index[i]``, classes ``c_i != c_j``
and a drawn ``lam``, GenMix finds ``t`` in ``[0, 1]`` such that the point
``x(t) = t * x_i + (1 - t) * x_j`` satisfies

    p_{c_i}(x) / (p_{c_i}(x) + p_{c_j}(x)) = lam,

i.e. ``lam`` is the weight of the row's *own* class, as ``MixedBatch.lam`` is the
weight of the row's own input in mixup. The paper (eq. 37, Algorithm 4) writes
the same condition for a class pair ``(i, j)`` as ``p_j / (p_i + p_j) = lambda``:
its ``lambda`` is the weight of the *second* class of the pair, so the paper's
pair ``(i, j)`` with ``lambda`` is mixkit's pair ``(c_i, c_j) = (j, i)`` with
``lam = lambda``. Since ``lam ~ Beta(alpha, alpha)`` is symmetric and every
ordered class pair occurs, both conventions generate the same points.

Solving (:mod:`mixkit.genmix_solver`). ``f(t) = log p_{c_i}(x(t)) - log p_{c_j}(x(t))``
is set equal to ``logit(lam)``: in closed form when the density offers one (a
``segment_quadratic`` method: :class:`mixkit.Gaussian`, any covariance type, appendix
F.2), else by bisection, all pairs at once, one ``density.log_prob`` call on a ``(B, d)``
batch of midpoints per iteration, ``ceil(log2(1 / tol))`` iterations (at most
``max_iter``).

When ``logit(lam)`` is not reached on the segment the point is clamped to the place on
the segment whose ratio is closest to ``lam`` (an endpoint, or for the closed form the
vertex of the quadratic) and counted as ``clamped``; its label still is the ratio
actually reached there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mixkit._validation import as_class_ids, check_choice, check_int, check_positive, check_range
from mixkit.batch import MixedBatch
from mixkit.densities.base import Density
from mixkit.genmix_solver import (
    SEGMENT_METHODS,
    check_density_ready,
    flat_inputs,
    intrudes,
    pair_log_probs,
    resolve_method,
    solve_dtype,
    solve_segment,
)
from mixkit.mixers.base import Mixer, MixParams, fixed_lam
from mixkit.random import sample_beta
from mixkit.registry import resolve

INTRUSION_MODES = ("discard", "relabel")
SAME_CLASS_MODES = ("mixup", "keep")


# -- the mixer --------------------------------------------------------------------------------


class GenMix(Mixer):
    """GenMix: mixed points placed where the class likelihood ratio is lam, labeled by it.

    For each row ``i`` and its partner ``j = index[i]`` of different classes, with
    ``lam ~ Beta(alpha, alpha)`` (or the fixed ``lam``), the mixed point is the
    ``x = t x_i + (1 - t) x_j``, ``t`` in ``[0, 1]``, where
    ``p_{c_i}(x) / (p_{c_i}(x) + p_{c_j}(x)) = lam`` (``lam`` is the weight of the
    row's own class; the paper's eq. 37 writes the weight of the pair's second
    class, see the module docstring), labeled
    ``p_{c_i}/(p_{c_i}+p_{c_j}) e_{c_i} + p_{c_j}/(p_{c_i}+p_{c_j}) e_{c_j}``.

    Args:
        density: a fitted :class:`mixkit.Density`, or a registered density name
            (then call :meth:`fit` before mixing; ``**density_kwargs`` build it).
        alpha: Beta parameter of ``lam``.
        num_classes: number of classes; taken from the density when ``None``.
        lam: a fixed ratio for every pair instead of Beta draws (``0.5``: the
            equiprobable points of the paper's Fig. 13/14).
        intrusion: what to do when the two most probable classes at the placed
            point are not ``{c_i, c_j}`` (a third class intrudes):
            ``"discard"`` (the paper) drops those rows from the batch;
            ``"relabel"`` labels them with the density posterior over all classes
            (uniform prior), as GenLabel would.
        same_class: rows whose partner has the same class: ``"mixup"`` mixes them
            like mixup with ``t = lam`` (label: the mixed input labels, i.e. the
            class), ``"keep"`` leaves the row's own sample as it is (``t = 1``).
            Intrusion is only tested on pairs of different classes.
        method: ``"auto"`` (the closed form when the density offers one, i.e. has a
            ``segment_quadratic`` method as :class:`mixkit.Gaussian`; bisection
            otherwise), ``"closed_form"`` or ``"bisection"``.
        tol: bisection tolerance on ``t``: ``ceil(log2(1/tol))`` iterations, each
            one ``density.log_prob`` call on a ``(B, d)`` batch.
        max_iter: cap on the bisection iterations (``None``: no cap).
        seed, label_dtype, validate: see :class:`mixkit.Mixer`.

    The returned :class:`MixedBatch` holds the placed points ``x``, the labels
    ``y``, ``lam`` = the ratio ``p_{c_i}/(p_{c_i}+p_{c_j})`` actually reached (for
    same-class rows: ``t``), the partner ``index``, the ``labels``, and ``y_mix``,
    the mixup label at the same ``t`` (``t y_i + (1 - t) y_j``), for reference.
    ``info["genmix"]`` counts (0-d tensors, not synced): ``n`` (rows in),
    ``same_class``, ``solved`` and ``clamped`` (different-class pairs whose ratio
    was / was not reachable on the segment), ``intruding``, ``discarded``, and
    ``fallback`` (pairs where both densities are 0 at the point: they keep the
    mixup label). With ``intrusion="discard"`` the batch can shrink, even to
    zero rows (skip that step). Inputs of any shape ``(B, ...)`` are flattened
    for the density, which must have been fitted on ``(N, prod(...))`` data.
    """

    def __init__(
        self,
        density: str | Density = "gaussian",
        alpha: float = 1.0,
        num_classes: int | None = None,
        *,
        lam: float | None = None,
        intrusion: str = "discard",
        same_class: str = "mixup",
        method: str = "auto",
        tol: float = 1e-4,
        max_iter: int | None = None,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
        validate: bool | None = None,
        **density_kwargs: Any,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype, validate=validate)
        alpha = check_positive("alpha", alpha)
        lam = None if lam is None else check_range("lam", lam, 0.0, 1.0)
        check_choice("intrusion", intrusion, INTRUSION_MODES)
        check_choice("same_class", same_class, SAME_CLASS_MODES)
        check_choice("method", method, SEGMENT_METHODS)
        tol = check_positive("tol", tol)
        max_iter = check_int("max_iter", max_iter, 1, allow_none=True)
        density = resolve("density", density, Density, **density_kwargs)
        resolve_method(density, method)  # method='closed_form' needs the density's closed form
        self.density = density
        self.alpha = float(alpha)
        self.lam = None if lam is None else float(lam)
        self.intrusion = intrusion
        self.same_class = same_class
        self.method = method
        self.tol = float(tol)
        self.max_iter = None if max_iter is None else int(max_iter)
        self.reset_stats()

    def extra_repr(self) -> str:
        lam = f"lam={self.lam}" if self.lam is not None else f"alpha={self.alpha}"
        return (
            f"density={type(self.density).__name__}, {lam}, num_classes={self.num_classes}, "
            f"intrusion={self.intrusion!r}, same_class={self.same_class!r}, method={self.method!r}"
        )

    def fit(self, x: Tensor, y: Tensor) -> GenMix:
        """Fit the density on training inputs (flattened) and labels; returns ``self``.

        ``y``: class ids ``(N,)`` or ``(N, 1)`` of any integer dtype (integral floats are
        converted, others refused), or soft labels ``(N, K)`` (their argmax).
        """
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(1)
        y = as_class_ids(y, self.num_classes, "y passed to GenMix.fit")
        self.density.fit(x.reshape(x.shape[0], -1), y.to(x.device))
        return self

    def prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        check_density_ready(self.density)
        k = self.density.num_classes
        if self.num_classes is None:
            self.num_classes = k
        elif k is not None and k != self.num_classes:
            raise ValueError(
                f"the density knows {k} classes but the mixer has num_classes={self.num_classes}"
            )
        return super().prepare(x, y)

    def draw(self, n: int, shape: torch.Size | tuple[int, ...], generator: torch.Generator,
             lam: float | Tensor | None = None) -> MixParams:
        """Draw the target ratios ``lam`` ``(n,)`` (float64, CPU) and the partner permutation."""
        if lam is not None:
            lam_t = fixed_lam(lam, n)
        elif self.lam is None:
            lam_t = sample_beta(self.alpha, self.alpha, n, generator)
        else:
            lam_t = torch.full((n,), self.lam, dtype=torch.float64)
        return MixParams(lam_t, torch.randperm(n, generator=generator))

    def mix_inputs(self, x: Tensor, params: MixParams) -> Tensor:
        raise TypeError(
            "GenMix places points from the class labels of each pair, so it cannot mix inputs "
            "alone (e.g. hidden states); call it on (x, y) or use mixer.apply(x, y_soft, labels, params)"
        )

    def apply(self, x: Tensor, y_soft: Tensor, labels: Tensor, params: MixParams) -> MixedBatch:
        density = self.density
        check_density_ready(density)
        n, dev = x.shape[0], x.device
        density.follow_device(dev, "GenMix")
        lam64 = params.lam
        index = params.index.to(dev, non_blocking=True)
        flat = flat_inputs(x, density)
        partner = flat[index]
        c_i, c_j = labels, labels[index]
        same = c_i == c_j
        sdt = solve_dtype(dev)
        lam_d = lam64.to(dev, sdt, non_blocking=True)

        sol = solve_segment(
            density, flat, partner, c_i, c_j, lam_d,
            method=self.method, tol=self.tol, max_iter=self.max_iter,
        )
        t_same = lam_d if self.same_class == "mixup" else torch.ones_like(lam_d)
        t = torch.where(same, t_same, sol.t)

        tx = t.to(x.dtype)[:, None]
        x_flat = tx * flat + (1 - tx) * partner  # exact at t = 1 and t = 0
        score_dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.no_grad():
            lp = density.log_prob(x_flat.to(score_dtype))
        lp_i, lp_j = pair_log_probs(lp, c_i, c_j)
        dead = ~torch.isfinite(torch.maximum(lp_i, lp_j)) | torch.isnan(lp_i - lp_j)
        diff = ~same
        ratio = torch.sigmoid((lp_i - lp_j).to(sdt)).nan_to_num(0.5)

        ydt = y_soft.dtype
        t_y = t.to(ydt)[:, None]
        y_mix = t_y * y_soft + (1 - t_y) * y_soft[index]
        k = y_soft.shape[1]
        # scatter, not F.one_hot: one_hot reads the ids' range (a host sync on accelerators)
        oh_i = torch.zeros((n, k), dtype=ydt, device=dev).scatter_(1, c_i[:, None], 1.0)
        oh_j = torch.zeros((n, k), dtype=ydt, device=dev).scatter_(1, c_j[:, None], 1.0)
        r_y = ratio.to(ydt)[:, None]
        y_gen = r_y * oh_i + (1 - r_y) * oh_j
        plain = same | dead  # rows that keep the mixup label at t
        y = torch.where(plain[:, None], y_mix, y_gen)
        lam_out = torch.where(plain, t, ratio)

        intruding = diff & ~dead & intrudes(lp, c_i, c_j)
        if self.intrusion == "relabel":
            post = torch.softmax(lp.to(torch.promote_types(ydt, torch.float32)), 1).to(ydt)
            y = torch.where(intruding[:, None], post, y)
        zero = torch.zeros((), dtype=torch.long, device=dev)
        counts = {
            "n": zero + n,
            "same_class": same.sum(),
            "solved": (diff & sol.solved).sum(),
            "clamped": (diff & ~sol.solved).sum(),
            "intruding": intruding.sum(),
            "discarded": intruding.sum() if self.intrusion == "discard" else zero,
            "fallback": (diff & dead).sum(),
        }
        for key, val in counts.items():
            self._totals[key] = self._totals[key] + val
        self._calls += 1
        batch = MixedBatch(
            x_flat.reshape(x.shape), y, lam_out.to(torch.float32), index, labels, y_mix,
            info={"genmix": counts},
        )
        if self.intrusion == "discard":
            out = batch.select(~intruding)
            out.info = batch.info
            return out
        return batch

    def stats(self) -> dict[str, int]:
        """Totals of the ``info["genmix"]`` counts since construction or :meth:`reset_stats`."""
        return {"calls": self._calls, **{k: int(v) for k, v in self._totals.items()}}

    def reset_stats(self) -> None:
        self._calls = 0
        self._totals: dict[str, Tensor | int] = dict.fromkeys(
            ("n", "same_class", "solved", "clamped", "intruding", "discarded", "fallback"), 0
        )


__all__ = ["GenMix", "INTRUSION_MODES", "SAME_CLASS_MODES"]
