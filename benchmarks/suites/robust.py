"""Robust suite: FGSM robust accuracy on the tabular datasets (Tables 6 and 9, Table 12 settings).

Table 12: SGD with momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.02, 50 epochs,
FGSM radius 0.2 (L-inf, on features standardized on the training part); logistic regression
(Table 6) and the 2-hidden-layer FC net (Table 9); vanilla, mixup and mixup+GenLabel (GM)
with gamma chosen by cross-validation. As the paper's "robust validation runs", the robust
accuracy is measured every 5 epochs and the epoch (and gamma) with the best robust
cross-validation accuracy is chosen; the chosen configuration is trained on the whole
training part with several seeds and attacked on the test split at that epoch.

Folds and the seeds' final models of every configuration train together as one batched model
(:mod:`benchmarks.batched`). Reported: per-dataset robust (and clean) accuracy, the paper's
Table 6/9 values where a dataset is in both, and win/tie/loss shares of GenLabel vs vanilla
and mixup in robust accuracy (0.5-point threshold, as Table 3 does for clean accuracy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from benchmarks.args import SuiteArgs
from benchmarks.batched import ModelSpec, TrainConfig, train_batched
from benchmarks.common import log, mean_std, progress
from benchmarks.protocols import tabular as protocols
from benchmarks.protocols.base import sibling_results
from benchmarks.report import PAPER_TABLE6, PAPER_TABLE9, fmt, md_table
from benchmarks.suites.tabular import (
    MODELS,
    dataset_keys,
    dataset_sizes,
    load_dataset,
    make_stream,
    pick,
    shares,
    split_indices,
)
from benchmarks.tabular import paper, report, robust_paper
from benchmarks.tabular.data import official_keys

GAMMAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
METHODS = ("vanilla", "mixup", "genlabel_gaussian")
METHOD_LABEL = {"vanilla": "Vanilla", "mixup": "Mixup", "genlabel_gaussian": "Mixup+GenLabel (GM)"}
EPS = 0.2
LR = 0.02
QUICK_DATASETS = ("iris", "wine", "multiclass/glass", "multiclass/penguins", "multiclass/crabs",
                  "721", "778", "817", "885", "925", "927", "818", "988", "1011")


def run_dataset(key: str, ds: Any, model: str, folds: int, epochs: int, seeds: int,
                gammas: Sequence[float], device: str, mix_pool: int | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    x, y, k = ds.x.float(), ds.y.long(), int(ds.num_classes)
    train, test, fold_idx = split_indices(y, 0, folds=folds)
    failures: dict[str, str] = {}
    fold_s = [make_stream(x, y, tr, {"val": va}, 3000 + f, ("gaussian",), False, failures)
              for f, (tr, va) in enumerate(fold_idx)]
    first = make_stream(x, y, train, {"test": test}, 4000, ("gaussian",), False, failures)
    finals = [first] + [make_stream(x, y, train, {"test": test}, 4000 + s, (), False, failures, like=first)
                        for s in range(1, seeds)]
    has_gl = "gaussian" not in failures
    streams = fold_s + finals
    specs: list[ModelSpec] = []
    members: dict[str, dict[str, dict[Any, list[int]]]] = {"cv": {}, "final": {}}
    for si, _ in enumerate(streams):
        part = "cv" if si < len(fold_s) else "final"
        seed = 3000 + si
        mix_i = len(specs)
        specs.append(ModelSpec(si, "mixup", LR, init_seed=seed))
        members[part].setdefault("mixup", {}).setdefault(LR, []).append(mix_i)
        members[part].setdefault("vanilla", {}).setdefault(LR, []).append(len(specs))
        specs.append(ModelSpec(si, "vanilla", LR, init_seed=seed))
        if has_gl:
            gl = members[part].setdefault("genlabel_gaussian", {})
            for gm in gammas:
                if gm == 0:
                    gl.setdefault(gm, []).append(mix_i)
                else:
                    gl.setdefault(gm, []).append(len(specs))
                    specs.append(ModelSpec(si, "genlabel", LR, gamma=gm, density="gaussian", init_seed=seed))
    cfg = TrainConfig(epochs=epochs, optimizer="sgd", momentum=0.9, weight_decay=1e-4,
                      milestones=(), hidden=MODELS[model], fgsm_eps=EPS, fgsm_every=5,
                      mix_pool=mix_pool, device=device)
    res = train_batched(streams, specs, cfg, k, desc=f"{key} {model} robust")
    out: dict[str, Any] = {}
    for fam, configs in members["cv"].items():
        cfg_key, epoch, score = pick(res, configs, "val", robust=True)
        idx = members["final"][fam][cfg_key]
        col = res.robust_epochs.index(epoch)
        rob = (100 * res.robust["test"][idx, col]).tolist()
        cln = (100 * res.clean["test"][idx, res.eval_epochs.index(epoch)]).tolist()
        m, s = mean_std(rob)
        mc, sc = mean_std(cln)
        out[fam] = {"mean": m, "std": s, "accs": rob, "clean_mean": mc, "clean_std": sc,
                    "gamma": cfg_key if fam == "genlabel_gaussian" else None, "epoch": epoch,
                    "cv_robust_acc": 100 * score}
    return {"dataset": key, "name": ds.name, "openml_id": ds.openml_id, "n": len(y), "d": x.shape[1],
            "k": k, "model": model, "results": out, "density_failures": failures,
            "models_trained": len(specs), "wall_s": time.perf_counter() - t0}


def run(args: SuiteArgs) -> dict[str, Any]:
    t0 = time.perf_counter()
    proto = protocols.get(args.protocol)
    quick, smoke, seeds, data_dir, device = args.quick, args.smoke, args.seeds, args.data_dir, args.device
    models = list(args.models or (("logreg",) if smoke or proto.name == "paper" else proto.models))
    sizes = dataset_sizes(data_dir)
    if proto.name == "paper":
        proto = paper.scaled(proto, quick, smoke, seeds)
        if smoke:
            proto = replace(proto, attack_steps=5)
    if smoke:
        folds, epochs, n_seeds, gammas, pool = 2, 5, seeds or 1, (0.0, 1.0), 2_000
    elif quick:
        folds, epochs, n_seeds, gammas, pool = 3, 25, seeds or 2, GAMMAS, 20_000
    else:
        folds, epochs, n_seeds, gammas, pool = 6, 50, seeds or 3, GAMMAS, 40_000
    plan = []
    for model in models:
        if args.datasets:
            keys = dataset_keys(data_dir, args.datasets)
        elif smoke:
            keys = ["iris"] if proto.name == "rigorous" else ["48"]
        elif proto.name == "paper":
            keys = official_keys(data_dir)
            if quick:
                keys = [k for k in keys if k in QUICK_DATASETS]
        elif quick:  # the multi-class sets and the paper's Table 1/4/5/8 ones in our cache
            keys = [k for k in QUICK_DATASETS if k in sizes and (model == "logreg" or sizes[k] <= 400)]
        else:
            keys = list(sizes)
        plan += [(model, k) for k in keys]
    rows = []
    for model, key in progress(plan, desc=f"robust datasets ({proto.name})", leave=True):
        if proto.name == "paper":
            row = robust_paper.run_dataset(key, load_dataset(key, data_dir), proto, device)
        else:
            f = folds if model == "logreg" or smoke else min(folds, 3)
            row = run_dataset(key, load_dataset(key, data_dir), model, f, epochs, n_seeds, gammas, device, pool)
        rows.append(row)
        r = row["results"]
        log(f"[robust/{proto.name}] {model} {key}: {row['wall_s']:.1f} s; "
            + ", ".join(f"{m} {r[m]['mean']:.1f}" for m in METHODS if m in r))
    summary = {}
    for model in models:
        mrows = [r for r in rows if r["model"] == model]
        summary[model] = {b: shares(mrows, "genlabel_gaussian", b, 0.5) for b in ("vanilla", "mixup")}
        summary[model]["mean_robust"] = {
            m: sum(r["results"][m]["mean"] for r in mrows if m in r["results"]) /
            max(1, sum(m in r["results"] for r in mrows)) for m in METHODS}
    wall = time.perf_counter() - t0
    settings = ({"folds": proto.folds, "epochs": proto.epochs, "seeds": proto.trials,
                 "gammas": list(proto.gammas), "eps": f"{proto.attack_eps} x (max - min)", "lr": list(proto.lrs),
                 "mix_pool": proto.mix_pool, "attack_steps": proto.attack_steps}
                if proto.name == "paper" else
                {"folds": folds, "epochs": epochs, "seeds": n_seeds, "gammas": list(gammas),
                 "eps": EPS, "lr": LR, "mix_pool": pool})
    payload = {"protocol": proto.settings(), "rows": rows, "summary": summary, "wall_s": wall,
               "settings": settings, "models": models}
    payload["markdown"] = render(payload, sibling_results(args.out_dir, proto.name))
    return payload


def render(payload: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The report of a finished run (``results.json``), with the current formatting."""
    proto = payload["protocol"]
    st = payload["settings"]
    models = payload.get("models") or list(payload["summary"])
    lines = [f"# Robust suite, protocol `{proto['name']}`", ""]
    if other is not None and "protocol" in other:
        lines += _three_way(payload, other)
    if proto["name"] == "paper":
        lines += [f"BoundaryAttack (foolbox {_foolbox_version()}, {st['attack_steps']} steps, L2 radius "
                  f"{st['eps']} of the standardized training features); CV by robust accuracy over "
                  f"lr {st['lr']} and gamma {st['gammas']}; {st['seeds']} trials, last epoch.", ""]
    else:
        lines += [f"FGSM (L-inf radius {st['eps']} on standardized features), SGD lr {st['lr']}, "
                  f"momentum 0.9, weight decay 1e-4, batch 128, {st['epochs']} epochs; gamma and epoch "
                  f"chosen by {st['folds']}-fold CV on robust accuracy (every 5 epochs); {st['seeds']} "
                  "seeds on a fixed 80/20 split.", ""]
    lines += [markdown(payload["rows"], payload["summary"], models, payload["wall_s"])]
    lines += ["", report.protocol_block(payload)]
    return "\n".join(lines)


def _foolbox_version() -> str:
    try:
        import foolbox

        return foolbox.__version__
    except ImportError:  # pragma: no cover
        return "not installed"


def _three_way(payload: dict[str, Any], other: dict[str, Any]) -> list[str]:
    pp, rr = (payload, other) if payload["protocol"]["name"] == "paper" else (other, payload)
    by = {name: {r["openml_id"]: r for r in run["rows"] if r["model"] == "logreg"} for name, run in
          (("paper", pp), ("rigorous", rr))}
    body = []
    for oid, ref in PAPER_TABLE6.items():
        a, b = by["paper"].get(oid), by["rigorous"].get(oid)
        if a is None and b is None:
            continue
        for m in METHODS:
            ra = a["results"].get(m) if a else None
            rb = b["results"].get(m) if b else None
            body.append((oid, METHOD_LABEL[m], fmt(*ref[m]) if m in ref else "",
                         fmt(ra["mean"], ra["std"]) if ra else "", fmt(rb["mean"], rb["std"]) if rb else ""))
    share = []
    for name, run in (("paper", pp), ("rigorous", rr)):
        s = run["summary"].get("logreg")
        if s:
            share.append((name, *(f"{s[b]['higher']:.1f} / {s[b]['on_par']:.1f} / {s[b]['lower']:.1f}"
                                  for b in ("vanilla", "mixup"))))
    return ["## Table 6 (robust accuracy %, logistic regression): paper | ours, paper protocol | "
            "ours, rigorous protocol", "",
            md_table(["id", "method", "paper", "ours, paper protocol (BoundaryAttack)",
                      "ours, rigorous protocol (FGSM)"], body) if body else
            "None of Table 6's datasets is in both runs.", "",
            md_table(["protocol", "GenLabel (GM) vs vanilla: higher / on par / lower (%)", "vs mixup"], share),
            ""]


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any], models: Sequence[str], wall: float) -> str:
    lines: list[str] = []
    for model in models:
        mrows = [r for r in rows if r["model"] == model]
        title = "logistic regression (Table 6)" if model == "logreg" else "FC ReLU net, 2x128 (Table 9)"
        ref_table = PAPER_TABLE6 if model == "logreg" else PAPER_TABLE9
        s = summary[model]
        lines += [f"## {title}: {len(mrows)} datasets", "",
                  md_table(["GenLabel (GM) vs", "higher / on par / lower (%), robust acc.", "mean diff"],
                           [(b, f"{s[b]['higher']:.1f} / {s[b]['on_par']:.1f} / {s[b]['lower']:.1f}",
                             f"{s[b]['mean_diff']:+.2f}") for b in ("vanilla", "mixup")]), "",
                  "Mean robust accuracy: " + ", ".join(f"{METHOD_LABEL[m]} {v:.2f}" for m, v in
                                                        s["mean_robust"].items()), "",
                  "The paper reports robust accuracy only on 16 datasets per model where GenLabel "
                  "did best (Tables 6 and 9); its columns are filled where a dataset is in both.", ""]
        header = ["dataset", "id"]
        for m in METHODS:
            header += [f"{METHOD_LABEL[m]} robust", "(paper)", "clean"]
        header += ["GL gamma, epoch"]
        body = []
        for r in mrows:
            res = r["results"]
            refs = ref_table.get(r["openml_id"], {})
            cells = [r["name"], r["openml_id"] or ""]
            for m in METHODS:
                if m in res:
                    cells += [fmt(res[m]["mean"], res[m]["std"]), fmt(*refs[m]) if m in refs else "",
                              fmt(res[m]["clean_mean"], res[m]["clean_std"])]
                else:
                    cells += ["n/a", "", ""]
            gl = res.get("genlabel_gaussian")
            cells.append(f"{gl['gamma']:g}, {gl['epoch']}" if gl else "")
            body.append(cells)
        lines += [md_table(header, body), ""]
    lines += [f"Total wall time {wall:.0f} s."]
    return "\n".join(lines)
