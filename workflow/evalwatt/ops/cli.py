"""The ``evalwatt`` command: plan a run, compute energy from recorded traces, run a job."""

from __future__ import annotations

import argparse
import os
import sys

from evalwatt.base.errors import EXIT_USER_ERROR, UserError
from evalwatt.ops.commands import (
    audit,
    energy,
    extras,
    job,
    plan,
    preview_check,
    repeats,
    schema,
    stage,
    status,
    submit,
)

COMMANDS = (
    plan,
    energy,
    job,
    schema,
    status,
    submit,
    stage,
    audit,
    preview_check,
    repeats,
    extras,
)
"""Each subcommand's module, in the order ``evalwatt --help`` lists them."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalwatt", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected errors (``UserError``: bad config, sheet, trace, value) become
    one message on stderr and exit 2; only real bugs show a traceback."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"evalwatt {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `evalwatt ... | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
