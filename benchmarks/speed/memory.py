"""Peak memory of fitting GenLabel on a stream of batches against fitting it on the stacked tensor.

Each case runs in a fresh interpreter that resets its peak resident set after the
imports (Linux: ``/proc/self/clear_refs``) and reports the growth of that peak
(``VmHWM``) over the resident set at the reset: neither the imports' transient peak
nor another case counts. The data are generated lazily per sample, so the
dataset itself holds nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.speed.timing import row

_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import mixkit
    torch.set_num_threads(1)
    N, D, K = {n}, {d}, 10

    class Lazy(torch.utils.data.Dataset):
        def __len__(self):
            return N
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {{"x": torch.randn(D, generator=g) + (i % K), "label": i % K}}

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak to the current resident set
    base = status("VmRSS")
    gl = mixkit.GenLabel("gaussian", covariance="diag")
    if "{mode}" == "stream":
        gl.fit(torch.utils.data.DataLoader(Lazy(), batch_size=256))
    else:
        ds = Lazy()
        x = torch.stack([ds[i]["x"] for i in range(N)])
        y = torch.tensor([i % K for i in range(N)])
        gl.fit(x, y)
    peak = status("VmHWM")
    stored = sum(b.numel() * b.element_size() for b in gl.density.buffers())
    print(json.dumps({{"peak_growth_kb": peak - base, "density_bytes": stored}}))
""")


def memory_rows(quick: bool) -> list[dict]:
    n, d = (5000, 256) if quick else (20000, 1024)
    rows = []
    root = Path(__file__).resolve().parents[2]
    for mode in ("stacked", "stream"):
        out = subprocess.run([sys.executable, "-c", _SCRIPT.format(n=n, d=d, mode=mode)], capture_output=True,
                             text=True, cwd=root)
        if out.returncode != 0:  # reported in the table, not hidden
            err = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
            rows.append(row("memory", f"GenLabel(gaussian diag).fit, n={n}, d={d}, K=10", mode, 0.0, error=err))
            continue
        got = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row("memory", f"GenLabel(gaussian diag).fit, n={n}, d={d}, K=10", mode, 0.0,
                        peak_growth_mb=got["peak_growth_kb"] / 1024, density_mb=got["density_bytes"] / 2**20,
                        data_mb=n * d * 4 / 2**20))
    return rows
