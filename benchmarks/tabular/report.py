"""Report sections of the tabular suite: Table 3 under both protocols beside the paper's,
the paper protocol's per-dataset table, the protocol block."""

from __future__ import annotations

from typing import Any

from benchmarks.protocols import tabular as protocols
from benchmarks.report import PAPER_TABLE2, PAPER_TABLE3, PAPER_TABLE45, fmt, md_table
from benchmarks.tabular.stats import BASELINES, SUBSET_LABEL

LABEL = {"vanilla": "Vanilla", "mixup": "Mixup", "mixup_exclude_mi": "Mixup + excl. MI",
         "generative_classifier": "Gen. classifier (GM)", "genlabel_gaussian": "GenLabel (GM)",
         "genlabel_kde": "GenLabel (KDE)", "genlabel_cv": "GenLabel (CV)"}
ORDER = ("vanilla", "mixup", "mixup_exclude_mi", "generative_classifier", "genlabel_gaussian",
         "genlabel_kde", "genlabel_cv")


def _cell(t: dict[str, Any]) -> str:
    return "" if not t or not t["n"] else f"{t['higher']:.1f} / {t['on_par']:.1f} / {t['lower']:.1f}"


def header(payload: dict[str, Any], other: dict[str, Any] | None) -> str:
    """Title, and Table 3 of logistic regression: paper | paper protocol | rigorous protocol."""
    name = payload["protocol"]["name"]
    runs = {name: payload, **({other["protocol"]["name"]: other} if other and "protocol" in other else {})}
    cols = []  # (protocol, subset)
    for proto, subs in (("paper", ("official", "official_openml", "official_rebuilt", "multiclass")),
                        ("rigorous", ("all", "official", "multiclass"))):
        groups = runs.get(proto, {}).get("table3_groups", {}).get("logreg", {})
        cols += [(proto, s, groups[s]) for s in subs if s in groups and groups[s]["n_datasets"]]
    lines = [f"# Tabular suite, protocol `{name}`", ""]
    if not cols:
        return "\n".join(lines) + "\n"
    head = ["GenLabel (CV) vs", "paper (109 datasets)"] + [
        f"ours, {p} protocol: {SUBSET_LABEL[s]} ({g['n_datasets']})" for p, s, g in cols]
    body = [[LABEL[b], "/".join(f"{v:.1f}" for v in PAPER_TABLE3[b])] + [_cell(g["table3"][b]) for _, _, g in cols]
            for b in BASELINES]
    body.append(["Table 2: GenLabel (GM) vs gen. classifier, 0% threshold",
                 "/".join(f"{v:.1f}" for v in PAPER_TABLE2["generative_classifier"])]
                + [_cell(g["table2"]) for _, _, g in cols])
    body.append(["mixup vs vanilla (not in the paper)", ""] + [_cell(g["mixup_vs_vanilla"]) for _, _, g in cols])
    body.append(["exact ties GenLabel (CV) = mixup (datasets)", ""]
                + [str(g["exact_ties_with_mixup"]) for _, _, g in cols])
    lines += ["## Table 3 (logistic regression): paper | ours, paper protocol | ours, rigorous protocol", "",
              "Shares (%) of datasets where GenLabel (CV) is higher (> +0.5 points) / on par / lower "
              "(< -0.5) than the baseline.", "", md_table(head, body), ""]
    lines += _tables45(runs)
    return "\n".join(lines) + "\n"


def _tables45(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Tables 4/5 (logistic regression): the paper's cells beside both protocols' on the
    datasets in the paper's tables and in a run."""
    by = {p: {r["openml_id"]: r["results"] for r in run["rows"] if r["model"] == "logreg"}
          for p, run in runs.items()}
    body = []
    for oid, ref in PAPER_TABLE45.items():
        if not any(oid in b for b in by.values()):
            continue
        for m in ORDER:
            cells = [fmt(*ref[m]) if m in ref else ""]
            for p in ("paper", "rigorous"):
                v = by.get(p, {}).get(oid, {}).get(m)
                cells.append(fmt(v["mean"], v["std"]) if v else "")
            body.append([oid, LABEL[m], *cells])
    if not body:
        return []
    return ["## Tables 4/5 (logistic regression, clean %): paper | ours, paper protocol | ours, "
            "rigorous protocol", "", md_table(["id", "method", "paper", "ours, paper protocol",
                                                "ours, rigorous protocol"], body), ""]


def paper_body(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    lines = []
    for sub, g in payload.get("table3_groups", {}).get("logreg", {}).items():
        if not g["n_datasets"]:
            continue
        lines += [f"### Table 3, {SUBSET_LABEL[sub]} ({g['n_datasets']} datasets)", "",
                  md_table(["GenLabel (CV) vs", "higher / on par / lower (%)", "paper (%)", "mean diff"],
                           [(LABEL[b], _cell(t), "/".join(f"{v:.1f}" for v in PAPER_TABLE3[b]),
                             f"{t['mean_diff']:+.2f}") for b, t in g["table3"].items() if t["n"]]),
                  "", f"Exact ties with mixup: {g['exact_ties_with_mixup']} of {g['n_datasets']}.", ""]
    lines += ["### Per-dataset clean test accuracy (%), mean±std over trials (last epoch)", ""]
    body = []
    for r in rows:
        res = r["results"]
        cv = res.get("genlabel_cv", {}).get("chosen", [])
        choice = "; ".join(f"{c['density']} {c['lr']:g} {c['gamma']:g}" for c in cv)
        body.append([r["name"], r["openml_id"] or "", r.get("collection", ""), r["n"], r["d"], r["k"],
                     r.get("n_test", ""), *[fmt(res[m]["mean"], res[m]["std"]) if m in res else "n/a"
                                            for m in ORDER], choice, f"{r['wall_s']:.0f}"])
    lines += [md_table(["dataset", "id", "set", "n", "d", "k", "n test", *[LABEL[m] for m in ORDER],
                        "GL(CV) choices (density lr gamma) per trial", "wall s"], body), ""]
    total = sum(r["wall_s"] for r in rows)
    lines += [f"{len(rows)} datasets, {sum(r['models_trained'] for r in rows)} models trained, "
              f"{total:.0f} s of dataset wall time ({total / max(1, len(rows)):.1f} s per dataset); "
              f"suite wall time {payload['wall_s']:.0f} s.", ""]
    lines += _cost(rows)
    return "\n".join(lines) + "\n" + protocol_block(payload)


def protocol_block(payload: dict[str, Any]) -> str:
    """The protocol's settings verbatim (as recorded in ``results.json``)."""
    rec = payload["protocol"]
    proto = protocols.PROTOCOLS.get(rec["name"])
    if proto is not None and proto.settings() == rec:
        text = proto.markdown()
    else:  # scaled (quick / smoke) or an older run: print what was recorded
        text = protocols.TabularProtocol(**{k: (tuple(v) if isinstance(v, list) else v)
                                            for k, v in rec.items()}).markdown()
    notes = rec.get("notes") or []
    return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")


def _cost(rows: list[dict[str, Any]]) -> list[str]:
    """CPU seconds per dataset (what one process takes alone) and, from a least-squares fit
    ``cpu = a + b * n`` over the datasets run, the total for the whole official list."""
    from benchmarks.tabular.data import dataset_sizes, official_keys

    pts = [(r["n"], r["cpu_s"]) for r in rows if "cpu_s" in r]
    if len(pts) < 5:  # too few sizes for a fit
        return []
    n_mean = sum(n for n, _ in pts) / len(pts)
    c_mean = sum(c for _, c in pts) / len(pts)
    var = sum((n - n_mean) ** 2 for n, _ in pts)
    b = sum((n - n_mean) * (c - c_mean) for n, c in pts) / var if var > 0 else 0.0
    a = c_mean - b * n_mean
    sizes = dataset_sizes(None)
    keys = official_keys(None)
    total = sum(a + b * sizes[k] for k in keys)
    return [f"CPU time (one process, one thread): {sum(c for _, c in pts):.0f} s for these "
            f"{len(pts)} datasets, {c_mean:.1f} s per dataset; fit cpu = {a:.1f} s + {1000 * b:.1f} s "
            f"per 1000 rows. Extrapolated to the {len(keys)} official-list datasets held: "
            f"{total / 60:.0f} CPU minutes, i.e. about {total / 60:.0f} minutes alone with one "
            f"worker and {total / 120:.0f} with `--workers 2` on the 2-core machine.", ""]
