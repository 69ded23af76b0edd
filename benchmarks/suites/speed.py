"""Speed: every hot path against its arithmetic floor and its peers, as ratios in one run.

Groups (each in :mod:`benchmarks.speed`):

* ``mix``: mixup of one (128, 3, 32, 32) batch: mixkit, its floor (index_select + lerp_),
  timm's ``Mixup``, torchvision's ``v2.MixUp``, a naive loop;
* ``pipeline``: samples/s through a 2-worker DataLoader against ``default_collate`` alone,
  torchvision's RandomChoice([MixUp, CutMix]) pattern and timm's ``FastCollateMixup``;
* ``density``: each density's ``log_prob`` and GenLabel relabel against the GEMM or kernel
  sum it must do, at d in {2, 20, 128, 512}, K in {10, 100}, B in {128, 1024};
* ``neural``: flow, vae, gan relabel at d in {2, 20};
* ``fit``: fit time by n; ``memory``: peak memory of a streamed fit against a stacked one;
* ``train``: relabel cost as a share of a timm ResNet-18 training step.

``--device cuda`` runs the same on a GPU (fit and memory stay on the CPU, where they run).
Absolute times hold only for the machine in ``meta``; the ratios are the result.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.speed.memory import memory_rows
from benchmarks.speed.mixing import mix_rows
from benchmarks.speed.pipeline import pipeline_rows
from benchmarks.speed.relabel import density_rows, fit_rows, neural_rows, relabel_vs_matmul
from benchmarks.speed.training import step_rows

#: the acceptance of issue "Relabel at the speed of arithmetic", checked in every report
TARGETS = {
    "mixup_vs_floor": ("<=", 2.0),
    "mixup_vs_timm": ("<=", 1.0),
    "mixup_no_checks_vs_floor": ("<=", 2.0),
    "mixup_no_checks_vs_timm": ("<=", 1.0),
    "pipeline_mixkit_minus_timm": (">=", 0.0),
    "gaussian_full_d512_K10_B128_vs_gemm": ("<=", 1.5),
    "gaussian_worst_vs_floor": ("<=", 2.0),
    "relabel_K10_d20_B128_vs_matmul": ("<=", 3.0),
    "frozen_relabel_share_of_step": ("<", 0.05),
    "online_cheap_share_of_step": ("<", 0.05),
}


def summarize(rows: list[dict], relabel_case: dict) -> dict[str, Any]:
    by = {(r["group"], r["method"], r["case"]): r for r in rows}
    out: dict[str, Any] = {"relabel_K10_d20_B128_vs_matmul": relabel_case["ratio"]}
    mix = {r["method"]: r for r in rows if r["group"] == "mix"}
    if "mixkit Mixup" in mix:
        out["mixup_vs_floor"] = mix["mixkit Mixup"]["vs_floor"]
        out["mixup_vs_timm"] = mix["mixkit Mixup"]["vs_timm"]
    lean = mix.get("mixkit Mixup, validate=False")
    if lean is not None:  # what an accelerator gets by default: value checks off
        out["mixup_no_checks_vs_floor"] = lean["vs_floor"]
        out["mixup_no_checks_vs_timm"] = lean["vs_timm"]
    pipe = {r["method"]: r["vs_default_collate"] for r in rows if r["group"] == "pipeline"}
    timm_fast = pipe.get("timm FastCollateMixup (uint8 numpy)")
    if timm_fast is not None:
        out["pipeline_mixkit_minus_timm"] = pipe["mixkit MixCollate(mixup)"] - timm_fast
    gauss = [r for r in rows if r["group"] == "density" and r["method"].startswith("gaussian")]
    if gauss:
        out["gaussian_worst_vs_floor"] = max(r["log_prob_vs_floor"] for r in gauss)
    key = ("density", "gaussian full", "d=512, K=10, B=128")
    if key in by:
        out["gaussian_full_d512_K10_B128_vs_gemm"] = by[key]["log_prob_vs_floor"]
    train = {r["method"]: r["share"] for r in rows if r["group"] == "train"}
    for method, share in train.items():
        if method.startswith("frozen-feature") and "relabel" in method:
            out["frozen_relabel_share_of_step"] = share
        if method.startswith("OnlineGenLabel") and "every step" not in method:
            out["online_cheap_share_of_step"] = share
        if method == "OnlineGenLabel, every step":
            out["online_every_step_share_of_step"] = share
    return {k: v for k, v in out.items() if v is not None}


def verdicts(summary: dict[str, Any]) -> dict[str, bool]:
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    return {k: ops[op](summary[k], bound) for k, (op, bound) in TARGETS.items() if k in summary}


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "" if v is None else format(v, spec)


def markdown(rows: list[dict], summary: dict[str, Any], device: str) -> str:
    ok = verdicts(summary)
    lines = ["", f"Device: {device}. Ratios are within this one run.", "", "## Acceptance", "",
             "| measure | value | target | met |", "|---|---:|---|---|"]
    for key, (op, bound) in TARGETS.items():
        if key in summary:
            lines.append(f"| {key} | {summary[key]:.3f} | {op} {bound} | {'yes' if ok[key] else '**no**'} |")
        else:
            lines.append(f"| {key} | not measured | {op} {bound} | |")
    lines += ["", "## Mixing one batch", "", "| method | µs / batch | × floor | × timm |", "|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['us']:.1f} | {r['vs_floor']:.2f} | {_fmt(r['vs_timm'])} |"
              for r in rows if r["group"] == "mix"]
    pipe = [r for r in rows if r["group"] == "pipeline"]
    if pipe:
        lines += ["", f"## DataLoader pipeline ({pipe[0]['case']})", "",
                  "| collate | samples / s | × default_collate |", "|---|---:|---:|"]
        lines += [f"| {r['method']} | {r['samples_per_s']:.0f} | {r['vs_default_collate']:.2f} |" for r in pipe]
    dens = [r for r in rows if r["group"] == "density"]
    if dens:
        lines += ["", "## Density scoring and relabel against the arithmetic floor", "",
                  "| density | case | floor µs | log_prob µs | relabel µs | log_prob × floor | relabel × floor |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['case']} | {r['floor_us']:.1f} | {r['log_prob_us']:.1f} | {r['us']:.1f} | "
                  f"{r['log_prob_vs_floor']:.2f} | {r['relabel_vs_floor']:.2f} |" for r in dens]
    for group, title in (("neural", "Neural densities (relabel of one batch)"), ("fit", "Fit time")):
        sel = [r for r in rows if r["group"] == group]
        if sel:
            unit = "ms" if group == "neural" else "s"
            scale = 1e-3 if group == "neural" else 1e-6
            lines += ["", f"## {title}", "", f"| method | case | {unit} |", "|---|---|---:|"]
            lines += [f"| {r['method']} | {r['case']} | {r['us'] * scale:.3g} |" for r in sel]
    mem = [r for r in rows if r["group"] == "memory"]
    if mem:
        lines += ["", f"## Memory ({mem[0]['case']})", "",
                  "| fit on | peak growth MB | stored density MB | data MB |", "|---|---:|---:|---:|"]
        lines += [f"| {r['method']} | not run: {r['error']} | | |" if "error" in r else
                  f"| {r['method']} | {r['peak_growth_mb']:.1f} | {r['density_mb']:.2f} | {r['data_mb']:.1f} |"
                  for r in mem]
    train = [r for r in rows if r["group"] == "train"]
    if train:
        lines += ["", f"## Share of a training step ({train[0]['case']})", "",
                  "| what | ms | share of the mixup step |", "|---|---:|---:|"]
        lines += [f"| {r['method']} | {r['us'] / 1e3:.2f} | {100 * r['share']:.1f}% |" for r in train]
    return "\n".join(lines) + "\n"


def run(args: Any) -> dict:  # args: benchmarks.args.SuiteArgs
    quick, smoke, dev = args.quick, args.smoke, torch.device(args.device)
    budget = 0.01 if smoke else 0.05 if quick else 0.2
    rows = mix_rows(dev, budget)
    relabel_case = relabel_vs_matmul(dev, budget)
    if not smoke:
        rows += pipeline_rows(quick) if dev.type == "cpu" else []
        rows += density_rows(dev, budget, quick)
        rows += neural_rows(dev, budget, quick)
        rows += fit_rows(quick)
        rows += memory_rows(quick)
        rows += step_rows(dev, quick)
    summary = summarize(rows, relabel_case)
    summary["targets_met"] = verdicts(summary)
    payload = {"rows": rows, "summary": summary, "relabel_case": relabel_case, "device": str(dev)}
    return {**payload, "markdown": render(payload)}


def render(payload: dict[str, Any]) -> str:
    """The report of a finished run (``results.json``), with the current formatting."""
    rows, relabel_case = payload["rows"], payload["relabel_case"]
    summary = summarize(rows, relabel_case)
    summary["targets_met"] = verdicts(summary)
    md = markdown(rows, summary, payload.get("device", "cpu"))
    rc = relabel_case
    md += ("\n## The relabel acceptance case (GenLabel, gaussian full, K=10, d=20, B=128)\n\n"
           "| what | µs | × bare GEMM |\n|---|---:|---:|\n"
           f"| bare GEMM (B, d) @ (d, K*d) | {rc['gemm_us']:.1f} | 1.00 |\n"
           f"| density.log_prob | {rc['log_prob_us']:.1f} | {rc['log_prob_us'] / rc['gemm_us']:.2f} |\n"
           + (f"| its arithmetic as 8 eager kernels, no Python around them (eager dispatch floor) | "
              f"{rc['op_chain_us']:.1f} | {rc['op_chain_us'] / rc['gemm_us']:.2f} |\n" if "op_chain_us" in rc else "")
           + f"| relabel, validate=False, diagnostics=False | {rc['relabel_us']:.1f} | {rc['ratio']:.2f} |\n"
           f"| relabel at the defaults (CPU: checks and counts) | {rc['relabel_default_us']:.1f} | "
           f"{rc['ratio_default']:.2f} |\n")
    return md


if __name__ == "__main__":
    from benchmarks.args import SuiteArgs

    torch.set_num_threads(1)
    print(run(SuiteArgs(quick=True))["markdown"])
