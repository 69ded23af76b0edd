"""GenMix in a network's feature space (appendix F.4 of the GenLabel paper), both ways.

Trains a small CNN on scikit-learn's 8x8 digits:

1. **online** (Algorithm 3 style): an :class:`mixkit.OnlineGaussian` of the penultimate
   features is updated every step; GenMix places mixed features where the two classes'
   likelihood ratio is ``lam`` and the head (and, through the graph, the body) trains on
   the clean plus the mixed features;
2. **frozen** (Algorithm 2 style): the trained body is frozen, a Gaussian is fitted once on
   its features and a fresh head is trained on clean + GenMix features.

    python examples/genmix_features.py [--epochs 15]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import mixkit
from mixkit.datasets import load_digits_images
from mixkit.nn import FeatureGenMix


def small_cnn(k: int) -> tuple[nn.Module, nn.Module]:
    body = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(),
    )
    return body, nn.Linear(64, k)


def train(fgm: FeatureGenMix, params, x, y, epochs: int, seed: int) -> None:
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    fgm.train()
    for _ in range(epochs):
        for rows in torch.randperm(x.shape[0], generator=g).split(64):
            out = fgm.mix(x[rows], y[rows], generator=g)  # clean + GenMix features -> head
            loss = out.loss()  # soft-label cross-entropy; 0 if a batch kept no row
            opt.zero_grad()
            loss.backward()
            opt.step()


def error(model: nn.Module, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return 100 * float((model(x).argmax(1) != y).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = load_digits_images()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))
    tr, te = perm[:1200], perm[1200:]
    k = 10

    body, head = small_cnn(k)
    online = FeatureGenMix(head, body, online=True, num_classes=k, alpha=1.0,
                           covariance="diag", memory=0.95, seed=args.seed)
    train(online, online.parameters(), x[tr], y[tr], args.epochs, args.seed)
    print(f"online GenMix in feature space: test error {error(online, x[te], y[te]):.2f}%  "
          f"{online.mixer.stats()}")

    # frozen: the trained body as a fixed feature map, a Gaussian of its features, a new head
    frozen = FeatureGenMix(nn.Linear(64, k), body, mixkit.Gaussian(covariance="diag", reg_covar=1e-4),
                           num_classes=k, lam=0.5, seed=args.seed).fit(x[tr], y[tr])
    train(frozen, frozen.head.parameters(), x[tr], y[tr], args.epochs, args.seed)
    print(f"frozen features + GenMix head:  test error {error(frozen, x[te], y[te]):.2f}%  "
          f"{frozen.mixer.stats()}")


if __name__ == "__main__":
    main()
