"""The tabular suite under ``--protocol paper``: the official code's OpenML procedure.

Per dataset: one fixed split (30% test), features standardized on the training part. In each
of ``trials`` trials, unshuffled ``KFold(folds)`` on the training part scores every
configuration (vanilla, mixup, mixup excluding intrusion at each lr; GenLabel with GM and
with KDE at each lr x gamma) at its **last** epoch; each family keeps its best configuration
(ties: the earlier one, as ``score > best_score`` does); GenLabel (CV) is the best over
lr x {GM, KDE} x gamma. The chosen configurations are refit on the whole training part and
scored on the test part at the last epoch. Every configuration, fold and refit is an
independent run: a training stream of its own (own lam, partners and init), in the same
unshuffled batches. All runs of a trial train as one batched model (CV phase, then refits):
:func:`benchmarks.batched.train_batched`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

import mixkit
from benchmarks.batched import ModelSpec, Stream, TrainConfig, train_batched
from benchmarks.common import mean_std
from benchmarks.protocols.tabular import TabularProtocol
from benchmarks.tabular.data import fixed_split, kfold

FAMILIES = ("vanilla", "mixup", "mixup_exclude_mi", "genlabel_gaussian", "genlabel_kde")
_METHOD = {"vanilla": "vanilla", "mixup": "mixup", "mixup_exclude_mi": "exclude"}


def configs(proto: TabularProtocol, densities: list[str]) -> list[tuple[str, float, float, str | None]]:
    """Every (family, lr, gamma, density) of the CV grid, in the official loop order."""
    out: list[tuple[str, float, float, str | None]] = []
    for fam in ("vanilla", "mixup", "mixup_exclude_mi"):
        out += [(fam, lr, 0.0, None) for lr in proto.lrs]
    for d in densities:
        out += [(f"genlabel_{d}", lr, g, d) for lr in proto.lrs for g in proto.gammas]
    return out


def _spec(stream: int, fam: str, lr: float, gamma: float, dens: str | None, seed: int) -> ModelSpec:
    if dens is None:
        return ModelSpec(stream, _METHOD[fam], lr, init_seed=seed)
    return ModelSpec(stream, "genlabel", lr, gamma=gamma, density=dens, init_seed=seed)


def fit_relabelers(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, proto: TabularProtocol,
                   failures: dict[str, str]) -> tuple[dict[str, mixkit.GenLabel], mixkit.ExcludeIntrusion]:
    """GenLabel per density (the official label: pdfs normalised over classes) and the
    intrusion check, fitted on ``rows``."""
    gls = {}
    for d in proto.densities:
        if d in failures:
            continue
        kw = proto.gaussian if d == "gaussian" else proto.kde
        try:
            gls[d] = mixkit.GenLabel(d, gamma=1.0, **kw).fit(x[rows], y[rows])
        except (ValueError, RuntimeError) as exc:
            failures[d] = f"{type(exc).__name__}: {exc}"
    return gls, mixkit.ExcludeIntrusion().fit(x[rows], y[rows])


def run_dataset(key: str, ds: Any, proto: TabularProtocol, device: str = "cpu",
                mix_pool: int | None = None, trials: int | None = None) -> dict[str, Any]:
    from mixkit.datasets import standardize

    t0, c0 = time.perf_counter(), time.process_time()
    x, y, k = ds.x.float(), ds.y.long(), int(ds.num_classes)
    train, test = fixed_split(y, proto.test_fraction, proto.split_stratified, seed=0)
    _, xs = standardize(x[train], x)
    folds = kfold(len(train), proto.folds)
    failures: dict[str, str] = {}
    fold_fit = [fit_relabelers(xs, y, train[tr], proto, failures) for tr, _ in folds]
    full_fit = fit_relabelers(xs, y, train, proto, failures)
    dens = [d for d in proto.densities if d not in failures]
    grid = configs(proto, dens)
    n_trials = trials or proto.trials
    cfg = TrainConfig(epochs=proto.epochs, batch_size=proto.batch_size, optimizer="adam",
                      weight_decay=1e-4, eval_every=proto.epochs, shuffle=proto.shuffle_batches,
                      mix_pool=mix_pool if mix_pool is not None else proto.mix_pool, device=device)
    per_trial: dict[str, list[float]] = {}
    chosen: dict[str, list[Any]] = {}
    cv_table: list[list[float]] = []
    stats: list[dict[str, Any]] = []
    for t in range(n_trials):
        streams, specs = [], []
        for f, (tr, va) in enumerate(folds):
            gls, ex = fold_fit[f]
            for c, (fam, lr, gm, dn) in enumerate(grid):
                seed = 1_000_003 * (t + 1) + 1009 * f + c
                streams.append(Stream(xs, y, train[tr], {"val": (xs[train[va]], y[train[va]])},
                                      seed, gls, ex))
                specs.append(_spec(len(streams) - 1, fam, lr, gm, dn, seed))
        res = train_batched(streams, specs, cfg, k, desc=f"{key} trial {t} CV")
        stats.append(res.stats)
        val = res.clean["val"][:, -1].view(len(folds), len(grid)).mean(0)  # last epoch, fold mean
        cv_table.append(val.tolist())
        best = _choose(grid, val)
        refit = list(best.items())
        gls, ex = full_fit
        streams2 = [Stream(xs, y, train, {"test": (xs[test], y[test])}, 7_000_001 * (t + 1) + i, gls, ex)
                    for i in range(len(refit))]
        specs2 = [_spec(i, *grid[c], 7_000_001 * (t + 1) + i) for i, (_, c) in enumerate(refit)]
        res2 = train_batched(streams2, specs2, cfg, k, desc=f"{key} trial {t} refit")
        stats.append(res2.stats)
        acc = 100 * res2.clean["test"][:, -1]
        for i, (fam, c) in enumerate(refit):
            per_trial.setdefault(fam, []).append(float(acc[i]))
            chosen.setdefault(fam, []).append({"lr": grid[c][1], "gamma": grid[c][2],
                                               "density": grid[c][3], "cv_acc": 100 * float(val[c])})
    out: dict[str, Any] = {}
    for fam, accs in per_trial.items():
        m, s = mean_std(accs)
        out[fam] = {"mean": m, "std": s, "accs": accs, "chosen": chosen[fam]}
    gen_fit = {}
    for d, gl in full_fit[0].items():
        gen_fit[d] = float(100 * (gl.density.log_prob(xs[train]).argmax(1) == y[train]).float().mean())
    if "gaussian" in full_fit[0]:
        dens_g = full_fit[0]["gaussian"].density
        prior = dens_g.class_prior().log() if proto.generative_prior == "empirical" else 0.0
        pred = (dens_g.log_prob(xs[test]) + prior).argmax(1)
        acc = float(100 * (pred == y[test]).float().mean())
        out["generative_classifier"] = {"mean": acc, "std": 0.0, "accs": [acc]}
    relabel = [r for st in stats for r in st["relabel"]]
    changed = {d: sum(r[d]["changed"] for r in relabel if d in r) /
               max(1, sum(r[d]["samples"] for r in relabel if d in r)) for d in dens}
    return {"dataset": key, "name": ds.name, "openml_id": ds.openml_id, "n": len(y), "d": x.shape[1],
            "k": k, "model": "logreg", "n_test": len(test), "results": out,
            "generative_train_acc": gen_fit, "density_failures": failures,
            "relabel_top1_changed_share": changed, "cv_scores": cv_table,
            "models_trained": sum(st["models"] for st in stats),
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "train_s": sum(st["train_s"] for st in stats),
            "schedule_s": sum(st["schedule_s"] for st in stats),
            "relabel_s": sum(st["relabel_s"] for st in stats)}


def _choose(grid: list[tuple[str, float, float, str | None]], val: torch.Tensor) -> dict[str, int]:
    """Per family the index of its best configuration, first one on ties (strict ``>``), and
    GenLabel (CV): the best over lr x {GM, KDE} x gamma in the official loop order (lr outer)."""
    best: dict[str, int] = {}
    for c, (fam, *_rest) in enumerate(grid):
        if fam not in best or float(val[c]) > float(val[best[fam]]):
            best[fam] = c
    gl = [c for c, g in enumerate(grid) if g[3] is not None]
    if gl:
        order = sorted(gl, key=lambda c: (-grid[c][1], grid[c][3] != "gaussian", grid[c][2]))
        top = order[0]
        for c in order[1:]:
            if float(val[c]) > float(val[top]):
                top = c
        best["genlabel_cv"] = top
    return best


def scaled(proto: TabularProtocol, quick: bool, smoke: bool, seeds: int | None) -> TabularProtocol:
    """The protocol at smoke / quick size (fewer trials, epochs and grid points), or as is."""
    from dataclasses import replace

    if smoke:
        return replace(proto, trials=seeds or 1, epochs=3, folds=2, lrs=(0.01,), gammas=(0.0, 1.0),
                       mix_pool=500)
    if quick:
        return replace(proto, trials=seeds or 2, epochs=40, lrs=(0.1, 0.01, 0.001))
    return replace(proto, trials=seeds) if seeds else proto
