"""Class-conditional Gaussians (the paper's "Gaussian mixture" generative model)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mixkit._validation import check_generator, check_id_range, check_int, is_compiling
from mixkit.chunking import MIN_ROWS, row_chunks, rows_per_chunk
from mixkit.densities.base import ROUNDING_TOLERANCE, Density, _checked_batches, cannot_say
from mixkit.densities.grouping import class_moments, group_by_class

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
# whitening scores class-major up to this many columns K * d (see Gaussian._precompute)
_CLASS_MAJOR_MAX = 4096


def use_quadratic_form(dim: int, num_classes: int) -> bool:
    """Full covariance: score by quadratic features (``True``) or by whitening (``False``).

    Whitening costs a ``(B, d) @ (d, K d)`` GEMM (``K d^2`` multiply-adds a row) and a
    ``(B, K d)`` temporary; the quadratic form a GEMM on the ``T = (d + 1)(d + 2) / 2``
    pair products of ``[x, 1]`` (``K T``, about half) after building ``(d + 1)^2 + T``
    elements a row. With memory traffic weighted 16 multiply-adds an element (fitted on
    ``benchmarks/gaussian_floor.py``: whitening wins at K = 10 for d >= 20, the quadratic
    form at K = 100 for d <= 128), the cheaper one is used; above d = 180 the features of
    even 64 rows outgrow the scoring chunk, so whitening always.
    """
    if dim > 180:
        return False
    t = (dim + 1) * (dim + 2) // 2
    quadratic = num_classes * t + 16 * ((dim + 1) ** 2 + t)
    whitening = num_classes * dim * dim + 16 * num_classes * dim
    return quadratic < whitening


def error_scale(dim: int, dtype: torch.dtype) -> float:
    """Bound factor on the rounding error of a length-``dim`` product in ``dtype`` (see
    :meth:`Gaussian._log_prob`): ``eps`` times a growth of ``2 sqrt(d) + 4`` (a
    statistical bound, checked against float64 in the tests)."""
    return torch.finfo(dtype).eps * (2.0 * math.sqrt(dim) + 4.0)


def _grow(n: Tensor | None, s1: Tensor | None, s2: Tensor | None, k: int, xs: Tensor, kind: str):
    """Streaming sums with room for ``k`` classes (zero rows appended when a new id shows up).

    ``s2`` is ``(K, d, d)`` for full, the pooled ``(d, d)`` for tied, ``(K, d)`` otherwise.
    """
    d = xs.shape[1]
    if n is None:
        n = xs.new_zeros(0)
        s1 = xs.new_zeros(0, d)
        s2 = xs.new_zeros(d, d) if kind == "tied" else xs.new_zeros((0, d, d) if kind == "full" else (0, d))
    extra = k - n.shape[0]
    if extra <= 0:
        return n, s1, s2
    n = torch.cat([n, n.new_zeros(extra)])
    s1 = torch.cat([s1, s1.new_zeros(extra, d)])
    if kind != "tied":
        s2 = torch.cat([s2, s2.new_zeros(extra, *s2.shape[1:])])
    return n, s1, s2


def diagonal_log_prob(x: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """``log N(x; mu_c, diag(var_c))`` ``(B, K)`` for float64 ``means``/``variances`` ``(K, d)``.

    The scoring of :class:`Gaussian` (diag/spherical) for parameters that change between
    calls (:class:`mixkit.OnlineGaussian`): precisions are formed in the parameters' dtype,
    scoring runs in ``x``'s (at least float32), relative to the centre of the means, and
    rows that rounding leaves undecided are ``-inf`` (see :func:`cannot_say`).
    """
    d = means.shape[1]
    shift = means.mean(0)
    centred = means - shift
    prec = 1.0 / variances
    mnorm2 = (prec * centred**2).sum(1)
    log_const = 0.5 * torch.log(prec).sum(1) - 0.5 * d * math.log(2 * math.pi)
    xs = x - shift.to(x)  # .to(x): x's dtype and device
    out = torch.addmm((log_const - 0.5 * mnorm2).to(x), xs * xs, (-0.5 * prec.T).to(x))
    out = out.addmm_(xs, (prec * centred).T.to(x))
    err = torch.sub((log_const + 0.5 * mnorm2).to(x), out).mul_(4.0 * error_scale(d, x.dtype))
    return cannot_say(out, err)


class Gaussian(Density):
    """Class-conditional Gaussian N(mu_c, Sigma_c) with full, diag, spherical or tied covariance.

    Args:
        covariance: ``"full"`` (default), ``"diag"``, ``"spherical"`` or
            ``"tied"`` (one covariance pooled over classes, as in LDA).
        reg_covar: added to the covariance diagonal, so a flat direction
            (a constant feature) gives a large but finite density.
        num_classes: number of classes; inferred from ``y`` at every fit when ``None``.

    Fitting is done in float64 with maximum-likelihood (1/n_c) covariances, as
    sklearn's ``GaussianMixture``; :meth:`fit_batches` gives the same estimate from a
    stream of batches (exact per-class sums). Scoring runs in the query's dtype (at
    least float32), relative to the centre of the class means:

    * ``full``: ``x`` is whitened by every class's precision-Cholesky factor ``W_c``
      (``Sigma_c^-1 = W_c W_c^T``) in one GEMM against them concatenated as ``(d, K d)``,
      minus the precomputed ``mu_c W_c``, then a squared norm per class; with many
      classes (:func:`use_quadratic_form`) by the quadratic features ``[x_i x_j, x]``
      instead, in which ``log p_c`` is linear;
    * ``tied``: one ``(d, d)`` whitening shared by all classes, then the linear
      discriminant, which stays exact in relative terms however far the query is;
    * ``diag`` / ``spherical``: the expanded ``|x - mu_c|^2`` with per-class precisions.

    Every entry comes with a bound on its rounding error; a row where rounding could
    change the posterior (a float32 query very far from the data, ``|x| ~ 1e8``) is
    returned as ``-inf`` ("cannot say", see :func:`mixkit.densities.base.cannot_say`);
    pass float64 queries to resolve such points.
    """

    min_samples_per_class = 2
    scores_are_clean = True  # never NaN: rows that could be are "cannot say" (-inf)

    def __init__(
        self,
        covariance: str = "full",
        reg_covar: float = 1e-6,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        if covariance not in COVARIANCE_TYPES:
            raise ValueError(f"covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if not reg_covar >= 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}")
        self.covariance = covariance
        self.reg_covar = float(reg_covar)
        self._form: str | None = None
        self._error_ref_max = 0.0
        self._error_factor = 2.0
        self._class_major = True

    def extra_repr(self) -> str:
        return f"covariance={self.covariance!r}, reg_covar={self.reg_covar}, " + super().extra_repr()

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, x: Tensor, y: Tensor) -> None:
        x = x.double()
        k = self.num_classes
        _, _, counts, means, centered = class_moments(x, y, k)
        if self.covariance in ("full", "tied"):
            scatter = centered.transpose(1, 2) @ centered  # (K, d, d)
            self._set_from_moments(counts, means, scatter)
        else:
            self._set_from_moments(counts, means, (centered**2).sum(1))

    def _set_from_moments(self, counts: Tensor, means: Tensor, scatter: Tensor) -> None:
        """Covariances from per-class counts ``(K,)``, means and scatter (about the means):
        ``(K, d, d)`` for full/tied, ``(K, d)`` sums of squares for diag/spherical."""
        k, d = means.shape
        if self.covariance == "full":
            cov = scatter / counts[:, None, None]
        elif self.covariance == "tied":
            cov = (scatter.sum(0) / counts.sum()).expand(k, d, d)
        else:
            cov = scatter / counts[:, None]
            if self.covariance == "spherical":
                cov = cov.mean(1, keepdim=True).expand(k, d)
        if cov.ndim == 3:
            cov = cov + self.reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
        else:
            cov = cov + self.reg_covar
        self._set(means, cov.contiguous())

    def fit_batches(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Gaussian:
        """Exact streaming fit: per-class counts, sums and scatter in float64, one pass.

        Coordinates are shifted by the first batch's mean before summing (so features
        offset far from 0 keep their precision); each batch costs ``index_add_`` for the
        sums and one batched product of the class-packed batch for the scatter (full;
        tied needs only the pooled ``x^T x``), no loop over classes. Equal to :meth:`fit`
        on the stacked data to rounding (about 1e-12 relative).
        """
        shift = None
        n = s1 = s2 = None
        for xb, yb in _checked_batches(batches):
            xb = xb.double()
            if shift is None:
                shift = xb.mean(0)
            xs = xb - shift
            k = int(yb.max()) + 1 if yb.numel() else 0
            if self._given_num_classes is not None:
                k = self._given_num_classes
                check_id_range(yb, k, "class ids passed to fit_batches")
            n, s1, s2 = _grow(n, s1, s2, k, xs, self.covariance)
            n.index_add_(0, yb, torch.ones_like(yb, dtype=torch.float64))
            s1.index_add_(0, yb, xs)
            if self.covariance == "full":
                packed, _ = group_by_class(xs, yb, s1.shape[0])
                s2 += packed.mT @ packed
            elif self.covariance == "tied":
                s2 += xs.T @ xs
            else:
                s2.index_add_(0, yb, xs * xs)
        if n is None:
            raise ValueError("fit_batches got no batches; pass an iterable of (x, y) pairs")
        k, d = s1.shape
        low = (n < self.min_samples_per_class).nonzero().flatten().tolist()
        if low:
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_samples_per_class} sample(s) per "
                f"class but class(es) {low[:10]} have fewer in the batches"
            )
        mean = s1 / n[:, None]  # relative to the shift
        if self.covariance == "full":
            scatter = s2 - n[:, None, None] * mean[:, :, None] * mean[:, None, :]
        elif self.covariance == "tied":  # pooled scatter about the class means, per class split
            pooled = s2 - (n[:, None, None] * mean[:, :, None] * mean[:, None, :]).sum(0)
            scatter = (pooled / k).expand(k, d, d)
        else:
            scatter = s2 - n[:, None] * mean * mean
        self.num_classes, self.dim = k, d
        self.register_buffer("class_counts", n.round().long())
        self._set_from_moments(n, mean + shift, scatter)
        return self

    def set_parameters(self, means: Tensor, covariances: Tensor) -> Gaussian:
        """Set the Gaussians directly (e.g. known ground truth): ``means`` ``(K, d)`` and
        covariances ``(K, d, d)`` for full/tied or variances ``(K, d)`` for diag/spherical.

        The tensors are copied (float64); precomputes everything :meth:`log_prob` needs;
        returns ``self``.
        """
        means = torch.as_tensor(means).detach().to(torch.float64, copy=True)
        covariances = torch.as_tensor(covariances).detach().to(
            device=means.device, dtype=torch.float64, copy=True
        )
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        if not bool(torch.isfinite(means).all() and torch.isfinite(covariances).all()):
            raise ValueError("means and covariances must be finite")
        return self._set(means, covariances)

    def _set(self, means: Tensor, covariances: Tensor) -> Gaussian:
        k, d = means.shape
        expected = (k, d, d) if self.covariance in ("full", "tied") else (k, d)
        if tuple(covariances.shape) != expected:
            kind = "covariances" if len(expected) == 3 else "variances"
            raise ValueError(f"expected {kind} of shape {expected}, got {tuple(covariances.shape)}")
        counts = self._buffers.get("class_counts")
        if counts is None or counts.numel() != k:
            self.register_buffer("class_counts", torch.ones(k, dtype=torch.long, device=means.device))
        self.register_buffer("means", means)
        self.register_buffer("covariances", covariances)
        self._precompute()
        self.num_classes, self.dim = k, d
        self.fitted = True
        self._touch()
        return self

    def _loaded(self) -> None:
        self._precompute()

    def _precompute(self) -> None:
        """Derived (non-persistent) scoring buffers from ``means`` and ``covariances``."""
        means, cov = self.means, self.covariances
        k, d = means.shape
        shift = means.mean(0)  # scoring relative to the centre of the classes limits cancellation
        centred = means - shift

        for name in list(self._non_persistent_buffers_set):  # another form's leftovers
            self._buffers.pop(name, None)
            self._non_persistent_buffers_set.discard(name)

        def keep(name: str, value: Tensor) -> None:
            self.register_buffer(name, value.contiguous(), persistent=False)

        keep("shift", shift)
        if self.covariance in ("full", "tied"):
            chol, info = torch.linalg.cholesky_ex(cov)
            if bool(info.any()):
                bad = info.nonzero().flatten().tolist()
                raise ValueError(
                    f"covariance of class(es) {bad} is not positive definite; increase reg_covar "
                    f"(now {self.reg_covar}) or use covariance='diag'"
                )
            eye = torch.eye(d, dtype=chol.dtype, device=chol.device).expand(k, d, d)
            w = torch.linalg.solve_triangular(chol, eye, upper=False).mT  # W_c = L_c^-T
            log_det_prec = -torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
            proj = torch.einsum("kd,kde->ke", centred, w)  # mu_c W_c, relative to the centre
            mnorm2 = proj.square().sum(1)
        else:
            if not bool((cov > 0).all()):
                raise ValueError("variances must be positive; increase reg_covar")
            prec = 1.0 / cov
            log_det_prec = 0.5 * torch.log(prec).sum(1)
            mnorm2 = (prec * centred**2).sum(1)
        log_const = log_det_prec - 0.5 * d * math.log(2 * math.pi)
        keep("log_const", log_const)
        # the rounding bound (see _rounding_error) is factor * (error_ref - out): for the
        # expanded forms |z|^2 + |m|^2 <= 2 (maha + |m|^2), hence their larger factor
        keep("error_ref", log_const + 0.5 * mnorm2)
        self._error_ref_max = float(self.error_ref.max())
        self._error_factor = 2.0
        self._clean_bounds: dict[torch.dtype, float] = {}
        # the forms score class-major, (K, n), where they can: GenLabel reduces over the
        # classes along the outer axis, vectorised over the batch, and takes this layout as
        # a transposed view
        self._class_major = True
        # the widest scoring temporary, in elements a row (what the chunk size divides)
        self._row_width = k * d if self.covariance == "full" else d + k
        if self.covariance == "tied":
            self._form, self._error_factor = "tied", 4.0
            keep("whiten_t", w[0].T)
            keep("mean_proj", proj)
            keep("tied_const", (log_const - 0.5 * mnorm2)[:, None])
        elif self.covariance != "full":
            self._form, self._error_factor = "diag", 4.0
            keep("neg_half_prec", -0.5 * prec)
            keep("prec_mean", prec * centred)
            keep("diag_const", (log_const - 0.5 * mnorm2)[:, None])
        elif use_quadratic_form(d, k):
            self._form, self._row_width = "quadratic", (d + 1) ** 2
            prec = w @ w.mT  # Sigma^-1
            prec_mean = torch.einsum("kde,ke->kd", prec, centred)
            # log p_c(x) = c_c + b_c.x - x^T P_c x / 2 is linear in the products a_i a_j
            # (i <= j) of a = [x, 1]: quadratic terms, linear terms and the constant
            full = torch.zeros(k, d + 1, d + 1, dtype=prec.dtype, device=prec.device)
            full[:, :d, :d] = -0.5 * prec
            full[:, :d, d] = prec_mean
            full[:, d, d] = log_const - 0.5 * (prec_mean * centred).sum(1)
            sym = full + full.mT  # a_i a_j and a_j a_i share one feature
            iu, ju = torch.triu_indices(d + 1, d + 1, device=means.device)
            keep("pair_index", iu * (d + 1) + ju)
            keep("weights", sym[:, iu, ju] * torch.where(iu == ju, 0.5, 1.0).to(sym))  # (K, T)
        else:
            self._form = "whiten"
            # class-major up to K d = 4096 (vectorised sums over d, the transposed GEMM no
            # slower); above, the (n, K d) GEMM measured up to 1.4x faster (d = 512, K = 100)
            self._class_major = k * d <= _CLASS_MAJOR_MAX
            if self._class_major:
                keep("whiten_w", w.mT.reshape(k * d, d))  # rows c*d + j: column j of W_c
                keep("neg_mean_proj", -proj.reshape(k * d, 1))
                keep("whiten_const", log_const[:, None])
            else:
                keep("whiten_w", w.permute(1, 0, 2).reshape(d, k * d))  # columns c*d + j
                keep("neg_mean_proj", -proj.reshape(k * d))
                keep("whiten_const", log_const)

    # -- scoring ------------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        xs = x - self.cast("shift", x)  # relative to the centre: less cancellation
        # at least MIN_ROWS (64) rows, so the fitted weights are read once per 64 rows or fewer
        # (128-row chunks measured 1.1-1.3x slower at d = 512, K = 100: 26 MB temporaries)
        if xs.shape[0] <= rows_per_chunk(self._row_width, min_rows=MIN_ROWS):
            out = self._score(xs)
        else:  # bounded memory for big batches: chunks of rows, not a loop over samples
            parts = [self._score(xs[rows]) for rows in row_chunks(xs.shape[0], self._row_width, min_rows=MIN_ROWS)]
            out = torch.cat([p.T for p in parts], 1).T if self._class_major else torch.cat(parts)
        if x.device.type == "cpu" and x.shape[0] and not is_compiling():
            # reading one reduction costs nothing on the CPU: skip the check when it cannot
            # fire (a NaN fails the comparison and takes the full path, which clears it)
            if float(out.detach().amin()) >= self._clean_above(x.dtype):
                return out
        return cannot_say(out, self._rounding_error(out))

    def _clean_above(self, dtype: torch.dtype) -> float:
        """The least score whose rounding bound (see :meth:`_rounding_error`) is within
        ``ROUNDING_TOLERANCE``: a batch scoring above it everywhere needs no check. Per dtype,
        cached until the next fit."""
        bound = self._clean_bounds.get(dtype)
        if bound is None:
            scale = self._error_factor * error_scale(self.dim, dtype)
            bound = self._clean_bounds[dtype] = self._error_ref_max - ROUNDING_TOLERANCE / scale
        return bound

    def _rounding_error(self, out: Tensor) -> Tensor:
        """Bound on the rounding error of every entry of ``out`` (scored in ``out.dtype``).

        ``error_scale(d) * factor * (error_ref_c - out)``: ``error_ref_c - out`` is
        ``(maha + |mu_c W_c|^2) / 2`` in the whitened frame of class ``c`` (centred), the
        magnitudes whose cancellation the result inherits.
        """
        scale = self._error_factor * error_scale(self.dim, out.dtype)
        return torch.sub(self.cast("error_ref", out), out).mul_(scale)

    def _score(self, xs: Tensor) -> Tensor:
        """``log p`` ``(n, K)`` of rows ``xs`` already relative to the centre ``shift``: the
        transposed view of a class-major ``(K, n)`` result (row-major for large whitening)."""
        form = self._form
        k, d = self.num_classes, self.dim
        if form == "whiten" and self._class_major:
            proj = torch.addmm(self.cast("neg_mean_proj", xs), self.cast("whiten_w", xs), xs.T)  # (K d, n)
            maha = proj.square_().view(k, d, xs.shape[0]).sum(1)
            return torch.add(self.cast("whiten_const", xs), maha, alpha=-0.5).T
        if form == "whiten":
            proj = torch.addmm(self.cast("neg_mean_proj", xs), xs, self.cast("whiten_w", xs))  # (n, K d)
            maha = proj.square_().view(xs.shape[0], k, d).sum(-1)
            return torch.add(self.cast("whiten_const", xs), maha, alpha=-0.5)
        if form == "quadratic":
            # pair products as rows (T, n): one broadcast product, one gather of rows (a copy)
            at = F.pad(xs.T, (0, 0, 0, 1), value=1.0)  # [x, 1] as (d + 1, n)
            feats = (at[:, None, :] * at[None, :, :]).view(-1, xs.shape[0]).index_select(0, self.pair_index)
            return torch.mm(self.cast("weights", xs), feats).T
        if form == "tied":  # the linear discriminant, minus the common |z|^2 / 2
            z = torch.mm(self.cast("whiten_t", xs), xs.T)  # (d, n)
            out = torch.addmm(self.cast("tied_const", xs), self.cast("mean_proj", xs), z)
            return out.sub_(z.square().sum(0, keepdim=True), alpha=0.5).T
        # diag / spherical: -(x P x)/2 + x.(P mu) + const, two GEMMs
        out = torch.addmm(self.cast("diag_const", xs), self.cast("neg_half_prec", xs), (xs * xs).T)
        return out.addmm_(self.cast("prec_mean", xs), xs.T).T

    def sample(self, n: int, c: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from class ``c``'s Gaussian (float64, CPU draws moved to the density's device)."""
        self._check_fitted()
        n = check_int("n", n, 0)
        c = check_int("c", c)
        if not 0 <= c < self.num_classes:
            raise ValueError(f"class c must lie in [0, {self.num_classes}), got {c}")
        check_generator(generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator).to(self.means.device)
        if self.covariance in ("full", "tied"):
            return self.means[c] + z @ torch.linalg.cholesky(self.covariances[c]).T
        return self.means[c] + z * self.covariances[c].sqrt()

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "covariance": self.covariance}

    def _build(self, config: dict[str, Any]) -> None:
        if config.get("covariance", self.covariance) != self.covariance:
            raise ValueError(
                f"state was saved with covariance={config['covariance']!r} but this density has "
                f"covariance={self.covariance!r}; construct it with the same arguments"
            )

    # -- GenMix's closed form on a segment (appendix F.2) ------------------------------------

    def segment_quadratic(
        self, x_a: Tensor, x_b: Tensor, c_a: Tensor, c_b: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients ``(a, b, c)`` ``(n,)`` of ``log p_{c_a}(x(t)) - log p_{c_b}(x(t)) =
        a t^2 + b t + c`` on ``x(t) = t x_a + (1 - t) x_b``, the QDA discriminant restricted
        to the segment (what :func:`mixkit.genmix_solver.solve_segment` solves in closed form).

        With ``u_c = x_b - mu_c``, ``v = x_a - x_b`` and precision ``P_c``:
        ``log p_c(x(t)) = L_c - (v'P_c v t^2 + 2 v'P_c u_c t + u_c'P_c u_c) / 2``. Computed
        from ``means`` and ``covariances`` in float64 (float32 on MPS), relative to the centre
        of the means; the factorisation (``W_c = L_c^{-T}`` with ``Sigma_c = L_c L_c^T``, or
        the precisions ``1 / var``) is cached on the instance and rebuilt whenever those
        buffers are replaced or changed in place (refit, ``load_state_dict``, ``.to``).
        """
        self._check_fitted()
        means, cov = self._buffers["means"], self._buffers["covariances"]
        # the stamp holds the buffers themselves, so a refit cannot reuse their memory unnoticed
        versions = (means._version, cov._version)
        hit = self.__dict__.get("_segment_cache")
        if hit is None or hit[0] is not means or hit[1] is not cov or hit[2] != versions:
            dtype = torch.float32 if means.device.type == "mps" else torch.float64
            m64, c64 = means.to(dtype), cov.to(dtype)
            k, d = m64.shape
            shift = m64.mean(0)
            f: dict[str, Tensor] = {"shift": shift}
            if c64.ndim == 3:  # full / tied
                chol = torch.linalg.cholesky(c64)
                eye = torch.eye(d, dtype=dtype, device=means.device).expand(k, d, d)
                w = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(1, 2)  # L^{-T}
                f["w_flat"] = w.permute(1, 0, 2).reshape(d, k * d)
                f["mean_w"] = torch.einsum("kd,kde->ke", m64 - shift, w)
                log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
            else:  # diag / spherical: variances (K, d)
                f["prec"] = 1.0 / c64
                f["means"] = m64 - shift
                log_det = torch.log(c64).sum(1)
            f["log_const"] = -0.5 * (log_det + d * math.log(2 * math.pi))
            hit = (means, cov, versions, f)
            self.__dict__["_segment_cache"] = hit
        f = hit[3]
        dtype, dev = f["shift"].dtype, f["shift"].device
        xb = x_b.detach().to(dev, dtype) - f["shift"]
        v = x_a.detach().to(dev, dtype) - f["shift"] - xb
        c_a, c_b = c_a.to(dev), c_b.to(dev)
        n, d = xb.shape
        if "w_flat" in f:
            k = f["mean_w"].shape[0]
            parts = []
            for sl in row_chunks(n, k * d):  # chunks of rows bound the (rows, K*d) projections
                r = torch.arange(xb[sl].shape[0], device=dev)
                vw = (v[sl] @ f["w_flat"]).reshape(-1, k, d)
                uw = (xb[sl] @ f["w_flat"]).reshape(-1, k, d) - f["mean_w"]
                va, vb = vw[r, c_a[sl]], vw[r, c_b[sl]]
                ua, ub = uw[r, c_a[sl]], uw[r, c_b[sl]]
                parts.append(torch.stack([
                    (va * va).sum(1) - (vb * vb).sum(1),
                    (va * ua).sum(1) - (vb * ub).sum(1),
                    (ua * ua).sum(1) - (ub * ub).sum(1),
                ]))
            da, db, dc = torch.cat(parts, 1) if parts else xb.new_zeros(3, 0)
        else:
            pa, pb = f["prec"][c_a], f["prec"][c_b]
            ua, ub = xb - f["means"][c_a], xb - f["means"][c_b]
            da = (v * v * (pa - pb)).sum(1)
            db = (v * (pa * ua - pb * ub)).sum(1)
            dc = (pa * ua * ua).sum(1) - (pb * ub * ub).sum(1)
        log_const = f["log_const"]
        out = (-0.5 * da, -db, (log_const[c_a] - log_const[c_b]) - 0.5 * dc)
        return tuple(t.to(x_a.device) for t in out)
