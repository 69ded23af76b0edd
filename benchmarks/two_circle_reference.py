"""Two-circle under the paper protocol, one plain ``nn.Module`` at a time: a check of the
batched trainer, and of the paper's vanilla number, by a second route.

    PYTHONPATH=.:plugins python -m benchmarks.two_circle_reference [--trials 20] [--out DIR]

The synthetic suite trains all its Two-circle models as one batched grid
(:func:`benchmarks.batched.train_batched`). Its vanilla accuracy under ``--protocol paper``
(99.7) is far above the paper's 91.25 +- 8.14, so this script trains the same models as the
official ``Syn_model.py`` does, one ``nn.Module`` per run through the harness's one-model
loop (:func:`benchmarks.loop.train_module`): ``nn.Linear`` layers (64, 128, 128, 128) with
torch's own initialisation, SGD lr 0.1 (momentum 0.9, weight decay 1e-4) decayed x0.1 after
epochs 20 and 50, gradient norm clipped at 5, batch 128, 100 epochs, the last epoch scored,
one lam per batch for mixup, fresh training and test draws of the suite's Two-circle (centres
at x = +-1.2) per trial, seeds 43, 44, ... as the official ``seed(42 + trial)``. If the
batched trainer were wrong, the two routes would disagree; if the paper's number came from
this protocol, the vanilla runs here would fail as often as its +-8.14 says. The same trials
then train as one batched grid (same draws; each model its own init and batch stream), and
the report puts both routes side by side, with the means of consecutive 5-trial windows (what
a 5-seed run such as the paper's can report).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mixkit
from benchmarks.batched import ModelSpec, Stream, TrainConfig, evaluate, train_batched
from benchmarks.common import mean_std, set_progress
from benchmarks.loop import mixing_step, train_module
from benchmarks.models import relu_mlp
from benchmarks.protocols import synthetic as protocols
from benchmarks.report import PAPER_TABLE1, md_table
from benchmarks.suites.synthetic import draw

METHODS = ("vanilla", "mixup")


def run_trial(method: str, trial: int, proto: protocols.SyntheticProtocol, epochs: int, n: int) -> float:
    """Test accuracy (%) of one official-protocol run of ``method`` on Two-circle."""
    seed = 42 + trial
    shift = proto.two_circle_shift
    x, y = draw("two_circle", n, 100 * seed + 1, shift)
    xt, yt = draw("two_circle", n, 100 * seed + 3, shift)
    torch.manual_seed(seed)  # nn.Linear's initialisation, as the official seed() sets it
    body, width = relu_mlp(2, proto.hidden["two_circle"])
    net = nn.Sequential(body, nn.Linear(width, 2))
    g = torch.Generator().manual_seed(seed)
    # one lam per batch, as the official mixup_data
    mixer = mixkit.Mixup(1.0, num_classes=2) if method == "mixup" else None
    step_loss = mixing_step(net, g, mixer=mixer)
    marks = [m for m in proto.milestones["two_circle"] or () if m < epochs]
    train_module(net, step_loss, x, y, epochs=epochs, batch_size=proto.batch_size, generator=g,
                 lr=proto.lr, momentum=proto.momentum, weight_decay=proto.weight_decay,
                 milestones=marks, clip_norm=proto.clip_norm)
    net.eval()
    with torch.no_grad():
        return 100 * float((net(xt).argmax(1) == yt).float().mean())


def run_batched(trials: int, proto: protocols.SyntheticProtocol, epochs: int, n: int) -> dict[str, list[float]]:
    """The same trials (same draws, each model its own init and batch stream) as one batched grid."""
    streams, specs, tests = [], [], []
    shift = proto.two_circle_shift
    for t in range(1, trials + 1):
        seed = 42 + t
        x, y = draw("two_circle", n, 100 * seed + 1, shift)
        tests.append(draw("two_circle", n, 100 * seed + 3, shift))
        for mi, method in enumerate(METHODS):
            streams.append(Stream(x, y, torch.arange(len(y)), {}, 1000 * mi + seed))
            specs.append(ModelSpec(len(streams) - 1, method, proto.lr, init_seed=seed, tag={"method": method}))
    marks = tuple(m for m in proto.milestones["two_circle"] or () if m < epochs)
    cfg = TrainConfig(epochs=epochs, batch_size=proto.batch_size, optimizer="sgd", momentum=proto.momentum,
                      weight_decay=proto.weight_decay, milestone_epochs=marks,
                      hidden=proto.hidden["two_circle"], clip_norm=proto.clip_norm)
    res = train_batched(streams, specs, cfg, 2, desc="two-circle reference")
    acc = (100 * evaluate(res, [tests[i // len(METHODS)] for i in range(len(specs))], "last")).tolist()
    return {m: [a for a, sp in zip(acc, specs) if sp.tag["method"] == m] for m in METHODS}


def _summary(accs: list[float]) -> dict[str, Any]:
    mean, std = mean_std(accs)
    first5 = mean_std(accs[:5])
    windows = [mean_std(accs[i:i + 5])[0] for i in range(0, len(accs) - 4, 5)]
    return {"mean": mean, "std": std, "accs": accs, "first5_mean": first5[0], "first5_std": first5[1],
            "below_95": sum(a < 95 for a in accs), "five_trial_means": windows}


def run(trials: int, epochs: int, n: int) -> dict[str, Any]:
    proto = protocols.get("paper")
    t0 = time.perf_counter()
    out: dict[str, Any] = {"trials": trials, "epochs": epochs, "n_per_circle_set": n, "results": {}}
    for method in METHODS:
        out["results"][method] = _summary([run_trial(method, t, proto, epochs, n) for t in range(1, trials + 1)])
    out["batched"] = {m: _summary(a) for m, a in run_batched(trials, proto, epochs, n).items()}
    out["wall_s"] = time.perf_counter() - t0
    return out


def markdown(res: dict[str, Any]) -> str:
    ref = PAPER_TABLE1["two_circle"]
    rows = []
    for route, key in (("plain nn.Module loop", "results"), ("batched trainer", "batched")):
        for m, r in res[key].items():
            rows.append((m, route, f"{ref[m][0]:.2f}±{ref[m][1]:.2f}",
                         f"{r['first5_mean']:.2f}±{r['first5_std']:.2f}", f"{r['mean']:.2f}±{r['std']:.2f}",
                         f"{r['below_95']} of {res['trials']}",
                         ", ".join(f"{a:.2f}" for a in r["five_trial_means"]),
                         ", ".join(f"{a:.1f}" for a in r["accs"])))
    return "\n".join([
        "# Two-circle, paper protocol: a plain nn.Module per run beside the batched trainer", "",
        f"{res['trials']} trials (seeds 43...), {res['epochs']} epochs, {res['n_per_circle_set']} points per "
        f"circle set; `python -m benchmarks.two_circle_reference --trials {res['trials']}`, "
        f"{res['wall_s']:.0f} s. See the module docstring for the protocol. Both routes train on the "
        "same draws; inits and batch orders are each route's own.", "",
        md_table(["method", "route", "paper (5 trials)", "ours, trials 1-5", f"ours, all {res['trials']} trials",
                  "runs below 95%", "means of 5 consecutive trials", "per trial"], rows), "",
        "Vanilla training under this protocol gets stuck (76-95%) on some initialisations, in "
        "both routes alike, so a 5-trial mean is a draw from a wide distribution: the paper's "
        "91.25±8.14 and the synthetic suite's own 5-seed figure "
        "(`benchmarks/results/synthetic/paper/`) are two such draws.", ""])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--n", type=int, default=1000, help="points per circle set (the official 1000)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/two_circle_reference"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    set_progress(False)
    res = run(args.trials, args.epochs, args.n)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    (args.out / "report.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
