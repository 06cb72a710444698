"""The plan rule (workflow/rules/plan.smk): the planned matrix and its cost preview, written
for the record."""

from __future__ import annotations

from collections.abc import Sequence

from evalwatt.base.atomic import write_json
from evalwatt.config.load import Config
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import Plan
from evalwatt.smk.common import rule_log


def write_plan(config: Config, plan: Plan, output: Sequence[str], log: Sequence[str]) -> None:
    with rule_log(log[0], output):
        cost = cost_preview(plan, config)
        write_json(output[0], {"run": config.run, **plan.to_json(), "cost": cost})
