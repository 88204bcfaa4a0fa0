"""The ``napari-dgno`` command: one sub-command per module of this package.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed arguments, returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: Sub-command modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("deblur", "models", "focus", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-dgno",
        description="Remove defocus blur from microscopy images with DGNO (headless; the napari plugin uses the same core).",
    )
    parser.add_argument("--version", action="version", version=f"napari-dgno {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}_cmd").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("napari-dgno: interrupted; nothing partial was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
