"""``python -m benchmarks SUITE [--quick] [--seeds N] [--out DIR]``.

Runs one suite (or ``all``), shows tqdm progress on stderr, and writes
``results.json``, ``report.md`` and PNG figures to ``--out`` (default
``benchmarks/results/<suite>`` or ``<suite>-quick``). The report prints the paper's
reference values beside ours.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import SUITES, TRAINING_SUITES
from benchmarks.args import SuiteArgs
from benchmarks.common import set_progress, set_threads
from benchmarks.protocols.base import PROTOCOL_NAMES, sibling_results
from benchmarks.report import command_line, machine_info, now, write_results

RESULTS = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="mixkit benchmark harness: the GenLabel paper's experiments, ours beside theirs.",
    )
    p.add_argument("suite", choices=(*SUITES, "all"), help="which suite to run ('all': every suite)")
    p.add_argument("--quick", action="store_true", help="a small, fast version of the suite")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny version for CI (seconds; numbers are not meaningful)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: per suite)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: benchmarks/results/<suite>[-quick])")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="offline dataset folder (default: mixkit.datasets.default_data_dir())")
    p.add_argument("--datasets", default=None,
                   help="comma-separated dataset names or OpenML ids (tabular/robust: a subset)")
    p.add_argument("--models", default=None,
                   help="tabular/robust: comma-separated subset of 'logreg,mlp'")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the models are small, and on a shared machine "
                   "extra threads mostly wait on each other)")
    p.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda)")
    p.add_argument("--protocol", choices=PROTOCOL_NAMES, default="rigorous",
                   help="the suites that train: 'paper' (the official code's protocol) or "
                   "'rigorous' (the harness's own); see benchmarks/protocols/")
    p.add_argument("--workers", type=int, default=1,
                   help="tabular: run the datasets in this many processes (one torch thread each)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite report.md from the results.json in --out (no run)")
    return p


def _call_suite(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.suites.{name}")
    return module.run(suite_args(args, out_dir))


def suite_args(args: argparse.Namespace, out_dir: Path | None) -> SuiteArgs:
    """The parsed command line as the one object every suite's ``run`` takes."""
    return SuiteArgs(
        quick=args.quick or args.smoke, smoke=args.smoke, seeds=args.seeds, out_dir=out_dir,
        data_dir=args.data_dir,
        datasets=tuple(args.datasets.split(",")) if args.datasets else None,
        models=tuple(args.models.split(",")) if args.models else None,
        device=args.device, protocol=args.protocol, workers=args.workers)


def default_out(name: str, args: argparse.Namespace) -> Path:
    """``results/<suite>[-quick|-smoke]``, plus ``/<protocol>`` for the suites that train."""
    tag = name + ("-smoke" if args.smoke else "-quick" if args.quick else "")
    base = args.out / tag if args.suite == "all" and args.out is not None else args.out
    if base is None:
        base = RESULTS / tag
        return base / args.protocol if name in TRAINING_SUITES else base
    return base


def render_only(name: str, out_dir: Path) -> dict[str, Path]:
    """Re-render ``report.md`` from ``results.json`` with the suite's current formatting."""
    module = importlib.import_module(f"benchmarks.suites.{name}")
    if not hasattr(module, "render"):
        raise SystemExit(f"suite {name!r} cannot re-render a report; run it again")
    payload = json.loads((out_dir / "results.json").read_text())
    result = {k: v for k, v in payload.items() if k not in ("suite", "meta")}
    if name in TRAINING_SUITES:  # beside the other protocol's run, when there is one
        result["markdown"] = module.render(payload, sibling_results(out_dir, payload["protocol"]["name"]))
    else:
        result["markdown"] = module.render(payload)
    return write_results(out_dir, name, result, payload["meta"])


def run_suite(name: str, args: argparse.Namespace) -> dict[str, Path]:
    out_dir = default_out(name, args)
    if args.render_only:
        return render_only(name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"command": command_line(), "started": now(), "machine": machine_info(),
            "quick": bool(args.quick), "smoke": bool(args.smoke),
            "protocol": args.protocol if name in TRAINING_SUITES else None}
    start = time.perf_counter()
    result = _call_suite(name, args, out_dir)
    meta["wall_s"] = time.perf_counter() - start
    meta["finished"] = now()
    paths = write_results(out_dir, name, result, meta)
    print(f"[{name}] {meta['wall_s']:.1f} s -> {paths['markdown']}", file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_progress(not args.no_progress)
    set_threads(args.threads)
    names = SUITES if args.suite == "all" else (args.suite,)
    for name in names:
        run_suite(name, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
