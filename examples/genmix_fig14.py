"""GenMix on four 2-D Gaussian classes, as in Fig. 14(a) of the GenLabel paper.

Fits class-conditional Gaussians, generates GenMix points for every class pair at
``lam = 0.5`` (equiprobable for the pair, eq. 37 / Algorithm 4) and plots them over
the data and the generative classifier's regions; a second panel shows vanilla
mixup midpoints of the same number of random pairs for comparison. Class 0 sits
between classes 1 and 2, so every 1-2 candidate intrudes on class 0 and is
discarded: as in the paper, GenMix does not mix classes 1 and 2.

    python examples/genmix_fig14.py --out genmix_fig14.png
"""

from __future__ import annotations

import argparse
import warnings

import torch

import mixkit
from mixkit.genmix_dataset import genmix_dataset

# the paper's colours: class 0, 1, 2, 3 = violet, red, blue, yellow
COLORS = ["#7b3fbf", "#d62728", "#1f5fd6", "#e6b800"]
MEANS = [[0.0, 0.0], [-4.5, -0.5], [4.5, 0.5], [0.5, 4.5]]
COVS = [
    [[1.0, 0.0], [0.0, 1.0]],
    [[1.2, 0.5], [0.5, 0.8]],
    [[0.7, -0.3], [-0.3, 1.3]],
    [[2.0, 0.0], [0.0, 0.5]],
]


def make_data(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor(MEANS, dtype=torch.float64)
    chol = torch.linalg.cholesky(torch.tensor(COVS, dtype=torch.float64))
    y = torch.arange(len(MEANS)).repeat_interleave(n_per_class)
    z = torch.randn(y.numel(), 2, dtype=torch.float64, generator=g)
    x = mu[y] + torch.einsum("nij,nj->ni", chol[y], z)
    return x.float(), y


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="genmix_fig14.png", help="PNG path")
    parser.add_argument("--n", type=int, default=150, help="training points per class")
    parser.add_argument("--n-aug", type=int, default=40, help="GenMix points per class pair")
    parser.add_argument("--lam", type=float, default=0.5, help="target ratio p_c1/(p_c1+p_c2)")
    parser.add_argument("--eps", type=float, default=1e-3, help="ratio tolerance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    x, y = make_data(args.n, args.seed)
    density = mixkit.Gaussian().fit(x, y)
    gen = torch.Generator().manual_seed(args.seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 1-2 pair is short on purpose; reported below
        x_aug, y_aug, info = genmix_dataset(
            density, x, y, args.n_aug, lam=args.lam, eps=args.eps, generator=gen,
            return_info=True,
        )
    pairs = info["pairs"]
    for (c1, c2), count in zip(pairs.tolist(), info["counts"].tolist(), strict=True):
        print(f"pair ({c1}, {c2}): {count} GenMix points")
    print(
        f"{info['candidates']} candidates, {info['within_eps']} within eps, "
        f"{info['intruding']} intruding (discarded), {info['rounds']} rounds"
    )

    # vanilla mixup midpoints of random different-class pairs, for comparison
    perm = torch.randperm(x.shape[0], generator=gen)
    diff = y != y[perm]
    mix_pts = (0.5 * (x + x[perm]))[diff][: x_aug.shape[0]]

    lo, hi = x.min(0).values - 1.5, x.max(0).values + 1.5
    gx, gy = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), 300),
        torch.linspace(float(lo[1]), float(hi[1]), 300),
        indexing="xy",
    )
    regions = density.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).argmax(1)
    cmap = ListedColormap(COLORS)

    fig, axes = plt.subplots(1, 2, figsize=(13, 6), sharex=True, sharey=True)
    panels = [
        (axes[0], x_aug, f"GenMix points (lam={args.lam}, n_aug={args.n_aug} per pair)"),
        (axes[1], mix_pts, "vanilla mixup midpoints (lam=0.5)"),
    ]
    for ax, pts, title in panels:
        ax.contourf(gx, gy, regions.reshape(gx.shape), levels=[-0.5, 0.5, 1.5, 2.5, 3.5],
                    cmap=cmap, alpha=0.12)
        for c, color in enumerate(COLORS):
            sel = y == c
            ax.scatter(x[sel, 0], x[sel, 1], s=9, color=color, alpha=0.55, label=f"class {c}")
        if ax is axes[1]:
            ax.scatter(pts[:, 0], pts[:, 1], s=22, marker="X", color="black",
                       edgecolor="white", linewidth=0.5, label="mixup midpoints")
        ax.set_title(title)
        ax.set_aspect("equal")
    # GenMix points: face = colour of the pair's first class, edge = of its second
    pc = pairs[info["pair_index"]]
    axes[0].scatter(x_aug[:, 0], x_aug[:, 1], s=40, marker="X", zorder=3, linewidth=1.2,
                    c=[COLORS[c] for c in pc[:, 0].tolist()],
                    edgecolors=[COLORS[c] for c in pc[:, 1].tolist()], label="GenMix points")
    for (c1, c2), count in zip(pairs.tolist(), info["counts"].tolist(), strict=True):
        if count == 0:
            m = 0.5 * (torch.tensor(MEANS[c1]) + torch.tensor(MEANS[c2]))
            axes[0].annotate(f"pair ({c1},{c2}): all intrude\non class 0, none kept",
                             xy=(float(m[0]), float(m[1]) - 3.3), ha="center", fontsize=9)
    for ax in axes:
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle("GenMix on 4 Gaussian classes (cf. Fig. 14a of the GenLabel paper); "
                 "background: regions of the fitted generative classifier")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
