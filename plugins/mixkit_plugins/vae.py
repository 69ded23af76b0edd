"""The ``vae`` density: a class-conditional VAE with pyro-ppl distributions.

Registered through the ``mixkit`` entry-point group (``vae = "mixkit_plugins.vae"``);
needs ``pyro-ppl`` (``pip install "mixkit[vae]"``), imported only when the model
is fitted, rebuilt or scored, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixkit import hookimpl
from mixkit.chunking import MAX_ELEMENTS, row_chunks
from mixkit_plugins import _training as T

_ARCH = ("latent_dim", "hidden", "num_layers", "min_scale")
#: the encoder (a proposal only) sees inputs clipped to this many standard deviations
_ENCODER_CLIP = 20.0


def _pyro_dist() -> ModuleType:
    T.require("pyro", "vae", "pyro-ppl", "vae")
    return T.require("pyro.distributions", "vae", "pyro-ppl", "vae")


class _ConditionalVAE(nn.Module):
    """Encoder q(z | u, c) and decoder p(u | z, c), both diagonal Gaussians, c one-hot."""

    def __init__(self, dim: int, num_classes: int, latent_dim: int, hidden: int, num_layers: int,
                 min_scale: float) -> None:
        super().__init__()
        self.dim, self.latent_dim, self.min_scale = dim, latent_dim, min_scale
        self.encoder = T.mlp(dim + num_classes, 2 * latent_dim, hidden, num_layers)
        self.decoder = T.mlp(latent_dim + num_classes, 2 * dim, hidden, num_layers)

    def log_weights(self, u: Tensor, ctx: Tensor, eps: Tensor, beta: float = 1.0) -> Tensor:
        """Importance log-weights ``log p(u, z_s | c) - log q(z_s | u, c)``, ``(S, N)``.

        ``u`` ``(N, d)`` standardized inputs, ``ctx`` ``(N, K)`` one-hot classes,
        ``eps`` ``(S, N or 1, L)`` standard normal draws (z = mu + sigma * eps);
        ``beta < 1`` down-weights the prior/proposal ratio (KL warm-up in training only).
        """
        dist = _pyro_dist()
        h = self.encoder(torch.cat([u.clamp(-_ENCODER_CLIP, _ENCODER_CLIP), ctx], -1))
        mu_z, sd_z = h[..., : self.latent_dim], F.softplus(h[..., self.latent_dim:]) + 1e-4
        z = mu_z + sd_z * eps  # (S, N, L)
        ctx_s = ctx.expand(z.shape[0], *ctx.shape)
        g = self.decoder(torch.cat([z, ctx_s], -1))
        mu_x, sd_x = g[..., : self.dim], F.softplus(g[..., self.dim:]) + self.min_scale
        # validate_args=False: the scales are softplus + a floor by construction, and the check
        # reads the device back (a host sync) on every batch
        log_px = dist.Normal(mu_x, sd_x, validate_args=False).to_event(1).log_prob(u)
        log_pz = dist.Normal(torch.zeros_like(z), torch.ones_like(z), validate_args=False).to_event(1).log_prob(z)
        log_qz = dist.Normal(mu_z, sd_z, validate_args=False).to_event(1).log_prob(z)
        return log_px + beta * (log_pz - log_qz)

    def bound(self, u: Tensor, ctx: Tensor, eps: Tensor, beta: float = 1.0) -> Tensor:
        """The importance-weighted bound with ``S = eps.shape[0]`` samples (the ELBO for S = 1), ``(N,)``."""
        lw = self.log_weights(u, ctx, eps, beta)
        return torch.logsumexp(lw, 0) - math.log(lw.shape[0])


class VAEDensity(T.NeuralDensity):
    """Class-conditional VAE (pyro-ppl): approximate log p_c(x), an importance-weighted lower bound.

    This is the paper's "approximate density" (section 7.1): ``log_prob``
    returns the importance-weighted bound (IWAE, Burda et al. 2016)

        log p_c(x) >= log (1/S) sum_s p(x | z_s, c) p(z_s) / q(z_s | x, c),  z_s ~ q(. | x, c)

    with ``S = num_samples``, not the exact log-density; the bound tightens as
    ``S`` grows. GenLabel uses it in place of ``log p_c(x)``.

    Model: one VAE conditioned on the class (one-hot ``c`` is an input of both
    networks). Prior ``z ~ N(0, I)`` of size ``latent_dim``; decoder
    ``p(u | z, c) = N(mu(z, c), diag sigma(z, c)^2)`` with ``sigma >= min_scale``
    (in standardized units, which bounds the density and keeps training stable);
    encoder ``q(z | u, c)`` diagonal Gaussian; MLPs with ``num_layers`` hidden
    layers of width ``hidden`` (SiLU). Inputs are standardized (buffers
    ``x_mean``, ``x_std``) and the log-determinant is included, so the bound
    is on the density of ``x`` itself. All probabilities are
    ``pyro.distributions`` objects.

    Training: the reparametrized importance-weighted bound with
    ``train_samples`` samples (4 by default; 1 is the ELBO, i.e. pyro's
    ``Trace_ELBO``), maximized with Adam in plain torch rather than
    ``pyro.infer.SVI``, which keeps parameters in pyro's global param store
    and draws from the global RNG; here every draw comes from a generator
    seeded by ``seed``. The KL term is warmed up linearly over the first
    ``kl_warmup`` epochs. Both guard against the posterior collapse and
    plateaus a small 2-D VAE otherwise falls into for some seeds. A stratified
    ``val_fraction`` of every class is held out; after the warm-up, training
    stops when the held-out bound has not improved for ``patience`` epochs
    and the best weights are restored.

    Scoring is deterministic: each call draws the ``num_samples`` standard
    normal ``eps`` from a generator seeded with ``eval_seed`` and uses the same
    ``eps`` for every sample and class (common random numbers: the score of a
    point does not depend on the batch it is in, and class comparisons share
    their noise). All classes are scored in one pass over ``x`` repeated ``K``
    times (in chunks of bounded memory). Far from the data the bound is hugely
    negative but finite (the encoder, a proposal only, sees inputs clipped to
    20 standard deviations, which keeps the bound valid); a value float32
    cannot hold is ``-inf`` ("cannot say"), not a floored finite value.
    Scores are returned in the query's dtype, at least float32.

    Args:
        latent_dim: size of ``z``; ``None`` uses the data dimension, at most 16.
        hidden, num_layers: MLP width and number of hidden layers.
        min_scale: lower bound of the decoder's standard deviation (standardized units).
        num_samples: importance samples ``S`` of the bound ``log_prob`` returns.
        train_samples: samples of the training bound (1 = ELBO).
        kl_warmup: epochs over which the weight of the KL term grows to 1.
        max_epochs, patience: early-stopping budget (epochs).
        lr, weight_decay, batch_size: Adam and minibatch settings.
        val_fraction: share of every class held out for early stopping.
        seed: seeds initialisation, split, minibatches and training noise;
            ``None`` draws one from torch's global RNG at fit time.
        eval_seed: seeds the importance samples of every ``log_prob`` call.
        progress: show a tqdm bar while fitting; ``None``: only on a terminal.
        num_classes: number of classes; inferred from ``y`` when ``None``.
    """

    min_samples_per_class = 2

    architecture = _ARCH
    network_attr = "vae"

    def __init__(
        self,
        latent_dim: int | None = None,
        hidden: int = 64,
        num_layers: int = 2,
        min_scale: float = 1e-2,
        num_samples: int = 64,
        train_samples: int = 4,
        kl_warmup: int = 20,
        max_epochs: int = 300,
        patience: int = 20,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        val_fraction: float = 0.15,
        seed: int | None = None,
        eval_seed: int = 0,
        progress: bool | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        T.check_positive(
            hidden=hidden, num_layers=num_layers, min_scale=min_scale, num_samples=num_samples,
            train_samples=train_samples, max_epochs=max_epochs, patience=patience, lr=lr,
            batch_size=batch_size,
        )
        if latent_dim is not None:
            T.check_positive(latent_dim=latent_dim)
        T.check_fraction("val_fraction", val_fraction)
        self.latent_dim = None if latent_dim is None else int(latent_dim)
        self.hidden = int(hidden)
        self.num_layers = int(num_layers)
        self.min_scale = float(min_scale)
        self.num_samples = int(num_samples)
        self.train_samples = int(train_samples)
        if kl_warmup < 0:
            raise ValueError(f"kl_warmup must be >= 0, got {kl_warmup}")
        self.kl_warmup = int(kl_warmup)
        self.max_epochs = int(max_epochs)
        self.patience = int(patience)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.seed = seed
        self.eval_seed = int(eval_seed)
        self.progress = progress
        self.fitted_seed: int | None = None
        self.history: dict[str, Any] = {}
        self.vae: _ConditionalVAE | None = None

    def extra_repr(self) -> str:
        return (
            f"latent_dim={self.latent_dim}, hidden={self.hidden}, num_layers={self.num_layers}, "
            f"num_samples={self.num_samples}, " + super().extra_repr()
        )

    def _latent_dim(self, dim: int) -> int:
        return self.latent_dim if self.latent_dim is not None else min(dim, 16)

    def _make_network(self, dim: int, num_classes: int, seed: int) -> _ConditionalVAE:
        _pyro_dist()  # fail early, before any training, when pyro is missing
        with T.seeded_init(seed):
            return _ConditionalVAE(dim, num_classes, self._latent_dim(dim), self.hidden,
                                   self.num_layers, self.min_scale)

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, x: Tensor, y: Tensor) -> None:
        seed = T.resolve_seed(self.seed)
        k, d = self.num_classes, x.shape[1]
        x = x.detach().float()
        mean, std = T.standardization(x)
        self.register_buffer("x_mean", mean)
        self.register_buffer("x_std", std)
        vae = self._make_network(d, k, seed).to(x.device)
        u = (x - mean) / std
        eye = torch.eye(k, device=x.device)
        latent, s_train = vae.latent_dim, self.train_samples

        warmup = self.kl_warmup

        def train_loss(ub: Tensor, yb: Tensor, generator: torch.Generator, epoch: int) -> Tensor:
            eps = T.randn((s_train, ub.shape[0], latent), generator, ub)
            beta = min(1.0, (epoch + 1) / (warmup + 1))
            return -vae.bound(ub, eye[yb], eps, beta).mean()

        def val_loss(ub: Tensor, yb: Tensor) -> Tensor:
            # the same draws every epoch, so epochs are compared on equal terms
            eps = T.randn((s_train, ub.shape[0], latent), T.make_generator(seed + 1), ub)
            return -vae.bound(ub, eye[yb], eps).mean()

        self.history = T.fit_minibatch(
            vae, train_loss, val_loss, u, y,
            num_classes=k, val_fraction=self.val_fraction, max_epochs=self.max_epochs,
            patience=self.patience, lr=self.lr, batch_size=self.batch_size,
            weight_decay=self.weight_decay, seed=seed, progress=self.progress, desc="fit vae",
            min_epochs=warmup,
        )
        self.vae = T.freeze(vae)
        self.fitted_seed = seed

    # -- scoring ----------------------------------------------------------------------------

    def _log_prob(self, x: Tensor) -> Tensor:
        k, s = self.num_classes, self.num_samples
        u = (x.to(self.x_mean.dtype) - self.x_mean) / self.x_std
        eps = T.randn((s, 1, self.vae.latent_dim), T.make_generator(self.eval_seed), u)
        outs = []
        for part in row_chunks(u.shape[0], 4 * k * s * max(self.hidden, self.dim), budget=MAX_ELEMENTS):
            ub = u[part]
            ctx = T.one_hot_all_classes(ub.shape[0], k, ub)
            outs.append(self.vae.bound(ub.repeat_interleave(k, 0), ctx, eps).view(-1, k))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        out = out - torch.log(self.x_std).sum()
        return T.floor_scores(out.to(T.score_dtype(x)))

    @torch.no_grad()
    def sample(self, n: int, c: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from class ``c``'s model: ``z ~ N(0, I)``, ``x ~ p(x | z, c)`` (float32)."""
        self._check_fitted()
        vae = self.vae
        device = self.x_mean.device
        ctx = torch.zeros(n, self.num_classes, device=device)
        ctx[:, c] = 1
        z = torch.randn(n, vae.latent_dim, generator=generator).to(device)
        g = vae.decoder(torch.cat([z, ctx], -1))
        mu, sd = g[:, : self.dim], F.softplus(g[:, self.dim:]) + vae.min_scale
        u = mu + sd * torch.randn(n, self.dim, generator=generator).to(device)
        return u * self.x_std + self.x_mean

@hookimpl
def mixkit_densities() -> dict[str, type]:
    return {"vae": VAEDensity}
