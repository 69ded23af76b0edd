"""Class-conditional Gaussians (the paper's "Gaussian mixture" generative model)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mixkit.densities.base import Density
from mixkit.densities.grouping import class_moments

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
# scoring is chunked so the (chunk, K*d) intermediate stays near this many elements
_CHUNK_ELEMENTS = 1 << 24


class Gaussian(Density):
    """Class-conditional Gaussian N(mu_c, Sigma_c) with full, diag, spherical or tied covariance.

    Args:
        covariance: ``"full"`` (default), ``"diag"``, ``"spherical"`` or
            ``"tied"`` (one covariance pooled over classes, as in LDA).
        reg_covar: added to the covariance diagonal, so a flat direction
            (a constant feature) gives a large but finite density.
        num_classes: number of classes; inferred from ``y`` when ``None``.

    Fitting is done in float64 with maximum-likelihood (1/n_c) covariances, as
    sklearn's ``GaussianMixture``. Scoring uses that ``log p_c(x)`` is linear in the
    quadratic features ``[x_i x_j (i <= j), x]``: every class is scored by one matrix
    product, in the batch's dtype, relative to the training data's centre.
    """

    min_samples_per_class = 2

    def __init__(
        self,
        covariance: str = "full",
        reg_covar: float = 1e-6,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        if covariance not in COVARIANCE_TYPES:
            raise ValueError(f"covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if reg_covar < 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}")
        self.covariance = covariance
        self.reg_covar = float(reg_covar)

    def extra_repr(self) -> str:
        return f"covariance={self.covariance!r}, reg_covar={self.reg_covar}, " + super().extra_repr()

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, x: Tensor, y: Tensor) -> None:
        x = x.double()
        k, d = self.num_classes, x.shape[1]
        _, _, counts, means, centered = class_moments(x, y, k)
        if self.covariance in ("full", "tied"):
            scatter = centered.transpose(1, 2) @ centered  # (K, d, d)
            if self.covariance == "full":
                cov = scatter / counts[:, None, None]
            else:
                cov = (scatter.sum(0) / counts.sum()).expand(k, d, d)
            cov = cov + self.reg_covar * torch.eye(d, dtype=x.dtype, device=x.device)
            self.set_parameters(means, cov)
        else:
            var = (centered**2).sum(1) / counts[:, None]  # (K, d)
            if self.covariance == "spherical":
                var = var.mean(1, keepdim=True).expand(k, d)
            self.set_parameters(means, var + self.reg_covar)

    def set_parameters(self, means: Tensor, covariances: Tensor) -> Gaussian:
        """Set the Gaussians directly (e.g. known ground truth): ``means`` ``(K, d)`` and
        covariances ``(K, d, d)`` for full/tied or variances ``(K, d)`` for diag/spherical.

        Precomputes everything :meth:`log_prob` needs; returns ``self``.
        """
        means = torch.as_tensor(means, dtype=torch.float64)
        covariances = torch.as_tensor(covariances, dtype=torch.float64, device=means.device)
        k, d = means.shape
        self.num_classes, self.dim = k, d
        if "class_counts" not in self._buffers:
            self.register_buffer("class_counts", torch.ones(k, dtype=torch.long, device=means.device))
        shift = means.mean(0)  # scoring relative to the data centre avoids cancellation
        self.register_buffer("means", means)
        self.register_buffer("shift", shift)
        if self.covariance in ("full", "tied"):
            if covariances.shape != (k, d, d):
                raise ValueError(f"expected covariances of shape {(k, d, d)}, got {tuple(covariances.shape)}")
            chol, info = torch.linalg.cholesky_ex(covariances)
            if bool(info.any()):
                bad = info.nonzero().flatten().tolist()
                raise ValueError(
                    f"covariance of class(es) {bad} is not positive definite; increase reg_covar "
                    f"(now {self.reg_covar}) or use covariance='diag'"
                )
            eye = torch.eye(d, dtype=chol.dtype, device=chol.device).expand(k, d, d)
            prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
            log_det_prec = -torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
            prec = prec_chol.transpose(1, 2) @ prec_chol  # Sigma^{-1}
            centred = means - shift
            prec_mean = torch.einsum("kde,ke->kd", prec, centred)
            # log p_c(x) = c_c + b_c.x - x^T P_c x / 2 is linear in the features [x_i x_j (i <= j), x]:
            # one (B, d(d+1)/2 + d) @ (.., K) product scores every class, with half the
            # multiply-adds of B*K*d^2 and no (B, K, d) intermediate
            iu, ju = torch.triu_indices(d, d, device=means.device)
            quad = -0.5 * prec[:, iu, ju] * torch.where(iu == ju, 1.0, 2.0).to(prec)
            self.register_buffer("covariances", covariances)
            self.register_buffer("quad_rows", iu)
            self.register_buffer("quad_cols", ju)
            self.register_buffer("weights", torch.cat([quad, prec_mean], 1))  # (K, T + d)
            self.register_buffer("bias", -0.5 * (prec_mean * centred).sum(1, keepdim=True))  # (K, 1)
        else:
            if covariances.shape != (k, d):
                raise ValueError(f"expected variances of shape {(k, d)}, got {tuple(covariances.shape)}")
            if bool((covariances <= 0).any()):
                raise ValueError("variances must be positive; increase reg_covar")
            prec = 1.0 / covariances
            log_det_prec = 0.5 * torch.log(prec).sum(1)
            self.register_buffer("covariances", covariances)
            self.register_buffer("prec_t", prec.T.contiguous())
            self.register_buffer("prec_mean_t", (prec * (means - shift)).T.contiguous())
            self.register_buffer("mean_term", (prec * (means - shift) ** 2).sum(1))
        self.register_buffer("log_const", log_det_prec - 0.5 * d * math.log(2 * math.pi))
        if self.covariance in ("full", "tied"):
            self.register_buffer("bias", self.bias + self.log_const[:, None])
        self.fitted = True
        return self

    # -- scoring ------------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        xs = x - self.cast("shift", x)  # relative to the data centre: less cancellation
        width = self.dim * (self.dim + 1) // 2 if self.covariance in ("full", "tied") else self.num_classes
        chunk = max(1, _CHUNK_ELEMENTS // max(1, width))
        if xs.shape[0] <= chunk:
            return self._score(xs)
        # bounded memory for huge batches: chunks of rows, not a loop over samples
        return torch.cat([self._score(xs[i:i + chunk]) for i in range(0, xs.shape[0], chunk)])

    def _score(self, xs: Tensor) -> Tensor:
        if self.covariance in ("full", "tied"):
            # features as rows (T + d, B): gathering rows is a copy, gathering columns is not
            xt = xs.T.contiguous()
            feats = torch.cat([xt.index_select(0, self.quad_rows) * xt.index_select(0, self.quad_cols), xt])
            return torch.addmm(self.cast("bias", xs), self.cast("weights", xs), feats).T
        # diag / spherical: |x - mu|^2_prec expanded, clamped against rounding below zero
        quad = torch.addmm(self.cast("mean_term", xs), xs * xs, self.cast("prec_t", xs))
        maha = quad.addmm_(xs, self.cast("prec_mean_t", xs), alpha=-2.0).clamp_min_(0)
        return torch.add(self.cast("log_const", xs), maha, alpha=-0.5)

    def sample(self, n: int, c: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from class ``c``'s Gaussian (float64, CPU draws moved to the density's device)."""
        self._check_fitted()
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
            chunk = max(1, _CHUNK_ELEMENTS // max(1, k * d))
            parts = []
            for s in range(0, n, chunk):  # chunks of rows bound the (rows, K*d) projections
                sl = slice(s, s + chunk)
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
