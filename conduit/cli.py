"""Command line: ``python -m conduit --version`` (``run`` arrives with the server)."""

from __future__ import annotations

import argparse
import sys


def version_line() -> str:
    from conduit import __version__, _ext

    state = "on" if _ext.compiled_active() else "off"
    return f"conduit {__version__} (compiled extensions: {state})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conduit", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_line())
        return 0
    parser.print_help(sys.stderr)
    return 2
