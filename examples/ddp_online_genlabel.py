"""Online GenLabel (Algorithm 3) under DistributedDataParallel, on the CPU with gloo.

    torchrun --nproc_per_node=2 examples/ddp_online_genlabel.py [--method manifold|mixup]

Each rank trains on its own shard of sklearn's digits (8x8 images) and mixes its own
batch with its own random stream; the density of penultimate features is shared:
every step the per-class counts, sums and sums of squares of all ranks' clean
features are all-reduced before the EMA update, so every rank holds the same density
and relabels with it. A density fitted on rank 0 alone (here a Gaussian on the
pixels) is sent to the other ranks with ``mixkit.distributed.broadcast_density``.
Each rank prints checksums of its statistics and of a relabeled probe batch; they
are equal across ranks, and the script exits with status 1 if they are not.
Run without torchrun it trains on a single process (the helpers are no-ops).

Every rank ends the same way, so the job exits cleanly every time: the objects that
hold the process group are freed, a barrier makes sure no rank is still in a
collective, then the group is destroyed (also after an error). Counted over 20 runs
by ``benchmarks/ddp_exits.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from mixkit import distributed as mkdist
from mixkit.densities.gaussian import Gaussian
from mixkit.nn import ManifoldMixup, OnlineGenLabel


class TinyCNN(nn.Module):
    """Two conv stages (``layer1``, ``layer2``: manifold mixup's default layers) and ``fc``."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                    nn.BatchNorm2d(width), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                    nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def load_digits_tensors():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n_test = 360
    mean, std = x[n_test:].mean(), x[n_test:].std()
    x = (x - mean) / std
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["manifold", "mixup"], default="manifold")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--memory", type=float, default=0.95)
    parser.add_argument("--gamma", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    try:
        same = train_and_check(args)
    except BaseException:
        mkdist.close_process_group(barrier=False)  # the other rank may never reach a barrier
        raise
    # DDP (which holds the group) is gone with train_and_check's frame; every rank waits
    # for the others at a barrier before the group is destroyed
    mkdist.close_process_group()
    return 0 if same else 1


def train_and_check(args: argparse.Namespace) -> bool:
    """Train, broadcast a density, print checksums; True when they agree on every rank."""
    rank, world = mkdist.get_rank(), mkdist.get_world_size()
    x_train, y_train, x_test, y_test = load_digits_tensors()
    train = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True,
                                 seed=args.seed) if world > 1 else None
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler,
                        shuffle=sampler is None, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP broadcasts anyway)
    model: nn.Module = TinyCNN()
    if args.method == "manifold":
        model = ManifoldMixup(model, alpha=2.0, num_classes=10, seed=mkdist.rank_seed(args.seed))
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    online = OnlineGenLabel(10, memory=args.memory, gamma=args.gamma, alpha=1.0,
                            seed=mkdist.rank_seed(args.seed))  # its mixer: input mixup
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    steps = 0
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            logits, y_soft = online.step(model, x, y)  # update density, mix, relabel
            loss = F.cross_entropy(logits, y_soft)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1

    # a density fitted on rank 0 only, then broadcast to everyone
    pixels = Gaussian("diag", num_classes=10)
    if rank == 0:
        pixels.fit(x_train.flatten(1), y_train)
    mkdist.broadcast_density(pixels, src=0)

    model.eval()
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == y_test).float().mean())
        probe = torch.randn(32, online.density.dim, generator=torch.Generator().manual_seed(1))
        relabel_sum = mkdist.density_checksum(online.posterior(probe))
    stats_sum = mkdist.density_checksum(online.density)
    pixel_sum = mkdist.density_checksum(pixels)
    same = all(mkdist.same_on_all_ranks(v) for v in (stats_sum, relabel_sum, pixel_sum))
    print(f"rank {rank}/{world}: {steps} steps, local batch {args.batch_size}, "
          f"classes seen {int(online.density.class_counts.sum())}, test acc {acc:.3f} | "
          f"checksums: statistics {stats_sum:.10e} relabel {relabel_sum:.10e} "
          f"broadcast {pixel_sum:.10e} | identical on all ranks: {same}", flush=True)
    return same


if __name__ == "__main__":
    sys.exit(main())
