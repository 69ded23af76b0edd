"""Relabeling as a share of a real training step: timm ResNet-18 on CIFAR-shaped batches.

The baseline step is input mixup + forward + backward + SGD step. Against it:

* ``OnlineGenLabel`` (Algorithm 3) in its every-step mode and in its cheaper update mode
  (the extra clean forward is what costs; see :class:`mixkit.OnlineGenLabel`);
* frozen-feature GenLabel (Algorithm 2) with a diagonal Gaussian on the 512-d penultimate
  features: the relabel itself, and the frozen network's forward that produces the features,
  reported apart because a frozen extractor can be much smaller than the trained model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import mixkit
from benchmarks.speed.timing import row, timeit

K = 10


def _resnet18(device: torch.device) -> torch.nn.Module:
    import timm

    return timm.create_model("resnet18", num_classes=K).to(device)


#: OnlineGenLabel's cheaper update mode, as the README and the image suite run it
CHEAP_UPDATE_EVERY = 8


def _mean_step(step, device: torch.device, steps: int) -> float:
    # best of 5 means: one step varies by a few % on a shared CPU, which is the size of the
    # differences measured here
    return timeit(step, device, calls=steps, repeats=5)


def step_rows(device: torch.device, quick: bool) -> list[dict]:
    try:
        model = _resnet18(device)
    except ImportError:
        return []
    b = 32 if quick and device.type == "cpu" else 64 if device.type == "cpu" else 128
    # a multiple of CHEAP_UPDATE_EVERY: every mean holds the same number of density updates
    steps = 2 if quick and device.type == "cpu" else 2 * CHEAP_UPDATE_EVERY if device.type == "cpu" else 40
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, K, (b,), generator=g).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    # the same mixing in every variant: OnlineGenLabel's own mixer skips the per-batch checks too
    mix = mixkit.MixCollate("mixup", num_classes=K, seed=0, validate=False)

    def train(logits: torch.Tensor, target: torch.Tensor) -> None:
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def baseline() -> None:
        xm, ym = mix(x, y)
        train(model(xm), ym)

    base = _mean_step(baseline, device, steps)
    case = f"timm resnet18, batch ({b}, 3, 32, 32), {device.type}"
    rows = [row("train", case, "mixup step (baseline)", base, share=0.0)]
    variants = {"OnlineGenLabel, every step": {},
                f"OnlineGenLabel, update_every={CHEAP_UPDATE_EVERY}": {"update_every": CHEAP_UPDATE_EVERY}}
    for label, kwargs in variants.items():
        online = mixkit.OnlineGenLabel(num_classes=K, gamma=0.1, seed=0, validate=False, **kwargs).to(device)

        def online_step(online=online) -> None:
            logits, target = online.step(model, x, y)
            train(logits, target)

        t = _mean_step(online_step, device, steps)
        rows.append(row("train", case, label, t, share=(t - base) / base))

    # Algorithm 2: a diag Gaussian on the frozen network's 512-d features
    frozen = mixkit.frozen_features(_resnet18(device))
    with torch.no_grad():
        feats = frozen(torch.randn(8 * K, 3, 32, 32, generator=g).to(device))
    gl = mixkit.GenLabel("gaussian", covariance="diag").fit(feats.cpu(), torch.arange(8 * K) % K)
    gl.density.to(device)
    batch = mixkit.Mixup(num_classes=K, seed=0)(x, y)
    feat_batch = batch.replace(x=frozen(batch.x))
    relabel = _mean_step(lambda: gl(feat_batch), device, steps * 20)
    extract = _mean_step(lambda: frozen(batch.x), device, steps)
    rows.append(row("train", case, "frozen-feature GenLabel(diag): relabel of 512-d features", relabel,
                    share=relabel / base))
    rows.append(row("train", case, "frozen-feature GenLabel(diag): frozen resnet18 forward (features)", extract,
                    share=extract / base))
    return rows
