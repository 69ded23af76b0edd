"""The robust suite under ``--protocol paper``: the official OpenML procedure with
``measure = 'rob'`` (Tables 6 and 9): every score, in the CV and on the test part, is the
accuracy under foolbox's BoundaryAttack at L2 radius ``0.1 x (max - min)`` of the training
features, with a budget of ``attack_steps`` steps (the official code uses foolbox's default,
25,000, far beyond an hour for the dataset list on a CPU).

Methods: vanilla, mixup (lr by CV) and mixup+GenLabel with the GM (lr x gamma by CV); the
rest is the tabular paper protocol (:mod:`benchmarks.tabular.paper`): fixed 30% test split,
unshuffled KFold(5) in each trial, independent runs, last epoch. The models of a trial's CV
(and its refits) are attacked in one BoundaryAttack call (:mod:`benchmarks.tabular.attack`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from benchmarks.batched import Stream, TrainConfig, train_batched
from benchmarks.common import mean_std
from benchmarks.protocols.tabular import TabularProtocol
from benchmarks.tabular.attack import boundary_accuracy
from benchmarks.tabular.data import fixed_split, kfold
from benchmarks.tabular.paper import _choose, _spec, configs, fit_relabelers


def _attack(res: Any, sets: list[tuple[torch.Tensor, torch.Tensor]], eps: float,
            bounds: tuple[float, float], steps: int, seed: int) -> torch.Tensor:
    """BoundaryAttack accuracy ``(M,)`` of every model of ``res`` on its set (spec order)."""
    n = max(len(y) for _, y in sets)
    d = sets[0][0].shape[1]
    x = torch.zeros(len(sets), n, d)
    y = torch.zeros(len(sets), n, dtype=torch.long)
    mask = torch.zeros(len(sets), n, dtype=torch.bool)
    for i, (xi, yi) in enumerate(sets):
        x[i, : len(yi)], y[i, : len(yi)], mask[i, : len(yi)] = xi, yi, True
        x[i, len(yi):], y[i, len(yi):] = xi[0], yi[0]  # padding: a real row, ignored by the mask
    return boundary_accuracy(res.model, res.positions, x, y, mask, eps, bounds, steps, seed)


def run_dataset(key: str, ds: Any, proto: TabularProtocol, device: str = "cpu") -> dict[str, Any]:
    from mixkit.datasets import standardize

    t0 = time.perf_counter()
    proto = replace(proto, densities=("gaussian",))
    x, y, k = ds.x.float(), ds.y.long(), int(ds.num_classes)
    train, test = fixed_split(y, proto.test_fraction, proto.split_stratified, seed=0)
    _, xs = standardize(x[train], x)
    lo, hi = float(xs[train].min()), float(xs[train].max())
    eps = proto.attack_eps * (hi - lo)
    bounds = (min(lo, float(xs.min())), max(hi, float(xs.max())))
    folds = kfold(len(train), proto.folds)
    failures: dict[str, str] = {}
    fold_fit = [fit_relabelers(xs, y, train[tr], proto, failures) for tr, _ in folds]
    full_fit = fit_relabelers(xs, y, train, proto, failures)
    grid = [c for c in configs(proto, [d for d in proto.densities if d not in failures])
            if c[0] != "mixup_exclude_mi"]
    cfg = TrainConfig(epochs=proto.epochs, batch_size=proto.batch_size, optimizer="adam",
                      weight_decay=1e-4, eval_every=proto.epochs, shuffle=proto.shuffle_batches,
                      mix_pool=proto.mix_pool, device=device)
    rob: dict[str, list[float]] = {}
    cln: dict[str, list[float]] = {}
    chosen: dict[str, list[Any]] = {}
    for t in range(proto.trials):
        streams, specs, sets = [], [], []
        for f, (tr, va) in enumerate(folds):
            gls, ex = fold_fit[f]
            for c, (fam, lr, gm, dn) in enumerate(grid):
                seed = 1_000_003 * (t + 1) + 1009 * f + c
                streams.append(Stream(xs, y, train[tr], {}, seed, gls, ex))
                specs.append(_spec(len(streams) - 1, fam, lr, gm, dn, seed))
                sets.append((xs[train[va]], y[train[va]]))
        res = train_batched(streams, specs, cfg, k, desc=f"{key} trial {t} CV (robust)")
        val = _attack(res, sets, eps, bounds, proto.attack_steps, t).view(len(folds), len(grid)).mean(0)
        best = list(_choose(grid, val).items())
        best = [(fam, c) for fam, c in best if fam != "genlabel_cv"]
        gls, ex = full_fit
        streams2 = [Stream(xs, y, train, {"test": (xs[test], y[test])}, 7_000_001 * (t + 1) + i, gls, ex)
                    for i in range(len(best))]
        specs2 = [_spec(i, *grid[c], 7_000_001 * (t + 1) + i) for i, (_, c) in enumerate(best)]
        res2 = train_batched(streams2, specs2, cfg, k, desc=f"{key} trial {t} refit (robust)")
        acc = 100 * _attack(res2, [(xs[test], y[test])] * len(best), eps, bounds, proto.attack_steps, 100 + t)
        for i, (fam, c) in enumerate(best):
            rob.setdefault(fam, []).append(float(acc[i]))
            cln.setdefault(fam, []).append(float(100 * res2.clean["test"][i, -1]))
            chosen.setdefault(fam, []).append({"lr": grid[c][1], "gamma": grid[c][2],
                                               "cv_robust_acc": 100 * float(val[c])})
    out: dict[str, Any] = {}
    for fam in rob:
        m, s = mean_std(rob[fam])
        mc, sc = mean_std(cln[fam])
        out[fam] = {"mean": m, "std": s, "accs": rob[fam], "clean_mean": mc, "clean_std": sc,
                    "gamma": chosen[fam][0]["gamma"] if fam.startswith("genlabel") else None,
                    "epoch": proto.epochs, "chosen": chosen[fam]}
    return {"dataset": key, "name": ds.name, "openml_id": ds.openml_id, "n": len(y), "d": x.shape[1],
            "k": k, "model": "logreg", "results": out, "density_failures": failures, "eps": eps,
            "models_trained": proto.trials * (len(folds) * len(grid) + 3),
            "wall_s": time.perf_counter() - t0}
