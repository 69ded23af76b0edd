"""Writing results: JSON, markdown tables with the paper's numbers beside ours, machine info.

The paper's reference values (GenLabel, Sohn et al.) are data in
``benchmarks/paper/reference.json``, loaded here keyed by table, so that every suite can
print them in the column next to its own numbers.
Accuracies are in percent; ``(mean, std)`` pairs as printed in the paper.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

# ------------------------------------------------------------------ paper reference values
# The paper's numbers are data (benchmarks/paper/reference.json), loaded once here.

PI = math.pi
_REF = json.loads((Path(__file__).resolve().parent / "paper" / "reference.json").read_text(encoding="utf-8"))


def _key(k: str) -> Any:
    return int(k) if k.isdigit() else k


def _cells(table: dict[str, Any]) -> dict[Any, dict[str, tuple[float, float]]]:
    return {_key(k): {m: tuple(v) for m, v in d.items()} for k, d in table.items() if not k.startswith("_")}


#: Example 1 (margins), Example 3 / Fig. 7 (angles at ||theta|| = 25, in units of pi).
PAPER_THEORY = _REF["theory"]
#: Table 1: clean accuracy (%), vanilla and mixup (the paper gives no GenLabel column there).
PAPER_TABLE1 = _cells(_REF["table1"])
#: Table 10: GenLabel's loss ratio gamma per synthetic dataset.
PAPER_TABLE10_GAMMA = _REF["table10_gamma"]
#: Table 3 (and Table 2): shares (%) of datasets where mixup+GenLabel is higher / on par /
#: lower than each baseline (0.5% threshold; Table 2 uses 0% and GenLabel (GM)).
PAPER_TABLE3 = {k: tuple(v) for k, v in _REF["table3"].items()}
PAPER_TABLE2 = {k: tuple(v) for k, v in _REF["table2"].items()}
#: Tables 4 and 5 (logistic regression, clean accuracy), by OpenML id then method.
PAPER_TABLE45 = _cells(_REF["table45"])
#: Table 6 (logistic regression, robust accuracy).
PAPER_TABLE6 = _cells(_REF["table6"])
#: Table 8 (2-hidden-layer FC net, clean accuracy).
PAPER_TABLE8 = _cells(_REF["table8"])
#: Table 9 (2-hidden-layer FC net, robust accuracy).
PAPER_TABLE9 = _cells(_REF["table9"])
#: Table 7 (image data): (robust, clean) accuracy (%), mean only.
PAPER_TABLE7 = _cells(_REF["table7"])
#: Table 15: classification error (%) on Circle (2D), Circle (3D), MNIST 7/9.
PAPER_TABLE15 = _cells(_REF["table15"])


def paper_ref(table: dict[Any, dict[str, tuple[float, float]]], key: Any, method: str) -> str:
    """``"mean±std"`` from a paper table, or ``""`` where the paper has no such cell."""
    cell = table.get(key, {}).get(method)
    return "" if cell is None else fmt(*cell)


# ------------------------------------------------------------------ formatting


def fmt(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    """``12.34±0.56`` (or ``12.34`` without a std; ``n/a`` for missing / NaN)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}±{std:.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    head = "| " + " | ".join(str(h) for h in header) + " |"
    sep = "|" + "|".join("---" for _ in header) + "|"
    body = ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


# ------------------------------------------------------------------ machine and command


def machine_info() -> dict[str, Any]:
    """What produced a result: host, CPU, cores, torch, threads, git commit."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    return "python -m benchmarks " + " ".join(sys.argv[1:]) if sys.argv else ""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if torch.is_tensor(obj):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        try:
            return _jsonable(obj.item())
        except (TypeError, ValueError):
            pass
    return obj


def write_results(out_dir: Path, suite: str, result: dict[str, Any], meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.json`` and ``report.md`` for a suite run; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"suite": suite, "meta": meta, **{k: v for k, v in result.items() if k != "markdown"}}
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(_jsonable(payload), indent=1, sort_keys=False) + "\n")
    header = [
        f"# mixkit benchmarks: `{suite}`",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- finished: {meta.get('finished', '')}, wall time {meta.get('wall_s', 0):.1f} s",
        f"- machine: {meta['machine'].get('processor')} ({meta['machine'].get('cpu_count')} cores "
        f"visible, {meta['machine'].get('torch_threads')} torch threads), torch "
        f"{meta['machine'].get('torch')}, python {meta['machine'].get('python')}, git "
        f"{meta['machine'].get('git_commit')}",
        "",
    ]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(header) + result.get("markdown", "") + "\n")
    return {"json": json_path, "markdown": md_path}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def boundary_panel(ax: Any, gx: Any, gy: Any, pred: Any, x: Any, y: Any, title: str) -> None:
    """One decision-boundary panel: predicted regions on a grid, the training points on top."""
    k = int(max(int(pred.max()), int(y.max()))) + 1
    ax.contourf(gx, gy, pred, levels=[-0.5 + c for c in range(k + 1)], cmap="coolwarm", alpha=0.35)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
