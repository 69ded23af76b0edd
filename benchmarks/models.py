"""Batched models: a grid of ``S x G`` independent fully-connected nets evaluated as one.

Every weight carries two leading model axes, ``W_l: (S, G, d_out, d_in)`` (``nn.Linear``'s
``(out, in)`` order): ``S`` data streams (cross-validation folds, or seeds) times ``G`` models
per stream (methods x learning rates x gammas). Activations are kept feature-major,
``(S, G, features, batch)``: the ``G`` models of a stream read the same inputs, so the first
layer of all of them is one GEMM per stream, ``(G*h, d) @ (d, B)``, deeper layers are one
batched matmul, and the softmax over classes runs along a non-innermost axis, where torch's
CPU kernel is vectorised over the batch (5-10x faster than over a trailing axis of 2-7
classes).

A model with no hidden layer is multinomial logistic regression; ``hidden=(128, 128)`` is the
paper's 2-hidden-layer FC ReLU net (appendix E.2, as in the mixup paper), ``(64, 128)`` and
``(64, 128, 128)`` are Table 10's 3- and 4-layer nets for the synthetic sets.

Initialisation is ``nn.Linear``'s (uniform in ``+-1/sqrt(fan_in)`` for weights and biases),
drawn per model from a ``torch.Generator`` seeded with that model's seed: models sharing a
seed start from the same weights (common random numbers across the configurations that
cross-validation compares), models with different seeds are independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BatchedMLP(nn.Module):
    """A grid ``(S, G)`` of ReLU MLPs ``in_dim -> hidden... -> out_dim`` (feature-major)."""

    def __init__(self, init_seeds: Tensor | Sequence[Sequence[int]], in_dim: int, out_dim: int,
                 hidden: Sequence[int] = (), device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        seeds = torch.as_tensor(init_seeds, dtype=torch.long)
        if seeds.ndim != 2:
            raise ValueError(f"init_seeds must be an (S, G) grid, got shape {tuple(seeds.shape)}")
        self.grid = (int(seeds.shape[0]), int(seeds.shape[1]))
        self.dims = [int(in_dim), *[int(h) for h in hidden], int(out_dim)]
        unique, inverse = torch.unique(seeds.reshape(-1), return_inverse=True)
        draws: list[list[tuple[Tensor, Tensor]]] = []
        for s in unique.tolist():
            g = torch.Generator().manual_seed(int(s))
            layers = []
            for d_in, d_out in zip(self.dims[:-1], self.dims[1:]):
                bound = 1.0 / math.sqrt(d_in)
                w = (torch.rand(d_out, d_in, generator=g, dtype=torch.float64) * 2 - 1) * bound
                b = (torch.rand(d_out, 1, generator=g, dtype=torch.float64) * 2 - 1) * bound
                layers.append((w, b))
            draws.append(layers)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for li in range(len(self.dims) - 1):
            w = torch.stack([dr[li][0] for dr in draws])[inverse]
            b = torch.stack([dr[li][1] for dr in draws])[inverse]
            self.weights.append(nn.Parameter(w.reshape(*self.grid, *w.shape[1:]).to(device, dtype)))
            self.biases.append(nn.Parameter(b.reshape(*self.grid, *b.shape[1:]).to(device, dtype)))

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    def first_layer(self, x: Tensor | None = None,
                    groups: Sequence[tuple[Tensor, int, int]] | None = None) -> Tensor:
        """Layer 0 (pre-activation), ``(S, G, h, B)``.

        ``x``: ``(S, d, B)`` shared by the models of a stream, or ``(S, G, d, B)`` per model.
        ``groups``: instead of ``x``, a list of ``(x_s (S, d, B), g0, g1)``: models ``g0:g1``
        of every stream read ``x_s`` (clean inputs for vanilla models, mixed ones for others).
        """
        w, b = self.weights[0], self.biases[0]
        s_n, g_n = self.grid
        if groups is not None:
            parts = []
            for xs, g0, g1 in groups:
                if g1 > g0:
                    wg = w[:, g0:g1].reshape(s_n, (g1 - g0) * w.shape[2], w.shape[3])
                    h = torch.bmm(wg, xs).view(s_n, g1 - g0, w.shape[2], xs.shape[-1])
                    parts.append(h + b[:, g0:g1])
            return parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        assert x is not None
        if x.ndim == 3:
            h = torch.bmm(w.reshape(s_n, g_n * w.shape[2], w.shape[3]), x)
            return h.view(s_n, g_n, w.shape[2], x.shape[-1]) + b
        return torch.matmul(w, x) + b

    def forward(self, x: Tensor | None = None,
                groups: Sequence[tuple[Tensor, int, int]] | None = None) -> Tensor:
        """Logits ``(S, G, out_dim, B)``; see :meth:`first_layer` for the inputs."""
        h = self.first_layer(x, groups)
        for li in range(1, self.num_layers):
            w = self.weights[li]
            h = torch.baddbmm(self.biases[li].flatten(0, 1), w.flatten(0, 1),
                              torch.relu(h).flatten(0, 1)).unflatten(0, self.grid)
        return h


def param_count(dims: Sequence[int]) -> int:
    """Parameters of one model with layer widths ``dims``."""
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def relu_mlp(d: int, hidden: Sequence[int]) -> tuple[nn.Sequential, int]:
    """``Linear -> ReLU`` blocks of the given widths (the paper's FC nets); returns the
    body and its output width, for a classifier ``nn.Linear(width, k)`` after it."""
    layers: list[nn.Module] = []
    prev = d
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    return nn.Sequential(*layers), prev
