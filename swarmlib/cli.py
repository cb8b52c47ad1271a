"""The ``swarmlib`` command.

Commands for the chain, identities and the local launcher join this one as they
land; today it reports the version and the merge strategies.
"""

from __future__ import annotations

import argparse
import sys

from swarmlib import __version__
from swarmlib.merge import STRATEGIES

__all__ = ["main"]


def _strategies(_: argparse.Namespace) -> int:
    seen: dict[type, list[str]] = {}
    for name, cls in STRATEGIES.items():
        seen.setdefault(cls, []).append(name)
    for cls, names in seen.items():
        exact = "exact" if cls.exact_when_sharded else "equal up to rounding"
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{names[0]:<18} {', '.join(names[1:]) or '-':<18} sharded: {exact:<21} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``swarmlib``."""
    parser = argparse.ArgumentParser(
        prog="swarmlib",
        description="Swarm Learning for Keras: peer to peer, no central server.",
    )
    parser.add_argument("--version", action="version", version=f"swarmlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    strategies = sub.add_parser("strategies", help="list the merge strategies and their names")
    strategies.set_defaults(func=_strategies)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``swarmlib`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
