"""The ``flow`` density: a class-conditional neural spline flow on normflows.

Registered through the ``mixkit`` entry-point group (``flow = "mixkit_plugins.flow"``);
needs ``normflows`` (``pip install "mixkit[flow]"``), imported only when a flow
is built, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mixkit import hookimpl
from mixkit.chunking import MAX_ELEMENTS, row_chunks
from mixkit_plugins import _training as T

_ARCH = ("num_layers", "hidden", "num_blocks", "num_bins", "tail_bound")


class FlowDensity(T.NeuralDensity):
    """Class-conditional normalizing flow (normflows neural spline flow): exact log p_c(x).

    One flow shared by all classes and conditioned on the class (a one-hot
    context), built from normflows layers:

    * ``num_layers`` x [``AutoregressiveRationalQuadraticSpline`` (a masked
      autoregressive rational-quadratic spline, Durkan et al. 2019, whose
      residual conditioner sees the class) followed by ``LULinearPermute`` (a
      fixed permutation and a learned LU-parametrized linear map)];
    * base distribution ``ConditionalDiagGaussian``: a diagonal Gaussian whose
      mean and log-scale are a linear function of the class, so even the
      spline tails (identity beyond ``tail_bound``) are class dependent.

    Inputs are standardized with the training mean and standard deviation
    (buffers ``x_mean``, ``x_std``) and the log-determinant of that map is
    included, so ``log_prob`` is the exact log-density of ``x`` itself.
    ``log_prob`` evaluates every class in one pass over ``x`` repeated ``K``
    times (in chunks of bounded memory).

    Training: maximum likelihood with Adam on minibatches; a stratified
    ``val_fraction`` of every class is held out and training stops when the
    held-out negative log-likelihood has not improved for ``patience``
    epochs, restoring the best weights. Fitted weights are frozen, so
    ``log_prob`` is differentiable with respect to ``x``.

    Far from the data the splines are the identity and the score is the
    class's base Gaussian: hugely negative but finite. Where float32 would
    overflow (inputs beyond ~1e19 standard deviations) the base Gaussian is
    evaluated in float64; a value the output dtype cannot hold is ``-inf``
    ("cannot say": GenLabel falls back), never a floored finite value, which
    gave every class the same score. Scores are returned in the query's dtype,
    at least float32: half-precision queries are scored in float32.

    Args:
        num_layers: number of spline + LU blocks.
        hidden: width of the residual conditioner networks.
        num_blocks: residual blocks per conditioner.
        num_bins: spline bins.
        tail_bound: the splines act on ``[-tail_bound, tail_bound]`` in
            standardized units and are the identity outside.
        max_epochs, patience: early-stopping budget (epochs). The held-out
            likelihood of these flows peaks early (the 4th epoch of a 2-D fit
            measured in issue 11, where a patience of 20 spent 21 s of a 25 s fit
            after it), so a short patience stops soon after the best epoch.
        lr, weight_decay, batch_size: Adam and minibatch settings.
        val_fraction: share of every class held out for early stopping
            (``0`` trains ``max_epochs`` epochs).
        seed: seeds weight initialisation, the split and the minibatch order;
            ``None`` draws one from torch's global RNG at fit time.
        progress: show a tqdm bar while fitting; ``None`` shows it only when
            stderr is a terminal.
        num_classes: number of classes; inferred from ``y`` when ``None``.
    """

    min_samples_per_class = 2

    architecture = _ARCH
    network_attr = "flow"

    def __init__(
        self,
        num_layers: int = 4,
        hidden: int = 64,
        num_blocks: int = 1,
        num_bins: int = 8,
        tail_bound: float = 5.0,
        max_epochs: int = 200,
        patience: int = 5,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        val_fraction: float = 0.15,
        seed: int | None = None,
        progress: bool | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        T.check_positive(
            num_layers=num_layers, hidden=hidden, num_blocks=num_blocks, num_bins=num_bins,
            tail_bound=tail_bound, max_epochs=max_epochs, patience=patience, lr=lr,
            batch_size=batch_size,
        )
        T.check_fraction("val_fraction", val_fraction)
        self.num_layers = int(num_layers)
        self.hidden = int(hidden)
        self.num_blocks = int(num_blocks)
        self.num_bins = int(num_bins)
        self.tail_bound = float(tail_bound)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.seed = seed
        self.progress = progress
        self.fitted_seed: int | None = None
        self.history: dict[str, Any] = {}
        self.flow: nn.Module | None = None

    def extra_repr(self) -> str:
        arch = ", ".join(f"{name}={getattr(self, name)}" for name in _ARCH)
        return f"{arch}, " + super().extra_repr()

    # -- building -------------------------------------------------------------------------

    def _make_network(self, dim: int, num_classes: int, seed: int) -> nn.Module:
        nf = T.require("normflows", "flow", "normflows", "flow")
        from normflows.distributions.base import ConditionalDiagGaussian

        with T.seeded_init(seed):
            layers: list[nn.Module] = []
            for i in range(self.num_layers):
                layers.append(
                    nf.flows.AutoregressiveRationalQuadraticSpline(
                        dim,
                        self.num_blocks,
                        self.hidden,
                        num_context_channels=num_classes,
                        num_bins=self.num_bins,
                        tail_bound=self.tail_bound,
                        permute_mask=bool(i % 2),
                    )
                )
                if dim > 1:
                    layers.append(nf.flows.LULinearPermute(dim))
            encoder = nn.Linear(num_classes, 2 * dim)
            nn.init.zeros_(encoder.weight)  # start from the standard normal
            nn.init.zeros_(encoder.bias)
            base = ConditionalDiagGaussian(dim, encoder)
            return nf.ConditionalNormalizingFlow(base, layers)

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, x: Tensor, y: Tensor) -> None:
        seed = T.resolve_seed(self.seed)
        k, d = self.num_classes, x.shape[1]
        x = x.detach().float()
        mean, std = T.standardization(x)
        self.register_buffer("x_mean", mean)
        self.register_buffer("x_std", std)
        flow = self._make_network(d, k, seed).to(x.device)
        u = (x - mean) / std
        eye = torch.eye(k, device=x.device)

        def nll(ub: Tensor, yb: Tensor, *unused: Any) -> Tensor:
            return -flow.log_prob(ub, eye[yb]).mean()

        self.history = T.fit_minibatch(
            flow, nll, nll, u, y,
            num_classes=k, val_fraction=self.val_fraction, max_epochs=self.max_epochs,
            patience=self.patience, lr=self.lr, batch_size=self.batch_size,
            weight_decay=self.weight_decay, seed=seed, progress=self.progress, desc="fit flow",
        )
        self.flow = T.freeze(flow)
        self.fitted_seed = seed

    # -- scoring ----------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        k = self.num_classes
        u = (x.to(self.x_mean.dtype) - self.x_mean) / self.x_std
        outs = []
        per_row = 4 * k * max(self.hidden, 3 * self.num_bins * u.shape[1])
        for part in row_chunks(u.shape[0], per_row, budget=MAX_ELEMENTS):
            ub = u[part]
            ctx = T.one_hot_all_classes(ub.shape[0], k, ub)
            outs.append(self.flow.log_prob(ub.repeat_interleave(k, 0), ctx).view(-1, k))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        out = out - torch.log(self.x_std).sum()
        # always computed (a K-Gaussian score, tiny beside the flow): asking whether any entry
        # needs it would read the device back on every call
        out = torch.where(torch.isfinite(out), out, self._base_log_prob(u).to(out.dtype))
        return T.floor_scores(out.to(T.score_dtype(x)))

    def _base_log_prob(self, u: Tensor) -> Tensor:
        """Every class's base Gaussian at ``u`` in float64: the flow's score far out in the tails."""
        k, d = self.num_classes, self.dim
        params = self.flow.q0.context_encoder(torch.eye(k, device=u.device, dtype=self.x_mean.dtype))
        loc, log_scale = params[:, :d].double(), params[:, d:].double()
        z = (u.double()[:, None, :] - loc) / log_scale.exp()
        log_p = -0.5 * z.square().sum(-1) - log_scale.sum(-1) - 0.5 * d * math.log(2 * math.pi)
        return log_p - torch.log(self.x_std.double()).sum()

    @torch.no_grad()
    def sample(self, n: int, c: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from class ``c``'s flow (float32, on the density's device)."""
        self._check_fitted()
        k, d = self.num_classes, self.dim
        device = self.x_mean.device
        ctx = torch.zeros(n, k, device=device)
        ctx[:, c] = 1
        params = self.flow.q0.context_encoder(ctx)
        eps = torch.randn(n, d, generator=generator).to(device)
        z = params[:, :d] + params[:, d:].exp() * eps
        return self.flow.forward(z, context=ctx) * self.x_std + self.x_mean

@hookimpl
def mixkit_densities() -> dict[str, type]:
    return {"flow": FlowDensity}
