"""Count clean exits of everything that uses a process group (issue 13, finding 15).

    python benchmarks/ddp_exits.py                 # 20 runs of each
    python benchmarks/ddp_exits.py --runs 5 --only example

Each run starts ``torchrun --standalone --nproc_per_node=2
examples/ddp_online_genlabel.py`` (two gloo ranks on the CPU; ``--standalone`` picks a
free port, so runs never collide) and, separately, ``pytest tests/test_distributed.py``
(two processes started by ``torch.multiprocessing``). A run is clean when it exits 0,
both ranks report identical checksums (the example) or every test passes (the tests),
and nothing was aborted on the way out: no "terminate called", no signal, no traceback.
Prints one line per run and "N of R" per kind; exits 1 unless every run was clean.
Not a CI test: it takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD_SIGNS = ("terminate called", "Traceback", "SIGABRT", "Signal 6", "core dumped",
             "ChildFailedError", "exitcode")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = [str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def run_example(timeout: float) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "examples" / "ddp_online_genlabel.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    agreed = out.count("identical on all ranks: True") == 2
    bad = [s for s in BAD_SIGNS if s in out]
    ok = proc.returncode == 0 and agreed and not bad
    return ok, f"rc={proc.returncode} ranks agreed={agreed}" + (f" signs={bad}" if bad else "")


def run_tests(timeout: float) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_distributed.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    summary = next((line for line in reversed(out.splitlines()) if " passed" in line
                    or " failed" in line or " error" in line), "no summary")
    bad = [s for s in ("terminate called", "SIGABRT", "core dumped") if s in out]
    ok = proc.returncode == 0 and "failed" not in summary and "error" not in summary and not bad
    return ok, f"rc={proc.returncode} {summary.strip()}" + (f" signs={bad}" if bad else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--only", choices=["example", "tests"], default=None)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    args = p.parse_args(argv)
    kinds = {"example": run_example, "tests": run_tests}
    if args.only:
        kinds = {args.only: kinds[args.only]}
    clean = {k: 0 for k in kinds}
    for i in range(args.runs):
        for kind, fn in kinds.items():
            t0 = time.perf_counter()
            try:
                ok, detail = fn(args.timeout)
            except subprocess.TimeoutExpired:
                ok, detail = False, f"timed out after {args.timeout:.0f}s"
            clean[kind] += ok
            print(f"run {i + 1:2d} {kind:<7} {'clean' if ok else 'FAILED'} "
                  f"({time.perf_counter() - t0:.0f}s) {detail}", flush=True)
    for kind, n in clean.items():
        print(f"{kind}: {n} of {args.runs} clean exits", flush=True)
    return 0 if all(n == args.runs for n in clean.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
