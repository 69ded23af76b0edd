"""Relabeling as a share of a real training step: timm ResNet-18 on CIFAR-shaped batches.

The baseline step is input mixup + forward + backward + SGD step. Against it:

* ``OnlineGenLabel`` (Algorithm 3) in its every-step mode and in its cheaper update mode
  (the extra clean forward is what costs; see :class:`mixkit.OnlineGenLabel`);
* frozen-feature GenLabel (Algorithm 2) with a diagonal Gaussian on the 512-d penultimate
  features: the relabel itself, and the frozen network's forward that produces the features,
  reported apart because a frozen extractor can be much smaller than the trained model.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

import mixkit
from benchmarks.speed.timing import row, timeit

K = 10


def _resnet18(device: torch.device) -> torch.nn.Module:
    import timm

    return timm.create_model("resnet18", num_classes=K).to(device)


def _mean_step(step, device: torch.device, steps: int) -> float:
    return timeit(step, device, calls=steps, repeats=3)


def cheap_mode_kwargs() -> dict:
    """The cheaper update mode of OnlineGenLabel, by whatever name its signature offers."""
    params = inspect.signature(mixkit.OnlineGenLabel).parameters
    for name in ("update_every", "update_interval", "every"):
        if name in params:
            return {name: 8}
    return {}


def step_rows(device: torch.device, quick: bool) -> list[dict]:
    try:
        model = _resnet18(device)
    except ImportError:
        return []
    b = 32 if quick and device.type == "cpu" else 64 if device.type == "cpu" else 128
    steps = 2 if quick and device.type == "cpu" else 8 if device.type == "cpu" else 20
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
    variants = {"OnlineGenLabel, every step": {}}
    cheap = cheap_mode_kwargs()
    if cheap:
        variants[f"OnlineGenLabel, {', '.join(f'{k}={v}' for k, v in cheap.items())}"] = cheap
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
