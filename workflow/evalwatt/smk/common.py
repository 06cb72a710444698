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

from evalwatt.base.layout import KIND_DIRS, JobFiles, Layout
from evalwatt.base.vocabulary import RUN_KINDS
from evalwatt.config.load import Config, from_dict
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.evidence import RUN_RULES
from evalwatt.ops.status_text import report_not_done
from evalwatt.plan.matrix import Plan, plan_run

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
RUN_KIND_PATTERN = "|".join(RUN_KINDS)
"""The ``{kind}`` wildcard of the job rules: the kinds of job Snakemake runs."""


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


def run_jobs(config: Config, plan: Plan, layout: Layout) -> RunJobs:
    """The run's jobs (baselines and cells, or model jobs; judge passes), each resolved once."""
    return RunJobs(config, plan, layout)


def job_files(layout: Layout, rule: str) -> JobFiles:
    """The files of the jobs a rule runs (``RUN_RULES``) as ``{kind}``/``{job}`` patterns:
    one rule per way a kind's folder is spelt, since ``judge-passes`` is not ``judge-pass``
    and an ``s`` (``evalwatt.base.layout.KIND_DIRS``)."""
    kinds = RUN_RULES[rule]
    suffixes = {KIND_DIRS[k].removeprefix(k) for k in kinds}
    if len(suffixes) != 1 or not all(KIND_DIRS[k].startswith(k) for k in kinds):
        raise ValueError(f"rule {rule}: the folders of {kinds} are not one pattern")
    return JobFiles(layout.root / f"{{kind}}{suffixes.pop()}" / "{job}")


def kinds_of(rule: str) -> str:
    """The ``{kind}`` wildcard's pattern of a job rule."""
    return "|".join(RUN_RULES[rule])


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
