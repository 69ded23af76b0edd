"""Class-conditional Gaussians (the paper's "Gaussian mixture" generative model)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mixkit.densities.base import Density
from mixkit.densities.grouping import group_by_class

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
    sklearn's ``GaussianMixture``. Scoring precomputes each class's precision
    Cholesky factor ``P_c`` so that ``log p_c(x) = const_c - |x P_c - mu_c P_c|^2 / 2``
    for all classes is one matrix product ``x @ [P_1 .. P_K]``.
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
        packed, mask = group_by_class(x, y, k)
        counts = mask.sum(1).double()
        means = packed.sum(1) / counts[:, None]
        centered = (packed - means[:, None]) * mask[..., None]
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
            # P_c = L_c^{-T}, so (x - mu)^T Sigma^{-1} (x - mu) = |(x - mu) P_c|^2
            prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(1, 2)
            log_det_prec = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(1)
            self.register_buffer("covariances", covariances)
            self.register_buffer("prec_chol_flat", prec_chol.permute(1, 0, 2).reshape(d, k * d))
            self.register_buffer("mean_proj", torch.einsum("kd,kde->ke", means - shift, prec_chol).reshape(k * d))
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
        self.register_buffer("ones", torch.ones(d, dtype=torch.float64, device=means.device))
        self.fitted = True
        return self

    # -- scoring ------------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        k, d = self.num_classes, self.dim
        xs = x - self.cast("shift", x)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, k * d))
        if xs.shape[0] <= chunk:
            return self._score(xs)
        # bounded memory for huge batches: chunks of rows, not a loop over samples
        return torch.cat([self._score(xs[i:i + chunk]) for i in range(0, xs.shape[0], chunk)])

    def _score(self, xs: Tensor) -> Tensor:
        k, d = self.num_classes, self.dim
        if self.covariance in ("full", "tied"):
            # (x - mu_c) P_c for every class in one GEMM: (b, d) @ (d, K*d), minus mu_c P_c
            proj = torch.addmm(self.cast("mean_proj", xs), xs, self.cast("prec_chol_flat", xs), beta=-1)
            # the row sums of squares as a matrix-vector product: twice as fast as .sum(-1) here
            maha = (proj.square_().view(-1, d) @ self.cast("ones", xs)).view(-1, k)
        else:
            # |x - mu|^2_prec expanded, clamped against rounding below zero
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
