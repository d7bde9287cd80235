"""The `objdet` command: one sub-command per job (demo, train, eval, predict, convert, export).

Each sub-command is a pair: `_add_<name>(subparsers)` declares its arguments and binds `_run_<name>`.
Heavy imports happen inside the `_run_*` functions so `objdet --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from objdet.errors import ObjdetError


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the built-in `shapes` data set (no download)")
    p.add_argument("--out", default="runs/demo", help="run folder for pictures and results")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data set")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from objdet.data.shapes import draw_samples

    out = draw_samples(args.out, count=8, seed=args.seed)
    print(f"wrote {len(out)} pictures of the built-in data set to {args.out}")
    return 0


# Sub-commands in the order `objdet --help` lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="objdet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ObjdetError as err:
        print(f"objdet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"objdet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
