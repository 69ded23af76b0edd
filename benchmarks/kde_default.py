"""Which KDE kernel should be mixkit's default? (issue 12 point 6)

    PYTHONPATH=.:plugins python -m benchmarks.kde_default [--seeds 3] [--epochs 100] [--out DIR]

Kernels compared, all ``mixkit.KDE``:

* ``iso-cv``: isotropic kernel ``h^2 I``, one leave-one-out bandwidth for all classes (the
  default before this comparison);
* ``class-scott``: the paper's kernel ``h^2 Sigma_c`` with Scott's factor ``n^(-1/(d+4))``
  (the official code: scipy's ``gaussian_kde`` on each class);
* ``class-cv``: ``h^2 Sigma_c`` with the factor ``h`` cross-validated (leave-one-out, shared);
* on the synthetic sets also ``class-paper``: ``h^2 Sigma_c`` with the paper protocol's fixed
  factor (0.1 for Two-circle, 0.2 for Circle and Moon).

Data: Two-circle (centres at +-1.2, as the official code), Circle and Moon from
``mixkit.datasets.synthetic`` (a fresh draw of the same size as the test set), and the three
sets of ``datasets/multiclass`` (glass, penguins, crabs; a stratified 70/30 split per seed,
standardized on the training part). Per kernel and seed: the held-out log-likelihood
``mean log p_y(x)`` of the test points under their own class, the generative classifier's
accuracy (argmax of ``log p_c(x) + log prior_c``), and the test accuracy of a small MLP
(2 x 64, ReLU, Adam 3e-3, batch 128, last epoch scored) trained with mixup (alpha 1, one lam
per batch) + GenLabel(KDE) (gamma 1), beside plain mixup. Writes ``results.json`` and
``report.md`` to ``--out`` (default ``benchmarks/results/kde_default``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mixkit
from mixkit.datasets import synthetic
from mixkit.datasets.tabular import load_openml, standardize

ROOT = Path(__file__).resolve().parents[1]
MULTICLASS_DIR = Path("/work/shared/datasets/multiclass")
KERNELS = {
    "iso-cv": dict(kernel_covariance="isotropic"),
    "class-scott": dict(kernel_covariance="class", bandwidth="scott"),
    "class-cv": dict(kernel_covariance="class"),
}
#: the paper protocol's fixed factors of the class covariance (official code, Syn_model.py)
PAPER_FACTOR = {"two_circle": 0.1, "circle": 0.2, "moon": 0.2}


def synthetic_split(name: str, seed: int) -> tuple[torch.Tensor, ...]:
    def draw(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "two_circle":
            return synthetic.two_circle(shift=2.4, seed=s)
        return synthetic.load_synthetic(name, seed=s)

    x_tr, y_tr = draw(seed)
    x_te, y_te = draw(seed + 10_000)
    return x_tr.float(), y_tr.long(), x_te.float(), y_te.long()


def multiclass_split(name: str, seed: int) -> tuple[torch.Tensor, ...]:
    data = load_openml(name, MULTICLASS_DIR, fetch=False)
    gen = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(data), dtype=torch.bool)
    for c in range(data.num_classes):  # stratified 30% test
        idx = (data.y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test[idx[: round(0.3 * len(idx))]] = True
    x_tr, x_te = standardize(data.x[~test], data.x[test])
    return x_tr.float(), data.y[~test], x_te.float(), data.y[test]


def density_metrics(kde: mixkit.KDE, x_te: torch.Tensor, y_te: torch.Tensor) -> dict[str, float]:
    log_p = kde.log_prob(x_te.double())
    own = log_p.gather(1, y_te[:, None]).squeeze(1)
    pred = (log_p + kde.class_prior().log()).argmax(1)
    return {
        # a test point outside a degenerate class kernel scores -inf: report how often
        "heldout_ll": own.clamp_min(-1e4).mean().item(),
        "heldout_inf": (~torch.isfinite(own)).double().mean().item(),
        "gen_acc": (pred == y_te).double().mean().item(),
    }


def train_mlp(x: torch.Tensor, y: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor, k: int,
              genlabel: mixkit.GenLabel | None, epochs: int, seed: int) -> float:
    """Mixup (+ GenLabel when given) on a 2 x 64 MLP; test accuracy of the last epoch."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, k))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    mixer = mixkit.Mixup(alpha=1.0, num_classes=k)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, 128):
            idx = perm[start:start + 128]
            batch = mixer(x[idx], y[idx], generator=gen)
            if genlabel is not None:
                batch = genlabel(batch)
            loss = F.cross_entropy(net(batch.x), batch.y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (net(x_te).argmax(1) == y_te).double().mean().item()


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    sets = [("two_circle", "synthetic"), ("circle", "synthetic"), ("moon", "synthetic"),
            ("glass", "multiclass"), ("penguins", "multiclass"), ("crabs", "multiclass")]
    rows = []
    for name, family in sets:
        kernels = dict(KERNELS)
        if family == "synthetic":
            kernels["class-paper"] = dict(kernel_covariance="class", bandwidth=PAPER_FACTOR[name])
        for seed in range(args.seeds):
            split = synthetic_split if family == "synthetic" else multiclass_split
            x_tr, y_tr, x_te, y_te = split(name, seed)
            k = int(y_tr.max()) + 1
            t0 = time.perf_counter()
            acc = train_mlp(x_tr, y_tr, x_te, y_te, k, None, args.epochs, seed)
            rows.append({"dataset": name, "family": family, "seed": seed, "kernel": "mixup",
                         "mlp_acc": acc, "seconds": time.perf_counter() - t0})
            for kname, kw in kernels.items():
                t0 = time.perf_counter()
                kde = mixkit.KDE(**kw, num_classes=k).fit(x_tr, y_tr)
                row = {"dataset": name, "family": family, "seed": seed, "kernel": kname,
                       "h": kde.bandwidth_.tolist()}
                row.update(density_metrics(kde, x_te, y_te))
                genlabel = mixkit.GenLabel(kde, gamma=1.0)
                row["mlp_acc"] = train_mlp(x_tr, y_tr, x_te, y_te, k, genlabel, args.epochs, seed)
                row["fallback_share"] = genlabel.stats()["fallback"] / max(1, genlabel.stats()["samples"])
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(json.dumps({key: row[key] for key in row if key != "h"}), flush=True)
    return {"rows": rows}


def summarize(rows: list[dict]) -> dict:
    table: dict = {}
    for row in rows:
        cell = table.setdefault(row["dataset"], {}).setdefault(row["kernel"], {})
        for key in ("heldout_ll", "heldout_inf", "gen_acc", "mlp_acc", "fallback_share"):
            if key in row:
                cell.setdefault(key, []).append(row[key])
    out: dict = {}
    for ds, kernels in table.items():
        for kname, metrics in kernels.items():
            out.setdefault(ds, {})[kname] = {
                key: (sum(v) / len(v), _sd(v)) for key, v in metrics.items()
            }
    return out


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fmt(cell: dict, key: str, scale: float = 1.0, digits: int = 1) -> str:
    if key not in cell:
        return "-"
    mean, sd = cell[key]
    return f"{scale * mean:.{digits}f} ± {scale * sd:.{digits}f}"


def render(summary: dict, meta: dict) -> str:
    lines = [
        "# KDE default: isotropic CV kernel vs the class-covariance kernel",
        "",
        f"`{meta['command']}` ({meta['seconds']:.0f} s, {meta['seeds']} seeds, "
        f"{meta['epochs']} epochs, commit {meta['commit']}, {meta['machine']}, 1 thread).",
        "Settings: see the docstring of `benchmarks/kde_default.py`. Mean ± sd over seeds.",
        "",
        "| dataset | kernel | held-out log-lik. | gen. classifier acc. % | MLP mixup+GenLabel acc. % |",
        "|---|---|---|---|---|",
    ]
    for ds, kernels in summary.items():
        for kname, cell in kernels.items():
            ll = _fmt(cell, "heldout_ll", digits=3)
            if "heldout_inf" in cell and cell["heldout_inf"][0] > 0:
                ll += f" ({100 * cell['heldout_inf'][0]:.1f}% -inf)"
            lines.append(
                f"| {ds} | {kname} | {ll} | {_fmt(cell, 'gen_acc', 100)} | {_fmt(cell, 'mlp_acc', 100)} |"
            )
    lines += ["", "Best kernel per dataset (mean; the default `iso-cv` marked when within one sd "
              "of the best):", ""]
    for key, label in (("mlp_acc", "MLP mixup+GenLabel"), ("gen_acc", "generative classifier"),
                       ("heldout_ll", "held-out log-lik.")):
        parts = []
        for ds, kernels in summary.items():
            scored = {kn: c[key] for kn, c in kernels.items() if key in c and kn != "mixup"}
            best = max(scored, key=lambda kn: scored[kn][0])
            iso = scored.get("iso-cv")
            near = iso is not None and best != "iso-cv" and iso[0] >= scored[best][0] - scored[best][1]
            parts.append(f"{ds}: {best}" + (" (iso-cv within 1 sd)" if near else ""))
        lines.append(f"- {label}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/kde_default")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    meta = {
        "command": "python -m benchmarks.kde_default " + " ".join(argv or sys.argv[1:]),
        "seconds": time.perf_counter() - t0, "seeds": args.seeds, "epochs": args.epochs,
        "commit": commit, "machine": platform.machine() + " " + platform.python_version(),
        "torch": torch.__version__,
    }
    summary = summarize(result["rows"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, **result},
                                                      indent=1))
    (args.out / "report.md").write_text(render(summary, meta))
    return {"meta": meta, "summary": summary}


if __name__ == "__main__":
    main(sys.argv[1:])
