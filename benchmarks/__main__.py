"""``python -m benchmarks SUITE [--quick] [--seeds N] [--out DIR]``.

Runs one suite (or ``all``), shows tqdm progress on stderr, and writes
``results.json``, ``report.md`` and PNG figures to ``--out`` (default
``benchmarks/results/<suite>`` or ``<suite>-quick``). The report prints the paper's
reference values beside ours.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import SUITES
from benchmarks.common import set_progress, set_threads
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite report.md from the results.json in --out (no run)")
    return p


def _call_suite(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.suites.{name}")
    run = module.run
    offered: dict[str, Any] = {
        "quick": args.quick or args.smoke,
        "smoke": args.smoke,
        "out_dir": out_dir,
        "data_dir": args.data_dir,
        "datasets": args.datasets.split(",") if args.datasets else None,
        "models": args.models.split(",") if args.models else None,
        "device": args.device,
    }
    if args.seeds is not None:
        offered["seeds"] = args.seeds
    params = inspect.signature(run).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if accepts_any or k in params}
    if "seeds" not in kwargs and "seeds" in params and params["seeds"].default is inspect.Parameter.empty:
        kwargs["seeds"] = 1
    return run(**kwargs)


def render_only(name: str, out_dir: Path) -> dict[str, Path]:
    """Re-render ``report.md`` from ``results.json`` with the suite's current formatting."""
    module = importlib.import_module(f"benchmarks.suites.{name}")
    if not hasattr(module, "render"):
        raise SystemExit(f"suite {name!r} cannot re-render a report; run it again")
    payload = json.loads((out_dir / "results.json").read_text())
    result = {k: v for k, v in payload.items() if k not in ("suite", "meta")}
    result["markdown"] = module.render(payload)
    return write_results(out_dir, name, result, payload["meta"])


def run_suite(name: str, args: argparse.Namespace) -> dict[str, Path]:
    tag = name + ("-smoke" if args.smoke else "-quick" if args.quick else "")
    out_dir = args.out if args.out is not None else RESULTS / tag
    if args.suite == "all" and args.out is not None:
        out_dir = args.out / tag
    if args.render_only:
        return render_only(name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"command": command_line(), "started": now(), "machine": machine_info(),
            "quick": bool(args.quick), "smoke": bool(args.smoke)}
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
