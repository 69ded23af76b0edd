"""Win / tie / loss statistics of the tabular and robust suites (Tables 2, 3, 6, 9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def shares(rows: Sequence[dict[str, Any]], ours: str, base: str, threshold: float) -> dict[str, Any]:
    """% of datasets where ``ours`` beats ``base`` by more than ``threshold`` points, is within
    it, or loses by more (threshold 0: exact ties are on par)."""
    diffs = []
    for r in rows:
        res = r["results"]
        if ours in res and base in res:
            diffs.append(res[ours]["mean"] - res[base]["mean"])
    n = len(diffs)
    if threshold > 0:
        hi = sum(d > threshold for d in diffs)
        lo = sum(d < -threshold for d in diffs)
    else:
        hi = sum(d > 1e-9 for d in diffs)
        lo = sum(d < -1e-9 for d in diffs)
    pct = (lambda c: 100.0 * c / n) if n else (lambda c: float("nan"))
    return {"n": n, "higher": pct(hi), "on_par": pct(n - hi - lo), "lower": pct(lo),
            "mean_diff": (sum(diffs) / n) if n else float("nan")}


def fits(r: dict[str, Any]) -> bool:
    """The paper's dataset filter: some generative model has > 95% training accuracy."""
    return any(v > 95.0 for v in r["generative_train_acc"].values())


def exact_ties(rows: Sequence[dict[str, Any]], ours: str = "genlabel_cv", base: str = "mixup") -> int:
    """Datasets where ``ours`` and ``base`` have exactly the same mean accuracy."""
    return sum(abs(r["results"][ours]["mean"] - r["results"][base]["mean"]) < 1e-9
               for r in rows if ours in r["results"] and base in r["results"])


BASELINES = ("vanilla", "mixup", "mixup_exclude_mi", "generative_classifier")


def subsets(rows: Sequence[dict[str, Any]], official: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The dataset groups Table 3 is reported on: all datasets held, the official list's
    (with OpenML's own files and the rebuilt ones apart), the multi-class ones (40984 is a
    copy of 36: counted once), and those a generative model fits (> 95% training accuracy)."""
    keys = {r["dataset"] for r in rows}
    multi = [r for r in rows if r["k"] > 2 and not (r["dataset"] == "40984" and "36" in keys)]
    return {
        "all": list(rows),
        "official": [r for r in rows if r["dataset"] in official],
        "official_openml": [r for r in rows if r["dataset"] in official and r.get("collection") == "openml"],
        "official_rebuilt": [r for r in rows if r["dataset"] in official and r.get("collection") == "rebuilt"],
        "multiclass": multi,
        "generative_fit": [r for r in rows if fits(r)],
    }


SUBSET_LABEL = {
    "all": "all datasets run",
    "official": "the official list's datasets we hold",
    "official_openml": "official list, OpenML's own files",
    "official_rebuilt": "official list, rebuilt from OpenML's originals",
    "multiclass": "multi-class datasets only (k >= 3)",
    "generative_fit": "datasets a generative model fits (> 95% training accuracy)",
}


def table3(rows: Sequence[dict[str, Any]], ours: str = "genlabel_cv") -> dict[str, Any]:
    """Table 3 shares of ``ours`` against every baseline, Table 2, exact ties with mixup."""
    return {"n_datasets": len(rows),
            "table3": {b: shares(rows, ours, b, 0.5) for b in BASELINES},
            "table2": shares(rows, "genlabel_gaussian", "generative_classifier", 0.0),
            "mixup_vs_vanilla": shares(rows, "mixup", "vanilla", 0.5),
            "exact_ties_with_mixup": exact_ties(rows, ours, "mixup")}
