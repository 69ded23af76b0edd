"""The ``mixkit`` command: ``mixkit list``, ``mixkit demo``, ``mixkit --version``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from mixkit._version import __version__
from mixkit.diagnosis.cli import add_arguments as add_diagnose_arguments


def _cmd_list(args: argparse.Namespace) -> int:
    from mixkit.registry import LOAD_PLUGINS_ENV, available, parse_load_plugins, plugins

    table = available()  # a broken plugin is dropped and listed below, never raised here
    for kind, title in (("mixer", "mixers"), ("density", "densities")):
        print(f"{title}:")
        for comp in table.get(kind, {}).values():
            line = f"  {comp.name:<16} {comp.description}  [{comp.plugin}]"
            hint = comp.install_hint
            if hint:
                line += f"  needs the {comp.extra!r} extra: {hint}"
            print(line)
    print("plugins:")
    for info in plugins():
        if info.error:
            print(f"  {info.name:<16} FAILED to load ({info.source}): {info.error}")
        else:
            print(f"  {info.name:<16} {info.source}")
    selected = parse_load_plugins(os.environ.get(LOAD_PLUGINS_ENV))
    if selected is not None:
        chosen = ", ".join(sorted(selected)) or "none"
        print(f"third-party plugins loaded: {chosen} (set by {LOAD_PLUGINS_ENV})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mixkit.demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from mixkit.diagnosis.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixkit", description="Mixing-based data augmentation whose labels follow the data."
    )
    parser.add_argument("--version", action="version", version=f"mixkit {__version__}")
    sub = parser.add_subparsers(dest="command")
    p_list = sub.add_parser("list", help="list mixers, densities and plugins")
    p_list.set_defaults(func=_cmd_list)
    p_demo = sub.add_parser(
        "demo", help="vanilla vs mixup vs mixup+GenLabel on built-in data, no download"
    )
    p_demo.add_argument("--out", default="demo_out", help="folder for the PNG and JSON results")
    p_demo.add_argument("--epochs", type=int, default=None, help="override training epochs")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_demo.set_defaults(func=_cmd_demo)
    p_diag = sub.add_parser("diagnose", help="will mixup hurt on this data, and which density should relabel it?")
    add_diagnose_arguments(p_diag)
    p_diag.set_defaults(func=_cmd_diagnose)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
