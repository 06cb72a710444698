"""What every rule file uses (workflow/rules/common.smk): the checked config, the plan, the
layout, the id pattern of wildcards, a rule's log, and the ``onerror:`` report.

Rule files stay a table of contents; the logic lives in importable, tested modules. Every
fact about a job (its model, resources, environment, paths) comes from ``evalwatt.jobs.resolve``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from evalwatt.base.layout import Layout
from evalwatt.config.load import Config, from_dict
from evalwatt.ops.status_text import report_not_done
from evalwatt.plan.matrix import Plan, plan_run

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def load(config: Mapping[str, Any], configfiles: Iterable[str | Path]) -> Config:
    """Validate Snakemake's config; a model sheet is read relative to the last config file."""
    files = [Path(f) for f in configfiles]
    base = files[-1].parent if files else Path("config")
    origin = str(files[-1]) if files else "config"
    return from_dict(config, base, origin=origin)


def plan(config: Config) -> Plan:
    return plan_run(config)


def layout(config: Config) -> Layout:
    return Layout.of(config.results_dir, config.run)


@contextmanager
def rule_log(path: str | Path, outputs: Iterable[str] = ()) -> Iterator[TextIO]:
    """Write a ``run:`` rule's declared log: when it ran, what it wrote, or its traceback.

    Snakemake runs ``run:`` bodies inside its own process, where redirecting stdout would
    catch other rules' output too; the log says what this rule did instead (the body may
    add lines to the log it is given).
    """
    started = time.time()
    with open(path, "w", encoding="utf-8") as log:
        log.write(f"started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        try:
            yield log
        except BaseException:
            log.write(traceback.format_exc())
            raise
        for out in outputs:
            log.write(f"wrote {out} ({Path(out).stat().st_size} bytes)\n")
        log.write(f"done in {time.time() - started:.2f} s\n")


def on_error(config: Config, plan: Plan, layout: Layout) -> None:
    """The Snakefile's ``onerror:``: name each job not done, why, and its log (never raises)."""
    report_not_done(config, plan, layout)
