"""``mixkit demo``: vanilla vs mixup vs mixup+GenLabel on built-in data, no download.

Three datasets where mixup is known to hurt (the GenLabel paper's Two-circle
and 9-class Gaussian, appendix E, and iris), two models (a small MLP and
logistic regression), three methods. Prints the accuracy table, writes
``results.json`` and a figure in the spirit of the paper's Fig. 6.
Needs the ``bench`` extra (scikit-learn for iris, matplotlib, tqdm).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import mixkit
from mixkit.baselines import nearest_labels
from mixkit.datasets import gaussian9, gaussian9_means, load_sklearn, standardize, two_circle


@dataclass
class Task:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    relabel: mixkit.GenLabel
    epochs: int
    lr: float = 0.1


def make_tasks(seed: int) -> list[Task]:
    tasks = []
    x, y = two_circle(1000, seed=seed)
    xt, yt = two_circle(1000, seed=seed + 1000)
    # concentric rings are not Gaussian: a KDE with a cross-validated bandwidth follows them
    tasks.append(Task("Two-circle", x, y, xt, yt, 2, mixkit.GenLabel("kde").fit(x, y), 60))
    x, y = gaussian9(200, seed=seed)
    xt, yt = gaussian9(200, seed=seed + 1000)
    # as the paper (appendix E): the ground-truth means and covariance 0.1 I
    truth = mixkit.Gaussian(covariance="diag").set_parameters(gaussian9_means(), torch.full((9, 2), 0.1))
    tasks.append(Task("9-class Gaussian", x, y, xt, yt, 9, mixkit.GenLabel(truth), 30, lr=0.01))
    iris = load_sklearn("iris")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(iris.y), generator=g)
    tr, te = perm[:100], perm[100:]
    x, xt = standardize(iris.x[tr], iris.x[te])
    y, yt = iris.y[tr], iris.y[te]
    tasks.append(Task("iris", x, y, xt, yt, 3, mixkit.GenLabel("gaussian").fit(x, y), 100))
    return tasks


def make_model(kind: str, d: int, k: int) -> nn.Module:
    if kind == "logistic":
        return nn.Linear(d, k)
    # the paper's 4-layer FC net for the 2-D sets (64-128-128 hidden units)
    return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(),
                         nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, k))


def train(task: Task, model_kind: str, method: str, seed: int, epochs: int) -> nn.Module:
    torch.manual_seed(seed)
    model = make_model(model_kind, task.x_train.shape[1], task.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=task.lr if model_kind == "mlp" else 5 * task.lr,
                          momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2, 3 * epochs // 4], 0.1)
    relabel = task.relabel if method == "mixup+GenLabel" else None
    mix = mixkit.MixCollate("mixup", num_classes=task.num_classes, relabel=relabel, alpha=1.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    n = task.x_train.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, 128):
            idx = perm[start:start + 128]
            x, y = task.x_train[idx], task.y_train[idx]
            if method == "vanilla":
                target = torch.nn.functional.one_hot(y, task.num_classes).float()
            else:
                x, target = mix(x, y)
            loss = torch.nn.functional.cross_entropy(model(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean()) * 100


METHODS = ("vanilla", "mixup", "mixup+GenLabel")
MODELS = ("mlp", "logistic")


def run_demo(out_dir: str | Path = "demo_out", epochs: int | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Train every (dataset, model, method), print the table, write JSON and a PNG."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    # the models are tiny: a second intra-op thread only adds synchronisation (several times
    # slower on a busy 2-core machine)
    torch.set_num_threads(1)
    try:
        return _run(out, epochs, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, epochs: int | None, seed: int, progress: bool) -> dict:
    start = time.perf_counter()
    tasks = make_tasks(seed)
    jobs = [(t, m, meth) for t in tasks for m in MODELS for meth in METHODS]
    bar = _progress(len(jobs), progress)
    results: dict[str, dict[str, dict[str, float]]] = {}
    boundary_models: dict[tuple[str, str], nn.Module] = {}
    for task, model_kind, method in jobs:
        bar.set_description(f"{task.name} / {model_kind} / {method}")
        model = train(task, model_kind, method, seed, epochs or task.epochs)
        acc = accuracy(model, task.x_test, task.y_test)
        results.setdefault(task.name, {}).setdefault(model_kind, {})[method] = round(acc, 2)
        if model_kind == "mlp":
            boundary_models[(task.name, method)] = model
        bar.update(1)
    bar.close()
    conflicts = {task.name: label_conflicts(task, seed) for task in tasks}
    elapsed = time.perf_counter() - start
    print(format_table(results))
    print("\nmixed points whose top-1 label differs from the nearest training point's class (%)\n")
    print("| dataset | mixup | mixup+GenLabel |\n|---|---:|---:|")
    for name, (mix, gen) in conflicts.items():
        print(f"| {name} | {mix:.1f} | {gen:.1f} |")
    figure = out / "decision_boundaries.png"
    plot_figure(tasks[:2], boundary_models, figure, seed)
    summary = {"accuracy": results, "label_conflicts": conflicts, "seconds": round(elapsed, 1), "seed": seed}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {figure} and {out / 'results.json'} ({elapsed:.0f} s)")
    return results


def label_conflicts(task: Task, seed: int) -> tuple[float, float]:
    """Share of mixed points whose top-1 label is not the class of the nearest training point
    (the max-margin label of Fig. 6), for mixup's label and GenLabel's."""
    batch = mixkit.Mixup(num_classes=task.num_classes, per_sample=True, seed=seed)(task.x_train, task.y_train)
    truth = nearest_labels(batch.x, task.x_train, task.y_train)
    gen = task.relabel(batch).y.argmax(1)
    mix = batch.y.argmax(1)
    return (round(float((mix != truth).float().mean()) * 100, 2),
            round(float((gen != truth).float().mean()) * 100, 2))


def format_table(results: dict) -> str:
    lines = ["test accuracy (%)", "",
             "| dataset | model | " + " | ".join(METHODS) + " |",
             "|---|---|" + "---:|" * len(METHODS)]
    for name, per_model in results.items():
        for model_kind, accs in per_model.items():
            lines.append(f"| {name} | {model_kind} | " + " | ".join(f"{accs[m]:.1f}" for m in METHODS) + " |")
    return "\n".join(lines)


def plot_figure(tasks: list[Task], models: dict, path: Path, seed: int) -> None:
    """Fig. 6 style: data, top-1 of mixup labels, top-1 of GenLabel labels, three boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 6, figsize=(21, 3.6 * len(tasks)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for row, task in enumerate(tasks):
        x, y = task.x_train, task.y_train
        batch = mixkit.Mixup(num_classes=task.num_classes, seed=seed)(x, y)
        if task.name.startswith("9-class"):  # the paper fixes lam = 0.6 for this panel
            perm = batch.index
            x_mix = 0.6 * x + 0.4 * x[perm]
            y1 = torch.nn.functional.one_hot(y, task.num_classes).float()
            y_mix = 0.6 * y1 + 0.4 * y1[perm]
            batch = mixkit.MixedBatch(x_mix, y_mix, torch.full((len(y),), 0.6), perm, y, y_mix)
        relabeled = task.relabel(batch)
        panels = [("training data", x, y), ("mixup: top-1 label", batch.x, batch.y.argmax(1)),
                  ("GenLabel: top-1 label", relabeled.x, relabeled.y.argmax(1))]
        for col, (title, px, py) in enumerate(panels):
            ax = axes[row, col]
            ax.scatter(px[:, 0], px[:, 1], c=cmap(py.numpy() % 10), s=3)
            ax.set_title(f"{task.name}: {title}", fontsize=9)
        lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 300), torch.linspace(lo[1], hi[1], 300), indexing="xy")
        grid = torch.stack([gx.flatten(), gy.flatten()], 1)
        for col, method in enumerate(METHODS, start=3):
            ax = axes[row, col]
            with torch.no_grad():
                pred = models[(task.name, method)](grid).argmax(1).reshape(gx.shape)
            ax.contourf(gx, gy, pred, levels=torch.arange(task.num_classes + 1) - 0.5, cmap="tab10",
                        vmin=0, vmax=9, alpha=0.35)
            ax.scatter(x[:, 0], x[:, 1], c=cmap(y.numpy() % 10), s=2)
            ax.set_title(f"{task.name}: {method} (MLP)", fontsize=9)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class _progress:
    """tqdm when installed and wanted; otherwise a line per finished job."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.total, self.done, self.enabled = total, 0, enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total)
            except ImportError:
                pass
        self.desc = ""

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self.bar is not None:
            self.bar.set_description(desc)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {self.desc}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
