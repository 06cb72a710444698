"""The plan rule (workflow/rules/plan.smk): the planned matrix and its cost preview, written
for the record."""

from __future__ import annotations

from collections.abc import Sequence

from evalwatt.config.load import Config
from evalwatt.plan.matrix import Plan
from evalwatt.plan.record import write_plan_file
from evalwatt.smk.common import rule_log


def write_plan(config: Config, plan: Plan, output: Sequence[str], log: Sequence[str]) -> None:
    with rule_log(log[0], output):
        write_plan_file(output[0], config, plan)
