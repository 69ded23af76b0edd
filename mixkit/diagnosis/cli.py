"""``mixkit diagnose FILE``: the command-line face of :func:`mixkit.diagnose`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixkit.diagnosis.files import DataFileError, read_data
from mixkit.diagnosis.measure import DEFAULT_DENSITIES, diagnose
from mixkit.diagnosis.report import plot, to_json, to_markdown


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a CSV with a target column, or a .npz / .pt file holding 'x' and 'y'")
    p.add_argument("--target", default=None, help="the CSV's label column (default: target, label, class or y)")
    p.add_argument("--alpha", type=float, default=1.0, help="Beta parameter of the mixup you plan to use")
    p.add_argument("--n-mixed", type=int, default=4000, help="mixed points to draw (default 4000)")
    p.add_argument("--densities", default=",".join(DEFAULT_DENSITIES),
                   help="comma-separated registered densities to fit (default: the fast ones, gaussian,kde; "
                        "add flow, vae or gan when you can wait)")
    p.add_argument("--out", default=None, help="folder for diagnosis.md, diagnosis.json and diagnosis.png "
                                               "(default: <file>_diagnosis next to the file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the JSON to stdout instead of the summary")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        x, y, classes = read_data(args.file, args.target)
    except DataFileError as exc:
        print(f"mixkit diagnose: error: {exc}", file=sys.stderr)
        return 2
    densities = [d.strip() for d in args.densities.split(",") if d.strip()]
    try:
        diag = diagnose(x, y, alpha=args.alpha, n_mixed=args.n_mixed, densities=densities, seed=args.seed,
                        progress=not args.quiet)
    except (ValueError, TypeError, LookupError) as exc:
        print(f"mixkit diagnose: error: {exc}", file=sys.stderr)
        return 2
    src = Path(args.file)
    out = Path(args.out) if args.out else src.with_name(src.stem + "_diagnosis")
    out.mkdir(parents=True, exist_ok=True)
    picture = None
    if not args.no_plot:
        picture = plot(diag, out / "diagnosis.png").name
    (out / "diagnosis.json").write_text(to_json(diag))
    summary = to_markdown(diag, picture)
    (out / "diagnosis.md").write_text(summary)
    print(to_json(diag) if args.json else summary)
    if not args.json:
        print(f"wrote {out}/diagnosis.md, diagnosis.json" + (", diagnosis.png" if picture else ""), file=sys.stderr)
    return 0
