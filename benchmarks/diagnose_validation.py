"""How predictive is ``mixkit diagnose``? Rank correlations against the tabular suite's results.

For every dataset the tabular suite trained on, diagnose the data (default densities,
the same seed) and correlate, across datasets, the diagnosed rates with the accuracy
changes the suite measured: mixup - vanilla, and GenLabel(CV) - mixup. One table per
results file (one per protocol), per model.

    python -m benchmarks.diagnose_validation [--results FILE ...] [--out DIR] [--n-mixed N]

Without ``--results`` every protocol's ``benchmarks/results/tabular/<protocol>/results.json`` is read.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from mixkit.datasets import load_openml, load_sklearn
from mixkit.diagnosis import diagnose

HERE = Path(__file__).resolve().parent
MEASURES = {
    "intrusion": lambda d: d.intrusion.value,
    "conflict (mixup)": lambda d: d.conflict_mixup.value,
    "conflict fixed by best density": lambda d: d.conflict_mixup.value - min(
        (r.conflict.value for r in d.densities if r.conflict is not None and r.fits), default=d.conflict_mixup.value),
}
EFFECTS = {
    "mixup - vanilla": ("mixup", "vanilla"),
    "GenLabel(CV) - mixup": ("genlabel_cv", "mixup"),
}


def spearman(a: list[float], b: list[float]) -> tuple[float, float, int]:
    """Spearman's rho, its two-sided p-value (scipy) and the number of pairs."""
    from scipy.stats import spearmanr

    pairs = [(u, v) for u, v in zip(a, b) if math.isfinite(u) and math.isfinite(v)]
    if len(pairs) < 3:
        return math.nan, math.nan, len(pairs)
    res = spearmanr([u for u, _ in pairs], [v for _, v in pairs])
    return float(res.statistic), float(res.pvalue), len(pairs)


def load(row: dict):
    """The data a results row was trained on: the local OpenML copy, else scikit-learn's bundled set."""
    try:
        return load_openml(row.get("openml_id") or row["dataset"], fetch=False)
    except FileNotFoundError:
        return load_sklearn(row["dataset"])


def protocol_name(results: dict, path: Path) -> str:
    for source in (results.get("protocol"), results.get("meta", {}).get("protocol"),
                   results.get("settings", {}).get("protocol")):
        if isinstance(source, str):
            return source
        if isinstance(source, dict) and "name" in source:
            return str(source["name"])
    return path.parent.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diagnose_validation")
    parser.add_argument("--results", nargs="*", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "diagnose")
    parser.add_argument("--n-mixed", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    files = args.results or sorted((HERE / "results" / "tabular").glob("*/results.json"))
    if not files:
        raise SystemExit("no tabular results found: run `python -m benchmarks tabular` first or pass --results")
    start = time.perf_counter()
    cache: dict[int, dict[str, float]] = {}
    tables = []
    for path in files:
        results = json.loads(path.read_text())
        proto = protocol_name(results, path)
        for model in sorted({row["model"] for row in results["rows"]}):
            rows = [r for r in results["rows"] if r["model"] == model]
            diag_values: dict[str, list[float]] = {m: [] for m in MEASURES}
            effect_values: dict[str, list[float]] = {e: [] for e in EFFECTS}
            for row in rows:
                key = row.get("openml_id") or row["dataset"]
                if key not in cache:
                    data = load(row)
                    diag = diagnose(data.x, data.y, n_mixed=args.n_mixed, seed=args.seed)
                    cache[key] = {m: f(diag) for m, f in MEASURES.items()}
                for m in MEASURES:
                    diag_values[m].append(cache[key][m])
                res = row["results"]
                for e, (a, b) in EFFECTS.items():
                    ok = a in res and b in res
                    effect_values[e].append(res[a]["mean"] - res[b]["mean"] if ok else math.nan)
            for m in MEASURES:
                for e in EFFECTS:
                    rho, p, n = spearman(diag_values[m], effect_values[e])
                    tables.append({"results": str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent)
                                   else str(path), "protocol": proto, "model": model, "measure": m,
                                   "effect": e, "rho": rho, "p": p, "datasets": n})
    wall = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python -m benchmarks.diagnose_validation", "n_mixed": args.n_mixed, "seed": args.seed,
               "datasets_diagnosed": len(cache), "wall_s": round(wall, 1), "rows": tables}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2, allow_nan=True))
    lines = ["# How predictive is `mixkit diagnose`?", "",
             f"Spearman rank correlation, across datasets, between what `mixkit.diagnose` measures on the data "
             f"(default densities, {args.n_mixed} mixed points, seed {args.seed}; no training) and the accuracy "
             f"change the tabular suite measured. {len(cache)} datasets diagnosed in {wall:.0f} s. "
             "A useful diagnosis has a negative rho for `mixup - vanilla` (more intrusion, mixup loses more) and a "
             "positive rho for `GenLabel(CV) - mixup` (more conflict fixed, GenLabel gains more).", "",
             "| protocol | model | measure | effect | rho | p | datasets |", "|---|---|---|---|---:|---:|---:|"]
    lines += [f"| {t['protocol']} | {t['model']} | {t['measure']} | {t['effect']} | {t['rho']:+.3f} | "
              f"{t['p']:.3g} | {t['datasets']} |" for t in tables]
    lines += ["", reading(tables)]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def reading(tables: list[dict]) -> str:
    """One paragraph: which correlations are significant (p < 0.05) and in the expected direction."""
    expected = {"mixup - vanilla": -1, "GenLabel(CV) - mixup": +1}
    good = [t for t in tables if t["p"] < 0.05 and math.copysign(1, t["rho"]) == expected[t["effect"]]]
    wrong = [t for t in tables if t["p"] < 0.05 and math.copysign(1, t["rho"]) != expected[t["effect"]]]
    signs = []
    for proto in sorted({t["protocol"] for t in tables}):
        sel = [t for t in tables if t["protocol"] == proto and math.isfinite(t["rho"])]
        right = sum(math.copysign(1, t["rho"]) == expected[t["effect"]] for t in sel)
        signs.append(f"{right} of {len(sel)} under the {proto} protocol")
    sign_note = ("Correlations with the expected sign, significant or not: " + "; ".join(signs) + ".")
    if not good:
        return ("**Reading.** No measure correlates significantly (p < 0.05) in the expected direction with the "
                "measured accuracy changes: on these datasets the diagnosis does not predict the outcome of "
                "training, and its recommendation should be read as a description of the data, not a forecast. "
                + sign_note)
    best = max(good, key=lambda t: abs(t["rho"]))
    text = (f"**Reading.** {len(good)} of {len(tables)} correlations are significant in the expected direction; "
            f"the strongest is {best['measure']} vs {best['effect']} ({best['protocol']}, {best['model']}): "
            f"rho = {best['rho']:+.2f} over {best['datasets']} datasets. Even that explains little of the variance "
            "(rho^2 < 0.1 means most of the outcome is not predicted): use the diagnosis to find datasets where "
            "intrusion is possible, and validate the choice by training." if abs(best["rho"]) < 0.32 else
            f"**Reading.** {len(good)} of {len(tables)} correlations are significant in the expected direction; "
            f"the strongest is {best['measure']} vs {best['effect']} ({best['protocol']}, {best['model']}): "
            f"rho = {best['rho']:+.2f} over {best['datasets']} datasets, a moderate predictor.")
    if wrong:
        text += f" {len(wrong)} significant correlation(s) go the other way."
    return text + " " + sign_note


if __name__ == "__main__":
    raise SystemExit(main())
