"""What several subcommands share: the ``--configfile`` and ``--json`` options, the config
they load and the layout of its run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalwatt.base.layout import Layout
from evalwatt.base.paths import DEFAULT_CONFIG
from evalwatt.config.load import Config, load_config

Subparsers = Any
"""argparse's subparsers action (its class is private)."""


def description(doc: str | None) -> str | None:
    """A command's --help description: its module docstring's first paragraph."""
    return doc.split("\n\n")[0] if doc else None


def add_configfile(parser: argparse.ArgumentParser) -> None:
    """``--configfile FILE``, by default the embedded CPU demo's config."""
    parser.add_argument("--configfile", type=Path, default=DEFAULT_CONFIG)


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"{what}, as a JSON list")


def load(args: argparse.Namespace, *, check_environment: bool = True) -> Config:
    """The config of ``--configfile``. Commands that only read what a run wrote (status,
    stage, audit) skip the checks of this machine (``check_environment=False``): they also
    run on a login node without the jobs' environment."""
    return load_config(args.configfile, check_environment=check_environment)


def layout_of(config: Config) -> Layout:
    return Layout.of(config.results_dir, config.run)
