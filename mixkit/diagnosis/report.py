"""What a :class:`~mixkit.diagnosis.measure.Diagnosis` looks like: markdown, JSON and a picture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from mixkit.diagnosis.measure import Diagnosis

_VERDICT = {
    "mixup": "plain mixup",
    "mixup+genlabel": "mixup + GenLabel",
    "no-mixup": "no mixup",
}


def to_json(diag: Diagnosis) -> str:
    """The diagnosis as JSON (NaN written as null)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(w) for k, w in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(w) for w in v]
        return v

    return json.dumps(clean(diag.to_dict()), indent=2)


def to_markdown(diag: Diagnosis, picture: str | None = None) -> str:
    """A short human summary: the verdict first, then the numbers behind it."""
    verdict = _VERDICT[diag.recommendation]
    if diag.density:
        verdict += f" with density `{diag.density}`, starting gamma {diag.gamma}"
    lines = [
        "# mixkit diagnose", "",
        f"**Recommendation: {verdict}.** {diag.reason[0].upper() + diag.reason[1:]}.", "",
        f"Data: {diag.n} samples, {diag.d} features, {diag.num_classes} classes. "
        f"{diag.n_mixed} mixed points, lam ~ Beta({diag.alpha}, {diag.alpha}), pairs drawn uniformly "
        f"from the training split, seed {diag.seed}. Intervals are 95% Wilson intervals.", "",
        "| measure | mixed points |", "|---|---|",
        f"| intrusion (nearest training point in neither parent class) | {diag.intrusion} |",
        f"| label conflict of the mixup label with the nearest class | {diag.conflict_mixup} |",
    ]
    if diag.worst_pairs:
        lines += ["", "Worst class pairs (intrusion rate of their mixed points):", "",
                  "| pair | intrusion | mixed points |", "|---|---|---|"]
        lines += [f"| {a} - {b} | {p.rate} | {p.rate.n} |" for p, (a, b) in
                  ((p, p.classes) for p in diag.worst_pairs)]
    lines += ["", "| density | fits (train >= 95%) | train acc | held-out acc | held-out log-lik / point "
              "| intrusion (Bayes label) | conflict with GenLabel | fit s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in diag.densities:
        if r.error:
            lines.append(f"| {r.name} | failed: {r.error} | | | | | | |")
            continue
        lines.append(
            f"| {r.name} | {'yes' if r.fits else 'no'} | {100 * r.train_accuracy:.1f}% | "
            f"{100 * r.heldout_accuracy:.1f}% | {r.heldout_loglik_mean:.3f} | {r.intrusion} | {r.conflict} | "
            f"{r.fit_seconds:.2f} |")
    lines += ["", "These numbers measure the mechanisms of the GenLabel paper (manifold intrusion, label "
              "conflict, fit of the generative model); they predict, not prove, what training will show."]
    if picture:
        lines += ["", f"![diagnosis]({picture})"]
    return "\n".join(lines) + "\n"


def projection(x: Tensor, y: Tensor) -> Tensor:
    """``(d, 2)`` directions for a picture: the two leading discriminant directions (LDA) for
    three or more classes, else the discriminant and the leading principal direction."""
    x = x.double()
    d = x.shape[1]
    if d <= 2:
        return torch.eye(d, 2, dtype=x.dtype)
    k = int(y.max()) + 1
    centre = x.mean(0)
    counts = torch.bincount(y, minlength=k).double().clamp(min=1)
    means = torch.zeros(k, d, dtype=x.dtype).index_add_(0, y, x) / counts[:, None]
    within = x - means[y]
    sw = within.T @ within / x.shape[0] + 1e-6 * torch.eye(d, dtype=x.dtype)
    between = (means - centre) * counts.sqrt()[:, None]
    sb = between.T @ between / x.shape[0]
    chol = torch.linalg.cholesky(sw)
    inv = torch.linalg.solve_triangular(chol, torch.eye(d, dtype=x.dtype), upper=False)
    _, vecs = torch.linalg.eigh(inv @ sb @ inv.T)
    dirs = inv.T @ vecs[:, -2:].flip(1)
    if k == 2:  # one discriminant direction only: add the leading principal direction orthogonal to it
        first = dirs[:, 0] / dirs[:, 0].norm()
        resid = (x - centre) - ((x - centre) @ first)[:, None] * first
        pc = torch.linalg.svd(resid, full_matrices=False).Vh[0]
        dirs = torch.stack([first, pc], 1)
    return dirs / dirs.norm(dim=0, keepdim=True)


def plot(diag: Diagnosis, path: str | Path) -> Path:
    """Save the picture: training data, mixed points coloured by label conflict, and for 2-D data
    the density contours and decision regions of the best-fitting density."""
    import matplotlib  # the `bench` extra; imported here so that `import mixkit` stays light

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = diag.samples
    x_tr, y_tr, x_mix, conflict = s["x_train"], s["y_train"], s["x_mix"], s["conflict"]
    dirs = projection(x_tr, y_tr)
    p_tr, p_mix = (x_tr.double() @ dirs).numpy(), (x_mix.double() @ dirs).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    cmap = plt.get_cmap("tab10" if diag.num_classes <= 10 else "tab20")
    name = diag.density or next(iter(diag.fitted), None)
    if diag.d == 2 and name is not None:
        density = diag.fitted[name]
        lo, hi = p_tr.min(0), p_tr.max(0)
        pad = 0.15 * (hi - lo)
        gx, gy = torch.meshgrid(torch.linspace(lo[0] - pad[0], hi[0] + pad[0], 200, dtype=torch.float64),
                                torch.linspace(lo[1] - pad[1], hi[1] + pad[1], 200, dtype=torch.float64),
                                indexing="xy")
        grid = torch.stack([gx.flatten(), gy.flatten()], 1)
        with torch.no_grad():
            lp = density.log_prob(grid.float()).double()
        top = lp.max(1).values
        peak = float(top.max())
        # regions only where some class has density: far from all data the argmax says nothing
        regions = torch.where(top > peak - 12, lp.argmax(1).double(), torch.nan).reshape(gx.shape).numpy()
        bounds = [c - 0.5 for c in range(diag.num_classes + 1)]
        for ax in axes:
            ax.contourf(gx.numpy(), gy.numpy(), regions, levels=bounds, alpha=0.15, cmap=cmap,
                        vmin=0, vmax=max(diag.num_classes - 1, 1))
            # log-density levels from the peak down: where the density puts its mass
            ax.contour(gx.numpy(), gy.numpy(), top.reshape(gx.shape).numpy(),
                       levels=[peak - 8, peak - 4, peak - 2, peak - 1], colors="k", linewidths=0.5, alpha=0.5)
    for ax in axes:
        ax.set_aspect("equal" if diag.d <= 2 else "auto")
        ax.scatter(p_tr[:, 0], p_tr[:, 1], c=y_tr.numpy(), cmap=cmap, s=6, alpha=0.6,
                   vmin=0, vmax=max(diag.num_classes - 1, 1))
    ok = ~conflict.numpy()
    axes[0].set_title("training data" + (f" and {name} (contours, regions)" if diag.d == 2 and name else ""))
    axes[1].scatter(p_mix[ok, 0], p_mix[ok, 1], s=5, c="0.6", label="mixup label agrees with nearest class")
    axes[1].scatter(p_mix[~ok, 0], p_mix[~ok, 1], s=7, c="crimson",
                    label=f"conflict ({100 * diag.conflict_mixup.value:.1f}%)")
    axes[1].set_title(f"{diag.n_mixed} mixed points, alpha={diag.alpha}")
    axes[1].legend(loc="best", fontsize=8)
    if diag.d > 2:
        for ax in axes:
            ax.set_xlabel("discriminant 1")
            ax.set_ylabel("discriminant 2" if diag.num_classes > 2 else "principal direction")
    fig.suptitle(f"mixkit diagnose: {_VERDICT[diag.recommendation]}"
                 + (f" ({diag.density}, gamma {diag.gamma})" if diag.density else ""))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
