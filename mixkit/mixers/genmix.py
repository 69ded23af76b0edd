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

Solving. ``f(t) = log p_{c_i}(x(t)) - log p_{c_j}(x(t))`` is set equal to
``logit(lam)``:

* Gaussian densities (:class:`mixkit.Gaussian`, any covariance type): ``f`` is a
  quadratic ``a t^2 + b t + c`` (the QDA discriminant restricted to the segment,
  appendix F.2), solved in closed form for all pairs at once, in float64;
* any other density: bisection on ``t``, all pairs at once, one
  ``density.log_prob`` call on a ``(B, d)`` batch of midpoints per iteration,
  ``ceil(log2(1 / tol))`` iterations (at most ``max_iter``).

When ``logit(lam)`` is not reached on the segment (no root in ``[0, 1]``; for
bisection: ``f(0)`` and ``f(1)`` do not bracket it) the point is clamped to the
place on the segment whose ratio is closest to ``lam`` (an endpoint, or for the
closed form the vertex of the quadratic) and counted as ``clamped``; its label
still is the ratio actually reached there.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, NamedTuple

import torch
from torch import Tensor

from mixkit.batch import MixedBatch
from mixkit.densities.base import Density, NotFittedError
from mixkit.densities.gaussian import Gaussian
from mixkit.mixers.base import Mixer, MixParams, fixed_lam
from mixkit.random import sample_beta
from mixkit.registry import create_density

INTRUSION_MODES = ("discard", "relabel")
SAME_CLASS_MODES = ("mixup", "keep")
SEGMENT_METHODS = ("auto", "closed_form", "bisection")
# the (rows, K*d) projections of the closed form are chunked to about this many elements
_CHUNK_ELEMENTS = 1 << 24
# lam is kept this far from 0 and 1 so that logit(lam) is finite
_LAM_CLIP = 1e-12


class SegmentSolution(NamedTuple):
    """Result of :func:`solve_segment`: ``t`` ``(n,)`` (``x = t x_a + (1 - t) x_b``) and
    ``solved`` ``(n,)`` bool (``False``: the ratio was not reachable and ``t`` was clamped)."""

    t: Tensor
    solved: Tensor


# -- helpers shared with mixkit.genmix_dataset -------------------------------------------


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
            "points in the density's space, so fit it on the flattened inputs"
        )
    return flat


# -- the segment solvers --------------------------------------------------------------------

_FACTOR_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _gaussian_factors(density: Gaussian) -> dict[str, Tensor]:
    """Precision factors of a fitted Gaussian, from its ``means``/``covariances`` buffers.

    ``W_c = L_c^{-T}`` (``Sigma_c = L_c L_c^T``), so ``(x - mu_c)^T Sigma_c^{-1} (x - mu_c)
    = |(x - mu_c) W_c|^2``; diag/spherical keep the precisions ``1 / var``. Cached per
    density until its buffers change (refit, ``load_state_dict``, ``.to``).
    """
    means, cov, log_const = density.means, density.covariances, density.log_const
    source = (means, cov, log_const)  # held, so a refit cannot reuse their memory unnoticed
    versions = tuple(b._version for b in source)
    hit = _FACTOR_CACHE.get(density)
    if hit is not None and hit[1] == versions:
        if all(a is b for a, b in zip(hit[0], source, strict=True)):
            return hit[2]
    dtype = solve_dtype(means.device)
    means64, cov64 = means.to(dtype), cov.to(dtype)
    k, d = means64.shape
    shift = means64.mean(0)
    out = {"shift": shift, "log_const": density.log_const.to(dtype)}
    if cov64.ndim == 3:  # full / tied
        chol = torch.linalg.cholesky(cov64)
        eye = torch.eye(d, dtype=dtype, device=means.device).expand(k, d, d)
        w = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(1, 2)  # L^{-T}
        out["w_flat"] = w.permute(1, 0, 2).reshape(d, k * d)
        out["mean_w"] = torch.einsum("kd,kde->ke", means64 - shift, w)
    else:  # diag / spherical: variances (K, d)
        out["prec"] = 1.0 / cov64
        out["means"] = means64 - shift
    _FACTOR_CACHE[density] = (source, versions, out)
    return out


def gaussian_segment_quadratic(
    density: Gaussian, x_a: Tensor, x_b: Tensor, c_a: Tensor, c_b: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients ``(a, b, c)`` (float64, ``(n,)`` each) of
    ``log p_{c_a}(x(t)) - log p_{c_b}(x(t)) = a t^2 + b t + c``, ``x(t) = t x_a + (1 - t) x_b``.

    With ``u_c = x_b - mu_c``, ``v = x_a - x_b`` and precision ``P_c``:
    ``log p_c(x(t)) = L_c - (v'P_c v t^2 + 2 v'P_c u_c t + u_c'P_c u_c) / 2``.
    """
    f = _gaussian_factors(density)
    dtype = f["shift"].dtype
    xa = x_a.to(dtype)
    xb = x_b.to(dtype) - f["shift"]
    v = xa - f["shift"] - xb
    n, d = xb.shape
    rows = torch.arange(n, device=xb.device)
    if "w_flat" in f:
        k = f["mean_w"].shape[0]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, k * d))
        parts = []
        for s in range(0, n, chunk):  # bounded memory, not a loop over samples
            sl = slice(s, s + chunk)
            r = rows[sl] - s
            vw = (v[sl] @ f["w_flat"]).reshape(-1, k, d)
            uw = (xb[sl] @ f["w_flat"]).reshape(-1, k, d) - f["mean_w"]
            va, vb = vw[r, c_a[sl]], vw[r, c_b[sl]]
            ua, ub = uw[r, c_a[sl]], uw[r, c_b[sl]]
            parts.append(torch.stack([
                (va * va).sum(1) - (vb * vb).sum(1),
                (va * ua).sum(1) - (vb * ub).sum(1),
                (ua * ua).sum(1) - (ub * ub).sum(1),
            ]))
        da, db, dc = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    else:
        pa, pb = f["prec"][c_a], f["prec"][c_b]
        ua, ub = xb - f["means"][c_a], xb - f["means"][c_b]
        da = (v * v * (pa - pb)).sum(1)
        db = (v * (pa * ua - pb * ub)).sum(1)
        dc = (pa * ua * ua).sum(1) - (pb * ub * ub).sum(1)
    log_const = f["log_const"]
    return -0.5 * da, -db, (log_const[c_a] - log_const[c_b]) - 0.5 * dc


def solve_quadratic_on_unit(a: Tensor, b: Tensor, c: Tensor, near: Tensor) -> SegmentSolution:
    """Root of ``a t^2 + b t + c = 0`` in ``[0, 1]`` for every row (float64, vectorized).

    Two roots in ``[0, 1]``: the one closer to ``near``. No root: the ``t`` of ``{0, 1,
    vertex}`` with the smallest ``|a t^2 + b t + c|`` (``solved`` is ``False`` there).
    """
    scale = b.abs() + c.abs()
    linear = a.abs() <= 1e-12 * scale.clamp_min(1e-300)
    disc = b * b - 4 * a * c
    sq = disc.clamp_min(0).sqrt()
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


def _bisect(
    density: Density, x_a: Tensor, x_b: Tensor, c_a: Tensor, c_b: Tensor, target: Tensor,
    n_iter: int,
) -> SegmentSolution:
    n = x_a.shape[0]
    tdt = target.dtype

    def g(t: Tensor) -> Tensor:
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
        for _ in range(n_iter):  # fixed count: no sync with the device per iteration
            mid = 0.5 * (lo + hi)
            gm = g(mid).nan_to_num(0.0)
            right = (gm < 0) == rising  # the root lies right of mid
            lo = torch.where(right, mid, lo)
            hi = torch.where(right, hi, mid)
        t = 0.5 * (lo + hi)
        end = torch.where(g1.abs().nan_to_num(math.inf) < g0.abs().nan_to_num(math.inf), 1.0, 0.0)
        return SegmentSolution(torch.where(bracketed, t, end.to(tdt)), bracketed)


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
        density: a fitted density.
        x_a, x_b: ``(n, d)`` segment ends (``t = 1`` at ``x_a``).
        c_a, c_b: ``(n,)`` long, the classes of the pair (``lam`` refers to ``c_a``).
        lam: ``(n,)`` target ratios in ``[0, 1]`` (clipped to ``[1e-12, 1 - 1e-12]``).
        method: ``"closed_form"`` (Gaussian only), ``"bisection"`` or ``"auto"``
            (closed form for :class:`mixkit.Gaussian`, else bisection).
        tol: bisection tolerance on ``t``; ``ceil(log2(1/tol))`` iterations.
        max_iter: cap on the bisection iterations.

    Rows with ``c_a == c_b`` get a meaningless ``t``; callers handle them.
    """
    if method not in SEGMENT_METHODS:
        raise ValueError(f"method must be one of {SEGMENT_METHODS}, got {method!r}")
    if method == "auto":
        method = "closed_form" if isinstance(density, Gaussian) else "bisection"
    if method == "closed_form" and not isinstance(density, Gaussian):
        raise ValueError(
            f"the closed form needs a mixkit.Gaussian density, got {type(density).__name__}; "
            "use method='bisection' (or 'auto')"
        )
    dtype = solve_dtype(x_a.device)
    lam = lam.to(x_a.device, dtype).clamp(_LAM_CLIP, 1 - _LAM_CLIP)
    target = torch.log(lam) - torch.log1p(-lam)
    if method == "closed_form":
        with torch.no_grad():
            a, b, c = gaussian_segment_quadratic(density, x_a, x_b, c_a, c_b)
            return solve_quadratic_on_unit(a, b, c - target, lam)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    n_iter = max(1, math.ceil(math.log2(1.0 / tol)))
    if max_iter is not None:
        n_iter = max(1, min(n_iter, int(max_iter)))
    return _bisect(density, x_a, x_b, c_a, c_b, target, n_iter)


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
        method: ``"auto"`` (closed form for :class:`mixkit.Gaussian`, bisection
            otherwise), ``"closed_form"`` or ``"bisection"``.
        tol: bisection tolerance on ``t``: ``ceil(log2(1/tol))`` iterations, each
            one ``density.log_prob`` call on a ``(B, d)`` batch.
        max_iter: cap on the bisection iterations (``None``: no cap).
        seed: seed of the mixer's generator (see :class:`mixkit.Mixer`).

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
        **density_kwargs: Any,
    ) -> None:
        super().__init__(num_classes, seed=seed, label_dtype=label_dtype)
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if lam is not None and not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1] or be None, got {lam}")
        if intrusion not in INTRUSION_MODES:
            raise ValueError(f"intrusion must be one of {INTRUSION_MODES}, got {intrusion!r}")
        if same_class not in SAME_CLASS_MODES:
            raise ValueError(f"same_class must be one of {SAME_CLASS_MODES}, got {same_class!r}")
        if method not in SEGMENT_METHODS:
            raise ValueError(f"method must be one of {SEGMENT_METHODS}, got {method!r}")
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        if max_iter is not None and int(max_iter) < 1:
            raise ValueError(f"max_iter must be a positive int or None, got {max_iter}")
        if isinstance(density, str):
            density = create_density(density, **density_kwargs)
        elif density_kwargs:
            raise TypeError("density keyword arguments are only accepted with a density name")
        if not isinstance(density, Density):
            raise TypeError(
                f"density must be a mixkit.Density or a name, got {type(density).__name__}"
            )
        if method == "closed_form" and not isinstance(density, Gaussian):
            raise ValueError(
                "method='closed_form' needs a mixkit.Gaussian density, got "
                f"{type(density).__name__}"
            )
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
        """Fit the density on training inputs (flattened) and class ids; returns ``self``."""
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if y.ndim == 2:
            y = y.argmax(1)
        self.density.fit(x.reshape(x.shape[0], -1), y)
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
        oh_i = torch.nn.functional.one_hot(c_i, k).to(ydt)
        oh_j = torch.nn.functional.one_hot(c_j, k).to(ydt)
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


__all__ = ["GenMix", "SegmentSolution", "gaussian_segment_quadratic", "solve_segment"]
