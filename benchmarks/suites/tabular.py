"""Tabular suite: the OpenML experiments of section 6 / Table 11, Tables 2-5 and 8, Fig. 9.

Two protocols (``--protocol``, settings in :mod:`benchmarks.protocols.tabular`):

* ``paper`` (:mod:`benchmarks.tabular.paper`): the official code's procedure on the
  official list's datasets we hold (OpenML's own files and the rebuilt ones), logistic
  regression, independent runs, last epoch;
* ``rigorous`` (:mod:`benchmarks.tabular.rigorous`): the harness's procedure on every
  dataset held, logistic regression and the 2x128 FC ReLU net.

Methods: vanilla, mixup, mixup excluding manifold intrusion (mixkit ``ExcludeIntrusion``),
generative classifier (mixkit ``Gaussian``), mixup+GenLabel with a Gaussian, with a KDE,
and with the density chosen by cross-validation (GenLabel (CV)); every model of a dataset
and phase trains in one batched run (:mod:`benchmarks.batched`). Reported: Table 3's
win/tie/loss shares (0.5-point threshold) and Table 2's (0%) on the official-list datasets,
on all datasets and on the multi-class ones, beside the paper's and the other protocol's
(:mod:`benchmarks.tabular.report`), and per-dataset tables (Tables 4/5 style).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.args import SuiteArgs
from benchmarks.common import log, progress, set_progress, set_threads
from benchmarks.protocols import tabular as protocols
from benchmarks.protocols.base import sibling_results
from benchmarks.protocols.tabular import TabularProtocol
from benchmarks.report import (
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PAPER_TABLE8,
    PAPER_TABLE45,
    fmt,
    md_table,
)
from benchmarks.tabular import paper, report
from benchmarks.tabular.data import (  # noqa: F401 (re-exported for the robust suite)
    TEST_FRACTION,
    collections,
    dataset_keys,
    dataset_sizes,
    load_dataset,
    make_density,
    make_stream,
    official_keys,
    split_indices,
)
from benchmarks.tabular.rigorous import MODELS, Settings, pick, run_dataset, settings_for  # noqa: F401
from benchmarks.tabular.stats import fits, shares, subsets, table3  # noqa: F401 (shares: robust)

METHODS = ("vanilla", "mixup", "mixup_exclude_mi", "generative_classifier", "genlabel_gaussian",
           "genlabel_kde", "genlabel_cv")
METHOD_LABEL = {
    "vanilla": "Vanilla", "mixup": "Mixup", "mixup_exclude_mi": "Mixup + excl. MI",
    "generative_classifier": "Gen. classifier (GM)", "genlabel_gaussian": "GenLabel (GM)",
    "genlabel_kde": "GenLabel (KDE)", "genlabel_cv": "GenLabel (CV)",
}
#: the quick mode runs the datasets with at most this many rows (logistic regression / FC net)
QUICK_MAX_ROWS = {"logreg": 1000, "mlp": 400}


def plan_keys(args: SuiteArgs, proto: TabularProtocol, model: str) -> list[str]:
    """The datasets a run covers: ``--datasets``, the smoke/quick subsets, or the protocol's."""
    if args.datasets:
        return dataset_keys(args.data_dir, args.datasets)
    if args.smoke:
        return ["iris", "multiclass/crabs"] if proto.name == "rigorous" else ["48", "1499"]
    keys = official_keys(args.data_dir) if proto.datasets == "official" else list(dataset_sizes(args.data_dir))
    if args.quick:
        sizes = dataset_sizes(args.data_dir)
        keys = [k for k in keys if sizes[k] <= QUICK_MAX_ROWS[model]]
    return keys


def run(args: SuiteArgs) -> dict[str, Any]:
    t0 = time.perf_counter()
    proto = protocols.get(args.protocol)
    models = list(args.models or (("logreg",) if args.smoke else proto.models))
    coll = collections(args.data_dir)
    plan = [(model, k) for model in models for k in plan_keys(args, proto, model)]
    settings = {m: settings_for(m, args.quick, args.smoke, args.seeds, args.device) for m in models}
    if proto.name == "paper":
        proto = paper.scaled(proto, args.quick, args.smoke, args.seeds)
    done = resumable(args.out_dir, proto)
    todo = [(m, k) for m, k in plan if (m, k) not in done]  # the rest a stopped run finished
    job = partial(_one_dataset, args.data_dir, proto, settings, coll, args.device)
    finished: dict[tuple[str, str], dict[str, Any]] = dict(done)
    bar = progress(total=len(todo), desc=f"tabular datasets ({proto.name})", leave=True)
    with _pool(args.workers) as pool:
        for row in (pool.map(job, todo) if pool is not None else map(job, todo)):
            finished[row["model"], row["dataset"]] = row
            bar.update()
            if args.out_dir is not None:  # a long run keeps what it finished if it is stopped
                args.out_dir.mkdir(parents=True, exist_ok=True)
                with open(args.out_dir / PARTIAL, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**row, "_protocol": proto.settings()}) + "\n")
            res = row["results"]
            log(f"[tabular/{proto.name}] {row['model']} {row['dataset']} ({row['n']}x{row['d']}, "
                f"k={row['k']}): {row['wall_s']:.1f} s; "
                + ", ".join(f"{m} {res[m]['mean']:.1f}" for m in METHODS if m in res))
    bar.close()
    rows = [finished[mk] for mk in plan]
    wall = time.perf_counter() - t0
    summary = summarize(rows, models)
    official = set(official_keys(args.data_dir))
    groups = {m: {name: table3(rs) for name, rs in subsets([r for r in rows if r["model"] == m],
                                                           official).items()} for m in models}
    figures = plot_gain_histograms(rows, models, args.out_dir) if args.out_dir is not None and rows else []
    payload = {"protocol": proto.settings(), "rows": rows, "summary": summary, "table3_groups": groups,
               "settings": {m: vars(s) for m, s in settings.items()}, "wall_s": wall,
               "figures": figures, "quick": args.quick, "smoke": args.smoke}
    payload["markdown"] = render(payload, sibling_results(args.out_dir, proto.name))
    if args.out_dir is not None:
        (args.out_dir / PARTIAL).unlink(missing_ok=True)
    return payload


PARTIAL = "rows.partial.jsonl"


def _one_dataset(data_dir: Path | None, proto: TabularProtocol, settings: dict[str, Settings],
                 coll: dict[str, str], device: str, job: tuple[str, str]) -> dict[str, Any]:
    model, key = job
    ds = load_dataset(key, data_dir)
    if proto.name == "paper":
        row = paper.run_dataset(key, ds, proto, device)
    else:
        row = run_dataset(key, ds, model, settings[model])
    row["collection"] = coll.get(key, "")
    return row


@contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """``workers`` processes (one torch thread each, no progress bars), or ``None`` for one."""
    if workers <= 1:
        yield None
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        yield pool


def _worker_init() -> None:
    set_threads(1)
    set_progress(False)


def resumable(out_dir: Path | None, proto: TabularProtocol) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows a stopped run of the same protocol settings left in ``out_dir`` (one JSON line
    per finished dataset): rerunning the command resumes instead of starting over."""
    path = None if out_dir is None else out_dir / PARTIAL
    if path is None or not path.is_file():
        return {}
    want = proto.settings()
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.pop("_protocol", None) == want:
            out[row["model"], row["dataset"]] = row
    return out


def summarize(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        mrows = [r for r in rows if r["model"] == model]
        fit_rows = [r for r in mrows if fits(r)]
        per: dict[str, Any] = {}
        for subset, rs in (("all", mrows), ("generative_fit", fit_rows)):
            t3 = {}
            for ours in ("genlabel_cv", "genlabel_gaussian", "genlabel_kde"):
                t3[ours] = {b: shares(rs, ours, b, 0.5) for b in
                            ("vanilla", "mixup", "mixup_exclude_mi", "generative_classifier")}
            t2 = shares(rs, "genlabel_gaussian", "generative_classifier", 0.0)
            mixup_vs_vanilla = shares(rs, "mixup", "vanilla", 0.5)
            means = {m: _avg([r["results"][m]["mean"] for r in rs if m in r["results"]]) for m in METHODS}
            per[subset] = {"n_datasets": len(rs), "table3": t3, "table2": t2,
                           "mixup_vs_vanilla": mixup_vs_vanilla, "mean_accuracy": means}
        per["wall_s"] = sum(r["wall_s"] for r in mrows)
        per["models_trained"] = sum(r["models_trained"] for r in mrows)
        out[model] = per
    return out


def _avg(v: Sequence[float]) -> float:
    return sum(v) / len(v) if v else float("nan")


def plot_gain_histograms(rows: Sequence[dict[str, Any]], models: Sequence[str], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for model in models:
        gains = [r["results"]["genlabel_cv"]["mean"] - r["results"]["mixup"]["mean"]
                 for r in rows if r["model"] == model and "genlabel_cv" in r["results"]]
        if not gains:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        lim = max(1.0, max(abs(g) for g in gains))
        ax.hist(gains, bins=30, range=(-lim, lim), color="tab:blue")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("accuracy gain of mixup+GenLabel (CV) over mixup (points)")
        ax.set_ylabel("datasets")
        ax.set_title(f"Fig. 9 analogue, {model}, {len(gains)} datasets")
        fig.tight_layout()
        name = f"fig9_gain_hist_{model}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any], models: Sequence[str],
             settings: dict[str, Settings], wall: float, figures: Sequence[str]) -> str:
    lines = []
    for model in models:
        st = settings[model]
        sm = summary[model]
        mrows = [r for r in rows if r["model"] == model]
        title = "logistic regression" if model == "logreg" else "2-hidden-layer FC ReLU net (128 units)"
        lines += [f"## {title}", "",
                  f"{len(mrows)} datasets; {st.folds}-fold CV over lr {list(st.lrs)} and gamma "
                  f"{list(st.gammas)}, Adam, weight decay 1e-4, batch 128, {st.epochs} epochs, "
                  f"epoch chosen by CV; {st.seeds} seeds on a fixed 80/20 split; at most "
                  f"{st.mix_pool} distinct mixed points per stream, KDE on at most "
                  f"{st.kde_max_points} points per class; GenLabel on the input features; "
                  f"{sm['models_trained']} models trained in {sm['wall_s']:.0f} s.", ""]
        for subset, label in (("all", "all datasets"),
                              ("generative_fit", "datasets the generative model fits (> 95% train acc.)")):
            s = sm[subset]
            if not s["n_datasets"]:
                continue
            lines += [f"### Table 3: mixup+GenLabel vs baselines, {label} ({s['n_datasets']})", "",
                      "Share of datasets where GenLabel is higher (> +0.5 points) / on par / lower "
                      "(< -0.5) than the baseline" + ("; paper: 109 OpenML datasets." if model == "logreg"
                                                      else "; the paper gives no such shares for the FC net."),
                      ""]
            trows = []
            for ours in ("genlabel_cv", "genlabel_gaussian", "genlabel_kde"):
                for base, t in s["table3"][ours].items():
                    if not t["n"]:
                        continue
                    ref = PAPER_TABLE3.get(base) if ours == "genlabel_cv" and model == "logreg" else None
                    trows.append((METHOD_LABEL[ours], METHOD_LABEL[base],
                                  f"{t['higher']:.1f} / {t['on_par']:.1f} / {t['lower']:.1f}",
                                  "/".join(f"{v:.1f}" for v in ref) if ref else "",
                                  f"{t['mean_diff']:+.2f}"))
            lines += [md_table(["ours", "vs", "higher / on par / lower (%)", "paper (%)",
                                "mean diff (points)"], trows), ""]
            t2 = s["table2"]
            ref2 = "/".join(str(v) for v in PAPER_TABLE2["generative_classifier"])
            lines += [f"Table 2 (0% threshold): GenLabel (GM) vs generative classifier (GM): "
                      f"{t2['higher']:.1f} / {t2['on_par']:.1f} / {t2['lower']:.1f}"
                      + (f" (paper {ref2}). " if model == "logreg" else ". ") +
                      f"Mixup vs vanilla (0.5 points): {s['mixup_vs_vanilla']['higher']:.1f} / "
                      f"{s['mixup_vs_vanilla']['on_par']:.1f} / {s['mixup_vs_vanilla']['lower']:.1f}.", "",
                      "Mean accuracy over these datasets: " + ", ".join(
                          f"{METHOD_LABEL[m]} {v:.2f}" for m, v in s["mean_accuracy"].items()
                          if not math.isnan(v)), ""]
        lines += _epoch_sensitivity(mrows)
        lines += _paper_comparison(mrows, model)
        lines += [f"### Per-dataset clean accuracy (%), {title} (Tables 4/5 style)", "",
                  "mean±std over seeds; best of ours in bold; lr / gamma / epoch are the CV choices "
                  "of GenLabel (CV).", ""]
        header = (["dataset", "id", "n", "d", "k"] + [METHOD_LABEL[m] for m in METHODS]
                  + ["GL(CV): density, lr, gamma, epoch"])
        body = []
        for r in mrows:
            res = r["results"]
            best = max((res[m]["mean"] for m in METHODS if m in res), default=float("nan"))
            cells = []
            for m in METHODS:
                if m not in res:
                    cells.append("n/a")
                    continue
                c = fmt(res[m]["mean"], res[m]["std"])
                cells.append(f"**{c}**" if abs(res[m]["mean"] - best) < 1e-9 else c)
            cv = res.get("genlabel_cv")
            choice = f"{cv['density']}, {cv['lr']:g}, {cv['gamma']:g}, {cv['epoch']}" if cv else ""
            body.append([r["name"], r["openml_id"] or "", r["n"], r["d"], r["k"], *cells, choice])
        lines += [md_table(header, body), ""]
        fails = [(r["name"], r["density_failures"]) for r in mrows if r["density_failures"]]
        if fails:
            lines += ["Density failures (those GenLabel variants are n/a): " +
                      "; ".join(f"{n}: {f}" for n, f in fails), ""]
    for f in figures:
        lines += [f"![gain histogram]({f})", ""]
    lines += [f"Total wall time {wall:.0f} s."]
    return "\n".join(lines)


def _epoch_sensitivity(mrows: Sequence[dict[str, Any]]) -> list[str]:
    """Table 3 (GenLabel (CV) row) with the test accuracy read at other epochs."""
    body = []
    for key, label in (("mean", "epoch chosen by CV (the numbers above)"),
                       ("last_epoch_mean", "last epoch"),
                       ("oracle_best_epoch_mean", "best test epoch (optimistic: selects on test)")):
        cells = [label]
        for base in ("vanilla", "mixup", "mixup_exclude_mi"):
            d = [r["results"]["genlabel_cv"][key] - r["results"][base][key] for r in mrows
                 if "genlabel_cv" in r["results"] and key in r["results"][base]]
            n = len(d)
            if not n:
                cells.append("n/a")
                continue
            hi, lo = sum(v > 0.5 for v in d), sum(v < -0.5 for v in d)
            cells.append(f"{100 * hi / n:.1f} / {100 * (n - hi - lo) / n:.1f} / {100 * lo / n:.1f}")
        body.append(cells)
    ties = sum(abs(r["results"]["genlabel_cv"]["mean"] - r["results"]["mixup"]["mean"]) < 1e-9
               for r in mrows if "genlabel_cv" in r["results"])
    gamma0 = sum(r["results"]["genlabel_cv"]["gamma"] == 0 for r in mrows if "genlabel_cv" in r["results"])
    tests = sorted(round(TEST_FRACTION * r["n"]) for r in mrows)
    median = tests[len(tests) // 2] if tests else 0
    return ["#### Which epoch is scored (GenLabel (CV) vs vanilla / mixup / mixup + excl. MI)", "",
            md_table(["test accuracy at", "vs vanilla", "vs mixup", "vs mixup + excl. MI"], body), "",
            f"GenLabel (CV) equals mixup exactly on {ties} of {len(mrows)} datasets (CV chose gamma = 0, "
            f"i.e. mixup itself, on {gamma0}); the median test split has {median} rows, so one test "
            f"row moves accuracy by more than the 0.5-point threshold on most datasets.", ""]


def render(payload: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The report of a finished run (``results.json``), with the current formatting."""
    for run in (payload, other):
        if run is not None and "table3_groups" not in run:  # a run from before the protocols
            coll, official = collections(None), set(official_keys(None))
            rows = [{**r, "collection": r.get("collection") or coll.get(r["dataset"], "")} for r in run["rows"]]
            run["table3_groups"] = {m: {n: table3(rs) for n, rs in subsets(
                [r for r in rows if r["model"] == m], official).items()} for m in run["settings"]}
    head = report.header(payload, other)
    if payload["protocol"]["name"] == "paper":
        return head + report.paper_body(payload)
    models = list(payload["settings"])
    settings = {m: Settings(**v) for m, v in payload["settings"].items()}
    return head + markdown(payload["rows"], payload["summary"], models, settings, payload["wall_s"],
                           payload.get("figures", [])) + "\n\n" + report.protocol_block(payload)


def _paper_comparison(mrows: Sequence[dict[str, Any]], model: str) -> list[str]:
    table = PAPER_TABLE45 if model == "logreg" else PAPER_TABLE8
    body = []
    for r in mrows:
        oid = r["openml_id"]
        refs = dict(table.get(oid, {}))
        if model == "logreg" and oid in PAPER_TABLE1:
            for m, v in PAPER_TABLE1[oid].items():
                refs.setdefault(m, v)
        if not refs:
            continue
        cells = []
        for m in METHODS:
            ours = r["results"].get(m)
            cells += [fmt(ours["mean"], ours["std"]) if ours else "n/a",
                      fmt(*refs[m]) if m in refs else ""]
        body.append([f"{r['name']} ({oid})", *cells])
    if not body:
        return []
    header = ["dataset"]
    for m in METHODS:
        header += [f"{METHOD_LABEL[m]} (ours)", "(paper)"]
    src = "Tables 1, 4, 5" if model == "logreg" else "Table 8"
    return [f"### Ours beside the paper ({src}) on the datasets both have", "", md_table(header, body), ""]
