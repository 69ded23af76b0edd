"""GenMix's solver: where on a segment (or near a pair) the class likelihood ratio is lam.

GenMix (section 7.2 and appendix F of the GenLabel paper) places a mixed point of a
class pair ``(c_a, c_b)`` where ``p_{c_a}(x) / (p_{c_a}(x) + p_{c_b}(x)) = lam``. This
module finds such points for a whole batch at once; :class:`mixkit.GenMix` (the mixer)
and :func:`mixkit.genmix_dataset` (Algorithm 4) are its two users.

On the segment ``x(t) = t x_a + (1 - t) x_b``, ``f(t) = log p_{c_a}(x(t)) - log
p_{c_b}(x(t))`` is set equal to ``logit(lam)``:

* **closed form**, for a density that offers one: a density with a method
  ``segment_quadratic(x_a, x_b, c_a, c_b) -> (a, b, c)`` (float64 ``(n,)`` each, with
  ``f(t) = a t^2 + b t + c``; :class:`mixkit.Gaussian` has it: the QDA discriminant
  restricted to the segment, appendix F.2) is solved with the stable quadratic formula;
  the solver asks for the capability, never for a type;
* **bisection**, for any density: all pairs at once, one ``density.log_prob`` call on a
  ``(n, d)`` batch of midpoints per iteration, a fixed number of iterations
  (``ceil(log2(1 / tol))``, so nothing syncs with the device in the loop).

Off the segment, :func:`project_to_ratio` takes Newton projection steps onto the level
set ``f(x) = logit(lam)`` (appendix F.3, GenMix+GAN), for densities whose ``log_prob``
is differentiable in ``x``.

When ``logit(lam)`` is not reached on the segment the point is clamped to the place on
the segment whose ratio is closest (an endpoint, or the vertex of the quadratic) and
``solved`` is ``False`` there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from mixkit.densities.base import Density, NotFittedError

SEGMENT_METHODS = ("auto", "closed_form", "bisection")
# lam is kept this far from 0 and 1 so that logit(lam) is finite
LAM_CLIP = 1e-12


class SegmentSolution(NamedTuple):
    """Result of :func:`solve_segment`: ``t`` ``(n,)`` (``x = t x_a + (1 - t) x_b``) and
    ``solved`` ``(n,)`` bool (``False``: the ratio was not reachable and ``t`` was clamped)."""

    t: Tensor
    solved: Tensor


# -- small helpers --------------------------------------------------------------------------


def has_closed_form(density: Density) -> bool:
    """Whether ``density`` offers ``segment_quadratic`` (the closed form on a segment)."""
    return callable(getattr(density, "segment_quadratic", None))


def check_closed_form(density: Density, who: str = "GenMix") -> None:
    """Raise a ValueError saying what to do when ``density`` has no closed form."""
    if not has_closed_form(density):
        raise ValueError(
            f"{who}: method='closed_form' needs a density with a closed form on a segment "
            f"(a segment_quadratic(x_a, x_b, c_a, c_b) method, as mixkit.Gaussian has), but "
            f"{type(density).__name__} has none; use method='bisection' (or 'auto')"
        )


def check_density_ready(density: Density, who: str = "GenMix") -> None:
    """Raise :class:`NotFittedError` with a hint when ``density`` is not fitted."""
    if not getattr(density, "fitted", False):
        raise NotFittedError(
            f"{who} needs a fitted density but {type(density).__name__} is not fitted: call "
            f"`.fit(x_train, y_train)` on it (or on the GenMix mixer), or `.load_state_dict(...)`"
        )


def solve_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def logit(lam: Tensor) -> Tensor:
    """``log(lam / (1 - lam))`` with ``lam`` clipped to ``[LAM_CLIP, 1 - LAM_CLIP]``."""
    lam = lam.clamp(LAM_CLIP, 1 - LAM_CLIP)
    return torch.log(lam) - torch.log1p(-lam)


def pair_log_probs(lp: Tensor, c_a: Tensor, c_b: Tensor) -> tuple[Tensor, Tensor]:
    """``log p_{c_a}`` and ``log p_{c_b}`` ``(n,)`` picked from ``lp`` ``(n, K)``."""
    return lp.gather(1, c_a[:, None]).squeeze(1), lp.gather(1, c_b[:, None]).squeeze(1)


def intrudes(lp: Tensor, c_a: Tensor, c_b: Tensor) -> Tensor:
    """``(n,)`` bool: some third class is more probable than the less probable of ``c_a, c_b``
    (the paper's test: no intrusion iff ``min(p_a, p_b) >= p_l`` for all other ``l``)."""
    lp_a, lp_b = pair_log_probs(lp, c_a, c_b)
    others = lp.scatter(1, c_a[:, None], -math.inf).scatter(1, c_b[:, None], -math.inf)
    return others.amax(1) > torch.minimum(lp_a, lp_b)


def flat_inputs(x: Tensor, density: Density) -> Tensor:
    """``x`` as ``(n, d)``, checked against the density's dimension."""
    flat = x.reshape(x.shape[0], -1)
    if density.dim is not None and flat.shape[1] != density.dim:
        raise ValueError(
            f"{type(density).__name__} was fitted on {density.dim}-dimensional data but the inputs "
            f"have {flat.shape[1]} features per sample (shape {tuple(x.shape)}); GenMix places "
            "points in the density's space, so fit it on the flattened inputs (or features)"
        )
    return flat


# -- the segment solvers --------------------------------------------------------------------


def solve_quadratic_on_unit(a: Tensor, b: Tensor, c: Tensor, near: Tensor) -> SegmentSolution:
    """Root of ``a t^2 + b t + c = 0`` in ``[0, 1]`` for every row (vectorized).

    Two roots in ``[0, 1]``: the one closer to ``near``. No root: the ``t`` of ``{0, 1,
    vertex}`` with the smallest ``|a t^2 + b t + c|`` (``solved`` is ``False`` there).
    """
    scale = b.abs() + c.abs()
    linear = a.abs() <= 1e-12 * scale.clamp_min(1e-300)
    disc = b * b - 4 * a * c
    sq = disc.clamp_min(0).sqrt()
    # q = -(b + sign(b) sqrt(disc)) / 2: the roots q / a and c / q without cancellation
    q = -0.5 * (b + torch.where(b >= 0, sq, -sq))
    safe_a = torch.where(linear, torch.ones_like(a), a)
    r1 = q / safe_a
    r2 = torch.where(q != 0, c / torch.where(q != 0, q, torch.ones_like(q)), r1)
    nan = torch.full_like(a, math.nan)
    lin = torch.where(b != 0, -c / torch.where(b != 0, b, torch.ones_like(b)), nan)
    lin = torch.where((b == 0) & (c == 0), near, lin)  # f is constant and on target
    r1 = torch.where(linear, lin, torch.where(disc >= 0, r1, nan))
    r2 = torch.where(linear, lin, torch.where(disc >= 0, r2, nan))
    slack = 1e-9
    ok1 = (r1 >= -slack) & (r1 <= 1 + slack)
    ok2 = (r2 >= -slack) & (r2 <= 1 + slack)
    pick2 = ok2 & (~ok1 | ((r2 - near).abs() < (r1 - near).abs()))
    root = torch.where(pick2, r2, r1).clamp(0, 1)
    solved = ok1 | ok2
    # unreachable: the closest ratio is at an endpoint or at the vertex of the parabola
    vert = (-b / (2 * safe_a)).clamp(0, 1)
    vert = torch.where(linear, torch.zeros_like(vert), vert)
    cands = torch.stack([torch.zeros_like(a), torch.ones_like(a), vert], 1)
    vals = (a[:, None] * cands + b[:, None]) * cands + c[:, None]
    best = cands.gather(1, vals.abs().nan_to_num(math.inf).argmin(1, keepdim=True)).squeeze(1)
    return SegmentSolution(torch.where(solved, root, best), solved)


def bisect_segment(
    density: Density,
    x_a: Tensor,
    x_b: Tensor,
    c_a: Tensor,
    c_b: Tensor,
    target: Tensor,
    n_iter: int,
) -> SegmentSolution:
    """Bisection for ``f(t) = target`` (``target`` = ``logit(lam)``), all rows at once.

    A row is ``solved`` when ``f(0)`` and ``f(1)`` bracket the target; otherwise ``t`` is
    the endpoint whose ``f`` is closer to it. ``n_iter`` is fixed: no host sync per step.
    """
    n = x_a.shape[0]
    tdt = target.dtype

    def gap(t: Tensor) -> Tensor:
        tx = t.to(x_a.dtype)[:, None]
        lp = density.log_prob(tx * x_a + (1 - tx) * x_b)
        lp_a, lp_b = pair_log_probs(lp, c_a, c_b)
        return (lp_a - lp_b).to(tdt) - target

    with torch.no_grad():
        ends = density.log_prob(torch.cat([x_b, x_a]))
        lp_a, lp_b = pair_log_probs(ends, torch.cat([c_a, c_a]), torch.cat([c_b, c_b]))
        g_ends = (lp_a - lp_b).to(tdt) - target.repeat(2)
        g0, g1 = g_ends[:n], g_ends[n:]
        bracketed = ((g0 <= 0) & (g1 >= 0)) | ((g0 >= 0) & (g1 <= 0))
        rising = g1 >= g0  # orientation of the bracket
        lo = torch.zeros_like(target)
        hi = torch.ones_like(target)
        for _ in range(n_iter):  # iterations over t, each one batched call for all rows
            mid = 0.5 * (lo + hi)
            gm = gap(mid).nan_to_num(0.0)
            right = (gm < 0) == rising  # the root lies right of mid
            lo = torch.where(right, mid, lo)
            hi = torch.where(right, hi, mid)
        t = 0.5 * (lo + hi)
        end = torch.where(g1.abs().nan_to_num(math.inf) < g0.abs().nan_to_num(math.inf), 1.0, 0.0)
        return SegmentSolution(torch.where(bracketed, t, end.to(tdt)), bracketed)


def bisection_steps(tol: float, max_iter: int | None = None) -> int:
    """Iterations that bring the bracket on ``t`` below ``tol`` (at most ``max_iter``)."""
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    n_iter = max(1, math.ceil(math.log2(1.0 / tol)))
    if max_iter is not None:
        n_iter = max(1, min(n_iter, int(max_iter)))
    return n_iter


def resolve_method(density: Density, method: str, who: str = "GenMix") -> str:
    """``"closed_form"`` or ``"bisection"`` for ``method`` (``"auto"``: by capability)."""
    if method not in SEGMENT_METHODS:
        raise ValueError(f"method must be one of {SEGMENT_METHODS}, got {method!r}")
    if method == "auto":
        return "closed_form" if has_closed_form(density) else "bisection"
    if method == "closed_form":
        check_closed_form(density, who)
    return method


def solve_segment(
    density: Density,
    x_a: Tensor,
    x_b: Tensor,
    c_a: Tensor,
    c_b: Tensor,
    lam: Tensor,
    *,
    method: str = "auto",
    tol: float = 1e-4,
    max_iter: int | None = None,
) -> SegmentSolution:
    """Find ``t`` with ``p_{c_a}(x) / (p_{c_a}(x) + p_{c_b}(x)) = lam``, ``x = t x_a + (1-t) x_b``.

    Args:
        density: a fitted density (on ``x_a``'s device).
        x_a, x_b: ``(n, d)`` segment ends (``t = 1`` at ``x_a``).
        c_a, c_b: ``(n,)`` long, the classes of the pair (``lam`` refers to ``c_a``).
        lam: ``(n,)`` target ratios in ``[0, 1]`` (clipped to ``[1e-12, 1 - 1e-12]``).
        method: ``"closed_form"`` (a density with ``segment_quadratic``),
            ``"bisection"`` (any density) or ``"auto"`` (the closed form where offered).
        tol: bisection tolerance on ``t``; ``ceil(log2(1/tol))`` iterations.
        max_iter: cap on the bisection iterations.

    Rows with ``c_a == c_b`` get a meaningless ``t``; callers handle them. ``t`` is
    float64 (float32 on MPS) and carries no gradient.
    """
    method = resolve_method(density, method, "solve_segment")
    dtype = solve_dtype(x_a.device)
    target = logit(lam.to(x_a.device, dtype))
    if x_a.shape[0] == 0:  # nothing to solve (a 0-row batch): no density call at all
        return SegmentSolution(target.clone(), torch.zeros(0, dtype=torch.bool, device=x_a.device))
    if method == "closed_form":
        with torch.no_grad():
            a, b, c = density.segment_quadratic(x_a.detach(), x_b.detach(), c_a, c_b)
            a, b, c = (v.to(x_a.device, dtype) for v in (a, b, c))
            return solve_quadratic_on_unit(a, b, c - target, lam.to(x_a.device, dtype))
    n_iter = bisection_steps(tol, max_iter)
    return bisect_segment(density, x_a.detach(), x_b.detach(), c_a, c_b, target, n_iter)


# -- off the segment: projection (appendix F.3) -------------------------------------------------


def project_to_ratio(
    density: Density,
    x1: Tensor,
    x2: Tensor,
    c1: Tensor,
    c2: Tensor,
    target: Tensor,
    eps: float,
    max_iter: int,
    max_step: float,
) -> Tensor:
    """Projection steps from the mixup point at ``t = lam`` toward the level set
    ``log p_{c1} - log p_{c2} = logit(lam)``, all points at once (appendix F.3).

    Each step is the Newton step onto the level set of the linearized log ratio,
    ``x <- x - g(x) grad g(x) / |grad g(x)|^2``, limited to ``max_step`` times the
    pair's distance; points within ``eps`` of the ratio stop moving. Needs
    ``density.log_prob`` differentiable in ``x``.
    """
    lam_t = target.to(x1.dtype)[:, None]
    x = (lam_t * x1 + (1 - lam_t) * x2).detach()
    radius = (max_step * (x1 - x2).norm(dim=1)).to(x.dtype)
    goal = logit(target).to(x.dtype)
    for _ in range(max_iter):
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            lp1, lp2 = pair_log_probs(density.log_prob(xr), c1, c2)
            f = lp1 - lp2
            ratio = torch.sigmoid(f.detach().double())
            active = ~((ratio - target).abs() <= eps)
            if not bool(active.any()):  # one sync per step: stop once every point is there
                break
            if not f.requires_grad:
                raise ValueError(
                    f"method='projection' needs {type(density).__name__}.log_prob to be "
                    "differentiable in x; use method='segment' (bisection needs log_prob only)"
                )
            (grad,) = torch.autograd.grad(f.sum(), xr)
        g = (f.detach() - goal)[:, None]
        step = -g * grad / grad.square().sum(1, keepdim=True).clamp_min(1e-30)
        norm = step.norm(dim=1)
        step = step * (radius / norm.clamp_min(1e-30)).clamp(max=1.0)[:, None]
        usable = active & torch.isfinite(step).all(1)
        x = x + torch.where(usable[:, None], step, torch.zeros_like(step))
    return x.detach()


__all__ = [
    "SEGMENT_METHODS",
    "SegmentSolution",
    "bisect_segment",
    "check_closed_form",
    "check_density_ready",
    "flat_inputs",
    "has_closed_form",
    "intrudes",
    "pair_log_probs",
    "project_to_ratio",
    "resolve_method",
    "solve_quadratic_on_unit",
    "solve_segment",
]
