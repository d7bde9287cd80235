"""The `objdet` command: a thin dispatcher over one module per sub-command (or group of them).

Each module in `COMMANDS` has `add(subparsers)`, which declares its arguments and binds its `run(args)`.
Heavy imports happen inside `run`, so `objdet --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from objdet.errors import ObjdetError

# sub-command modules in the order `objdet --help` lists them
COMMANDS = ("demo", "train", "evaluate", "report", "predict", "export", "convert", "data", "ablate")


def build_parser() -> argparse.ArgumentParser:
    """The `objdet` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="objdet", description="Object detection from the box arithmetic up.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"objdet.cli.{name}").add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; a user error prints `objdet CMD: error: ...` and returns 2, Ctrl-C returns 130."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ObjdetError as err:
        print(f"objdet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"objdet {args.command}: interrupted", file=sys.stderr)
        return 130
