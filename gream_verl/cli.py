"""The ``gream`` command. Each subcommand group lives in its module's ``commands.py``, which
defines ``add_commands(subparsers)``; handlers import heavy libraries lazily so ``--help`` is fast.

A handler takes the parsed ``args`` and returns a JSON-serialisable dict (or None); with
``--json`` it is printed as JSON, otherwise as a readable table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Busy-waiting OpenMP threads slow everything down on small shared CPUs; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gream_verl.tables import emit

COMMAND_MODULES = (
    "gream_verl.data.commands",
    "gream_verl.index.commands",
    "gream_verl.model.commands",
    "gream_verl.tasks.commands",
    "gream_verl.srpo.commands",
    "gream_verl.infer.commands",
    "gream_verl.serve.commands",
    "gream_verl.quickstart",
    "gream_verl.ablation",
)


class GreamArgumentParser(argparse.ArgumentParser):
    """Accepts ``key=value`` overrides after options too (``gream index build --data X levels=3``):
    plain argparse stops filling a ``nargs="*"`` positional once an option has been seen.
    Subparsers inherit this class, so every command with an ``overrides`` positional gets it."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        late = [a for a in extras if "=" in a and not a.startswith("-")]
        if late and hasattr(namespace, "overrides"):
            namespace.overrides = [*(namespace.overrides or []), *late]
            extras = [a for a in extras if a not in late]
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = GreamArgumentParser(
        prog="gream",
        description="GREAM generative reasoning recommendation: data, item index, SFT data, "
        "SRPO for verl, constrained decoding and evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that command group is not part of this installation
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"gream {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int):
        return result
    if result is not None:
        try:
            emit(result, as_json=getattr(args, "json", False))
        except BrokenPipeError:  # `gream ... --json | head` closed the pipe: not an error
            sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
