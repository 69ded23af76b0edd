"""Writing results: JSON, markdown tables with the paper's numbers beside ours, machine info.

The paper's reference values (GenLabel, Sohn et al.) are kept here as data, keyed by
table, so that every suite can print them in the column next to its own numbers.
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

PI = math.pi

#: Example 1 (margins), Example 3 / Fig. 7 (angles at ||theta|| = 25, in units of pi).
PAPER_THEORY = {
    "example1_margin_mixup": 7 / 16,
    "example1_margin_without_mi": 1 / 2,
    "example3_angle_over_pi": {"vanilla": 0.22, "mixup": 0.30, "genlabel": 0.25, "svm": 0.25},
}

#: Table 1: clean accuracy (%), vanilla and mixup (the paper gives no GenLabel column there).
PAPER_TABLE1 = {
    "circle": {"vanilla": (99.70, 0.16), "mixup": (85.78, 14.44)},
    "moon": {"vanilla": (98.74, 0.34), "mixup": (96.96, 0.67)},
    "two_circle": {"vanilla": (91.25, 8.14), "mixup": (57.70, 2.94)},
    "cube2d": {"vanilla": (98.08, 1.01), "mixup": (96.60, 1.51)},
    "cube3d": {"vanilla": (93.01, 1.65), "mixup": (89.41, 1.83)},
    48: {"vanilla": (39.13, 0.00), "mixup": (30.87, 4.84)},
    61: {"vanilla": (95.56, 0.00), "mixup": (88.00, 1.09)},
    307: {"vanilla": (66.80, 0.16), "mixup": (54.41, 1.29)},
    818: {"vanilla": (100.00, 0.00), "mixup": (92.26, 0.43)},
    927: {"vanilla": (76.92, 0.00), "mixup": (69.23, 4.87)},
}

#: Table 10: GenLabel's loss ratio gamma per synthetic dataset.
PAPER_TABLE10_GAMMA = {"cube2d": 1.0, "cube3d": 0.8, "moon": 1.0, "circle": 0.8, "two_circle": 1.0}

#: Table 3 (and Table 2): shares (%) of datasets where mixup+GenLabel is higher / on par /
#: lower than each baseline (0.5% threshold; Table 2 uses 0% and GenLabel (GM)).
PAPER_TABLE3 = {
    "vanilla": (37.6, 31.2, 31.2),
    "adamixup": (46.8, 25.7, 27.5),
    "mixup": (59.6, 17.4, 23.0),
    "mixup_exclude_mi": (56.9, 16.5, 26.6),
    "generative_classifier": (44.0, 23.9, 32.1),
}
PAPER_TABLE2 = {"generative_classifier": (62.4, 3.7, 33.9)}

_T45_IDS = [36, 61, 721, 778, 817, 830, 855, 869, 885, 907, 915, 925, 938, 1006, 40710, 40981]
_T45 = {
    "vanilla": "93.82±0.06 95.56±0.00 79.67±0.67 98.42±0.53 61.33±2.67 77.60±0.53 63.33±4.50 "
    "74.40±2.05 96.50±1.22 45.67±3.43 48.00±0.84 93.81±0.00 93.85±7.54 78.67±2.67 68.13±0.00 "
    "74.98±0.19",
    "adamixup": "89.75±0.29 92.44±1.09 80.33±0.67 96.32±0.53 60.00±0.00 78.40±1.55 66.67±0.42 "
    "69.60±3.54 97.50±0.00 46.50±1.11 48.00±0.52 94.43±1.05 98.46±3.08 78.67±2.67 67.91±0.44 "
    "73.14±3.48",
    "mixup": "88.98±0.78 88.00±1.09 79.33±0.82 95.00±1.53 60.00±0.00 76.27±1.31 66.00±1.74 "
    "71.73±3.79 94.50±1.00 44.67±3.14 46.11±3.08 92.99±1.37 90.77±5.76 80.00±0.00 68.13±0.70 "
    "74.78±0.56",
    "genlabel_gaussian": "92.21±0.58 96.00±1.67 81.00±1.33 97.11±0.98 64.00±5.33 86.13±1.36 "
    "66.40±2.88 76.27±3.17 97.00±1.00 47.83±3.56 46.74±7.37 93.61±0.77 98.46±3.08 81.33±1.09 "
    "69.67±0.54 75.07±1.08",
    "genlabel_kde": "92.64±0.26 96.00±0.89 79.67±1.25 96.05±0.83 66.67±5.96 77.33±4.84 "
    "67.60±0.90 74.53±3.99 96.50±1.22 45.67±4.39 46.11±7.57 93.61±0.77 98.46±3.08 80.00±3.44 "
    "69.45±0.44 76.43±0.36",
    "genlabel_cv": "92.55±0.15 96.44±1.09 80.33±1.63 96.05±1.86 65.33±4.99 84.53±1.81 67.33±2.76 "
    "73.87±2.13 97.00±1.00 48.83±4.46 48.42±3.82 94.23±0.82 95.38±6.15 81.78±0.89 70.11±0.82 "
    "76.23±0.71",
    "generative_classifier": "89.75±0.00 95.56±0.00 78.33±0.00 89.47±0.00 60.00±0.00 "
    "78.67±0.00 65.33±0.00 73.33±0.00 95.00±0.00 47.50±0.00 42.11±0.00 90.72±0.00 92.31±0.00 "
    "77.78±0.00 69.23±0.00 73.91±0.00",
    "mixup_exclude_mi": "89.21±0.52 93.33±0.00 79.67±0.67 95.00±1.53 61.33±2.67 78.13±1.36 "
    "66.40±1.37 72.00±3.55 94.50±1.00 44.00±4.06 47.79±3.37 93.20±1.40 89.23±6.15 77.33±4.31 "
    "68.57±1.12 74.69±0.84",
}

_T6_IDS = [3, 223, 312, 313, 346, 463, 753, 834, 952, 954, 978, 987, 988, 1022, 1045, 1059]
_T6 = {
    "vanilla": "45.61±14.11 11.12±4.33 21.78±9.27 12.23±2.34 42.92±12.29 71.60±13.57 28.35±6.60 "
    "14.78±3.73 30.85±3.12 71.40±4.86 28.89±12.62 68.04±18.17 50.35±12.41 35.85±12.20 "
    "57.89±10.42 68.05±21.90",
    "mixup": "43.36±14.10 11.16±5.22 23.40±9.82 14.22±3.73 40.83±11.90 68.80±12.04 29.42±6.03 "
    "15.20±3.91 31.38±3.12 69.32±5.02 34.89±11.32 67.82±14.56 53.54±10.91 41.25±12.11 "
    "59.88±14.38 67.18±25.48",
    "genlabel_gaussian": "51.87±5.45 13.99±6.65 36.61±14.07 18.39±2.57 52.92±12.79 84.46±2.62 "
    "38.23±6.29 21.94±3.69 42.19±7.61 85.16±7.55 43.74±15.93 83.21±1.77 63.76±9.89 "
    "56.61±15.00 66.22±16.60 74.64±20.14",
}

_T8_IDS = [719, 770, 774, 804, 818, 862, 900, 906, 908, 949, 956, 1011, 1014, 1045, 1055, 1075]
_T8 = {
    "vanilla": "71.62±5.55 65.58±11.38 59.34±5.16 81.44±8.45 87.56±19.75 81.51±6.06 61.00±1.62 "
    "53.74±2.21 54.00±1.70 85.69±0.46 68.90±2.52 96.14±3.46 80.55±0.25 94.53±1.96 78.77±4.36 "
    "92.35±2.23",
    "mixup": "70.89±5.47 65.26±11.11 59.80±5.04 80.05±10.22 88.17±15.68 80.40±5.51 60.99±2.05 "
    "53.74±2.51 55.00±1.95 85.69±0.46 69.88±4.01 96.14±3.46 80.55±0.25 94.53±1.96 78.77±4.36 "
    "92.35±2.23",
    "mixup_exclude_mi": "71.62±5.55 64.15±9.62 59.50±7.09 80.05±10.22 88.49±15.56 79.21±8.03 "
    "60.74±2.31 53.50±2.31 54.50±2.34 85.69±0.46 69.88±4.01 96.43±3.74 80.55±0.25 94.53±1.96 "
    "78.77±4.36 92.35±2.23",
    "generative_classifier": "67.90±6.00 51.69±10.93 49.22±6.03 71.59±10.21 82.66±18.41 "
    "67.62±10.23 57.50±6.31 48.26±3.02 47.99±3.86 65.59±15.61 67.97±2.03 95.53±2.72 48.43±4.80 "
    "94.53±1.96 40.75±9.62 90.83±2.73",
    "genlabel_gaussian": "73.10±7.66 66.69±11.06 59.95±5.28 81.57±9.57 89.15±17.40 82.70±7.56 "
    "61.24±2.49 54.21±4.75 55.75±1.48 87.14±3.66 70.81±3.75 96.43±3.74 80.80±0.61 95.19±1.57 "
    "79.81±4.01 93.11±2.41",
}

_T9_IDS = [312, 715, 718, 723, 797, 806, 837, 866, 871, 909, 917, 1038, 1043, 1130, 1138, 1166]
_T9 = {
    "vanilla": "54.22±14.88 42.70±3.62 28.40±2.04 39.90±3.54 32.79±3.31 32.69±3.51 30.30±2.42 "
    "41.10±2.07 32.48±4.20 39.26±3.32 37.90±3.51 16.49±1.85 57.65±2.54 47.71±8.86 53.97±4.77 "
    "33.92±5.39",
    "mixup": "66.23±11.75 44.10±3.27 40.29±3.27 41.39±3.45 38.70±3.24 35.99±2.78 30.60±1.92 "
    "45.80±1.67 32.07±2.69 39.22±5.52 41.20±3.71 14.45±2.25 61.95±1.82 49.20±9.45 62.00±4.31 "
    "46.21±5.58",
    "genlabel_gaussian": "82.09±0.08 54.00±0.95 54.70±0.89 52.10±0.89 55.10±0.73 53.39±2.44 "
    "49.99±1.98 58.00±0.32 41.42±0.73 50.50±0.61 51.50±2.30 26.04±2.87 74.97±0.16 85.57±2.01 "
    "88.70±2.48 74.62±3.09",
}


def _parse(ids: Sequence[int], table: dict[str, str]) -> dict[int, dict[str, tuple[float, float]]]:
    out: dict[int, dict[str, tuple[float, float]]] = {i: {} for i in ids}
    for method, text in table.items():
        cells = text.split()
        if len(cells) != len(ids):
            raise ValueError(f"{method}: {len(cells)} cells for {len(ids)} datasets")
        for i, cell in zip(ids, cells):
            m, s = cell.split("±")
            out[i][method] = (float(m), float(s))
    return out


#: Tables 4 and 5 (logistic regression, clean accuracy), by OpenML id then method.
PAPER_TABLE45 = _parse(_T45_IDS, _T45)
#: Table 6 (logistic regression, FGSM robust accuracy).
PAPER_TABLE6 = _parse(_T6_IDS, _T6)
#: Table 8 (2-hidden-layer FC net, clean accuracy).
PAPER_TABLE8 = _parse(_T8_IDS, _T8)
#: Table 9 (2-hidden-layer FC net, FGSM robust accuracy).
PAPER_TABLE9 = _parse(_T9_IDS, _T9)

#: Table 7 (image data): (robust, clean) accuracy (%), mean only.
PAPER_TABLE7 = {
    "mnist": {
        "vanilla": (48.17, 99.34), "mixup": (55.44, 99.27), "mixup+genlabel": (56.54, 99.36),
        "manifold_mixup": (55.56, 99.32), "manifold_mixup+genlabel": (56.62, 99.37),
    },
    "cifar10": {
        "vanilla": (16.89, 94.57), "mixup": (11.65, 95.68), "mixup+genlabel": (14.32, 96.09),
        "manifold_mixup": (18.14, 94.78), "manifold_mixup+genlabel": (18.91, 95.10),
    },
    "cifar100": {
        "vanilla": (17.19, 74.48), "mixup": (18.44, 77.65), "mixup+genlabel": (19.58, 78.04),
        "manifold_mixup": (19.25, 78.61), "manifold_mixup+genlabel": (19.28, 78.99),
    },
}

#: Table 15: classification error (%) on Circle (2D), Circle (3D), MNIST 7/9.
PAPER_TABLE15 = {
    "circle": {"vanilla": (8.60, 4.84), "mixup": (7.98, 2.94), "manifold_mixup": (7.34, 1.43),
               "genmix": (4.90, 0.12)},
    "circle3d": {"vanilla": (1.40, 0.54), "mixup": (5.22, 1.99), "manifold_mixup": (0.94, 0.75),
                 "genmix": (0.22, 0.06)},
    "mnist79": {"vanilla": (2.72, 0.20), "mixup": (2.32, 0.40), "manifold_mixup": (3.88, 0.53),
                "genmix": (2.13, 0.12)},
}


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
