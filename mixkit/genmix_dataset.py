"""Dataset-level GenMix (Algorithm 4 of the GenLabel paper): augment a training set offline.

For every class pair ``(c1, c2)`` :func:`genmix_dataset` generates ``n_aug`` points
``x`` whose likelihood ratio is ``p_{c1}(x) / (p_{c1}(x) + p_{c2}(x)) = lam`` within
``eps``, drops those where a third class intrudes (the two most probable classes
at ``x`` are not ``{c1, c2}``), and labels the rest
``p_{c1}/(p_{c1}+p_{c2}) e_{c1} + p_{c2}/(p_{c1}+p_{c2}) e_{c2}``. Train on the
original data plus these points with soft-label cross-entropy.

Convention: ``lam`` is the weight of the *first* class of the pair, as
``MixedBatch.lam`` is the weight of a row's own sample. The paper's eq. 37 writes
``p_j / (p_i + p_j) = lambda`` for the pair ``(i, j)``: its ``lambda`` weights the
*second* class, so the paper's ``(i, j, lambda)`` is ``(c1, c2, lam) = (j, i, lambda)``
here. At the paper's ``lambda = 1/2`` (Fig. 13/14) the two agree.

Two ways to find the points:

* ``"segment"`` (appendix F.2, GenMix+GM): draw a point of ``c1`` and one of ``c2``
  and solve for the ratio on the segment between them (:mod:`mixkit.genmix_solver`):
  in closed form for a density that offers one (``segment_quadratic``, as
  :class:`mixkit.Gaussian`: the QDA quadric ``log p_{c1} - log p_{c2} = logit(lam)`` cut
  with the segment is a quadratic in ``t``), by bisection for any other density;
* ``"projection"`` (appendix F.3, GenMix+GAN): start from the mixup point of such a
  pair and take projection steps on ``g(x) = log p_{c1}(x) - log p_{c2}(x) - logit(lam)``:
  ``x <- x - g(x) grad g(x) / |grad g(x)|^2`` (the Newton step onto the level set
  ``g = 0`` of the linearized ratio), each step limited to ``max_step`` times the
  pair's distance (the paper's "small ``delta``" under which the projections onto the
  class manifolds can be held fixed), until ``|ratio - lam| <= eps / 2``. It needs
  only ``log_prob`` and autograd on ``x``: for a GAN distance density
  (``log p_c(x) = -d(x, M_c) / T`` with ``d`` found by inverting ``G(z, c)``) the
  gradient of ``-d`` at fixed projections is exactly the paper's update direction.
  The paper starts from a random point and takes the two closest classes as the
  pair; Algorithm 4 loops over pairs, which is what is done here.

``method="auto"`` uses the segment when the density has a closed form and the
projection otherwise. All candidates of all pairs are solved at once (vectorized); a few
rounds draw new candidates for the pairs still short of ``n_aug``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from mixkit._validation import as_class_ids, check_finite, check_generator
from mixkit.densities.base import Density
from mixkit.genmix_solver import (
    check_density_ready,
    has_closed_form,
    intrudes,
    pair_log_probs,
    project_to_ratio,
    solve_segment,
)
from mixkit.random import make_generator, sample_beta

METHODS = ("auto", "segment", "projection")
SOURCES = ("auto", "data", "sample")


def class_pairs(num_classes: int, pairs: str | Tensor | list = "unordered") -> Tensor:
    """``(P, 2)`` long: ``"unordered"`` (``c1 < c2``), ``"ordered"`` (all ``c1 != c2``, the
    loop of Algorithm 4) or an explicit list of pairs, checked."""
    k = int(num_classes)
    if isinstance(pairs, str):
        if pairs == "unordered":
            return torch.triu_indices(k, k, 1).T.contiguous()
        if pairs == "ordered":
            grid = torch.cartesian_prod(torch.arange(k), torch.arange(k))
            return grid[grid[:, 0] != grid[:, 1]]
        raise ValueError(f"pairs must be 'unordered', 'ordered' or a (P, 2) list, got {pairs!r}")
    out = as_class_ids(torch.as_tensor(pairs).reshape(-1), k, "pairs").reshape(-1, 2)
    if bool((out[:, 0] == out[:, 1]).any()):
        raise ValueError("each pair must hold two different classes")
    return out


def genmix_dataset(
    density: Density,
    x: Tensor | None,
    y: Tensor | None,
    n_aug: int,
    *,
    lam: float | None = 0.5,
    alpha: float = 1.0,
    eps: float = 1e-3,
    method: str = "auto",
    pairs: str | Tensor | list = "unordered",
    source: str = "auto",
    max_rounds: int = 10,
    oversample: float = 2.0,
    tol: float = 1e-7,
    max_iter: int = 50,
    max_step: float = 0.25,
    generator: torch.Generator | None = None,
    warn_short: bool = True,
    return_info: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, Any]]:
    """Generate ``n_aug`` GenMix points per class pair; returns ``(x_aug, y_soft_aug)``.

    Args:
        density: a fitted :class:`mixkit.Density` (fitted on ``(N, d)`` features).
        x: ``(N, ...)`` training inputs whose pairs are mixed (flattened to ``(N, d)``);
            ``None`` with ``source="sample"``.
        y: ``(N,)`` class ids (or ``(N, K)`` soft labels: their argmax).
        n_aug: points wanted per class pair.
        lam: target ratio ``p_{c1}/(p_{c1}+p_{c2})`` for every point (``0.5``: the
            equiprobable points of Fig. 13/14); ``None`` draws one per candidate from
            ``Beta(alpha, alpha)``.
        alpha: Beta parameter when ``lam`` is ``None``.
        eps: accept a point when ``|ratio - lam| <= eps`` (eq. 37).
        method: ``"segment"``, ``"projection"`` or ``"auto"`` (see the module docstring).
        pairs: ``"unordered"`` (``K(K-1)/2`` pairs ``c1 < c2``, default), ``"ordered"``
            (all ``K(K-1)`` ordered pairs, Algorithm 4's loop) or a ``(P, 2)`` list.
        source: where the segment ends / starting pairs come from: ``"data"`` (random
            samples of ``x`` of each class), ``"sample"`` (``density.sample(n, c,
            generator)``, e.g. ``G(z, c)`` of a GAN; one call per class and round) or
            ``"auto"`` (data when ``x`` is given).
        max_rounds: rounds of fresh candidates for pairs still short of ``n_aug``.
        oversample: candidates per missing point in each round.
        tol: bisection tolerance on the segment parameter (densities without a closed form).
        max_iter: projection steps at most.
        max_step: projection steps are at most this fraction of the distance between
            the pair's two starting points.
        generator: ``torch.Generator`` for every draw (seeded runs repeat).
        warn_short: warn when some pair gets fewer than ``n_aug`` points (e.g. every
            candidate intrudes, like the class-1/class-2 pair of Fig. 14).
        return_info: also return a dict with ``pairs`` ``(P, 2)``, ``counts`` ``(P,)``,
            ``pair_index`` ``(M,)``, ``lam`` (the reached ratios, ``(M,)``), ``target``
            ``(M,)``, and the totals ``candidates``, ``within_eps``, ``intruding``,
            ``rounds``, ``method``.

    Returns:
        ``x_aug`` ``(M, d)`` in ``x``'s float dtype (default dtype for sampled
        sources), grouped by pair in the order of ``pairs``, and ``y_soft_aug``
        ``(M, K)`` float32 with mass only on the pair's two classes. ``M`` is
        ``n_aug * P`` unless some pair fell short (see ``warn_short``).
    """
    check_density_ready(density, "genmix_dataset")
    k = density.num_classes
    n_aug = int(n_aug)
    if n_aug < 0:
        raise ValueError(f"n_aug must be >= 0, got {n_aug}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if lam is not None and not 0.0 < float(lam) < 1.0:
        raise ValueError(f"lam must lie in (0, 1) (the ratio 0 or 1 is never reached), got {lam}")
    if lam is None and alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if int(max_rounds) < 1 or oversample <= 0 or int(max_iter) < 1 or max_step <= 0:
        raise ValueError("max_rounds, max_iter must be >= 1 and oversample, max_step positive")
    if method == "auto":
        method = "segment" if has_closed_form(density) else "projection"
    if source == "auto":
        source = "data" if x is not None else "sample"
    pair_t = class_pairs(k, pairs)
    gen = check_generator(generator) if generator is not None else make_generator(None)

    if source == "data":
        if x is None or y is None:
            raise ValueError("source='data' needs the training inputs x and labels y")
        x = torch.as_tensor(x)
        y = torch.as_tensor(y, device=x.device)
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(1)
        # any integer dtype, (N,) or (N, 1); float ids only when integral (else an error)
        y = as_class_ids(y, k, "y passed to genmix_dataset")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        flat = x.reshape(x.shape[0], -1)
        if not flat.is_floating_point():
            flat = flat.float()
        check_finite(flat, "x")
        device, dtype = flat.device, flat.dtype
        counts = torch.bincount(y, minlength=k).cpu()
        missing = sorted({int(c) for c in pair_t.reshape(-1) if int(counts[c]) == 0})
        if missing:
            raise ValueError(f"class(es) {missing} have no samples in x; drop them from pairs=")
        order = torch.argsort(y, stable=True)
        starts = (torch.cumsum(counts, 0) - counts).to(device)
        counts_d = counts.to(device)

        def draw(cls: Tensor) -> Tensor:
            u = torch.rand(cls.numel(), dtype=torch.float64, generator=gen).to(device)
            cnt = counts_d[cls]
            pos = (u * cnt).long().clamp_max(cnt - 1)
            return flat[order[starts[cls] + pos]]
    else:
        if not callable(getattr(density, "sample", None)):
            raise ValueError(
                f"source='sample' needs density.sample(n, c, generator), which "
                f"{type(density).__name__} lacks; pass the training data x, y instead"
            )
        ref = next(iter(density.buffers()), None)
        device = ref.device if ref is not None else torch.device("cpu")
        dtype = torch.get_default_dtype()

        def draw(cls: Tensor) -> Tensor:
            out = torch.empty(cls.numel(), density.dim, dtype=dtype, device=device)
            for c in torch.unique(cls).tolist():  # the sample API is per class
                rows = (cls == c).nonzero().flatten()
                out[rows] = density.sample(rows.numel(), c, generator=gen).to(device, dtype)
            return out

    density.follow_device(device, "genmix_dataset")
    if density.dim is not None:
        if source == "data" and flat.shape[1] != density.dim:
            raise ValueError(
                f"{type(density).__name__} was fitted on {density.dim}-dimensional data but x has "
                f"{flat.shape[1]} features per sample"
            )

    p = pair_t.shape[0]
    need = torch.full((p,), n_aug, dtype=torch.long)
    kept_x, kept_r, kept_pid, kept_target = [], [], [], []
    totals = {"candidates": 0, "within_eps": 0, "intruding": 0}
    rounds = 0
    for _ in range(int(max_rounds)):  # a few rounds, each vectorized over all candidates
        active = (need > 0).nonzero().flatten()
        if active.numel() == 0:
            break
        rounds += 1
        m = max(8, math.ceil(oversample * int(need.max())))
        pid = active.repeat_interleave(m)
        c1 = pair_t[pid, 0].to(device)
        c2 = pair_t[pid, 1].to(device)
        x1, x2 = draw(c1), draw(c2)
        if lam is None:
            target = sample_beta(alpha, alpha, pid.numel(), gen)
        else:
            target = torch.full((pid.numel(),), float(lam), dtype=torch.float64)
        target = target.to(device)
        if method == "segment":
            sol = solve_segment(density, x1, x2, c1, c2, target, tol=tol)
            t = sol.t.to(dtype)[:, None]
            pts = t * x1 + (1 - t) * x2
        else:
            pts = project_to_ratio(density, x1, x2, c1, c2, target, eps / 2, int(max_iter), max_step)
        pts = pts.to(dtype)
        with torch.no_grad():
            lp = density.log_prob(pts)
        lp1, lp2 = pair_log_probs(lp, c1, c2)
        ratio = torch.sigmoid((lp1 - lp2).double())
        good = torch.isfinite(torch.maximum(lp1, lp2)) & ~torch.isnan(lp1 - lp2)
        close = good & ((ratio - target).abs() <= eps)
        intr = close & intrudes(lp, c1, c2)
        ok = (close & ~intr).cpu().reshape(-1, m)
        rank = ok.long().cumsum(1) - 1
        keep = (ok & (rank < need[active][:, None])).reshape(-1)
        keep_d = keep.to(device)
        kept_x.append(pts[keep_d])
        kept_r.append(ratio[keep_d])
        kept_target.append(target[keep_d])
        kept_pid.append(pid[keep])
        need[active] -= keep.reshape(-1, m).sum(1)
        totals["candidates"] += pid.numel()
        totals["within_eps"] += int(close.sum())
        totals["intruding"] += int(intr.sum())

    pid_all = torch.cat(kept_pid) if kept_pid else torch.zeros(0, dtype=torch.long)
    order_out = torch.argsort(pid_all, stable=True)
    if kept_x:
        sel = order_out.to(device)
        x_aug, r_aug, t_aug = (torch.cat(v)[sel] for v in (kept_x, kept_r, kept_target))
    else:  # n_aug == 0
        x_aug = torch.zeros(0, density.dim, dtype=dtype, device=device)
        r_aug = torch.zeros(0, dtype=torch.float64, device=device)
        t_aug = r_aug.clone()
    pid_all = pid_all[order_out]
    pc = pair_t[pid_all].to(device)
    r32 = r_aug.to(torch.float32)[:, None]
    y_aug = r32 * torch.nn.functional.one_hot(pc[:, 0], k).float()
    y_aug = y_aug + (1 - r32) * torch.nn.functional.one_hot(pc[:, 1], k).float()
    got = torch.bincount(pid_all, minlength=p)
    short = (got < n_aug).nonzero().flatten().tolist()
    if short and warn_short:
        detail = ", ".join(f"{tuple(pair_t[i].tolist())}: {int(got[i])}" for i in short[:8])
        warnings.warn(
            f"genmix_dataset: {len(short)} of {p} class pair(s) got fewer than n_aug={n_aug} "
            f"points after {rounds} round(s) ({detail}{', ...' if len(short) > 8 else ''}); their "
            "candidates intrude on a third class or miss the ratio (raise max_rounds or eps)",
            stacklevel=2,
        )
    if not return_info:
        return x_aug, y_aug
    info = {
        "pairs": pair_t,
        "counts": got,
        "pair_index": pid_all,
        "lam": r_aug,
        "target": t_aug,
        "rounds": rounds,
        "method": method,
        **totals,
    }
    return x_aug, y_aug, info


__all__ = ["class_pairs", "genmix_dataset"]
