"""The plan file (plan/plan.json) of a run: its matrix, its config's checks, its cost preview.

The plan rule writes it for the record; the report's plan page reads it back through the
contract (``evalwatt.contracts.plan.PlanFile``).
"""

from __future__ import annotations

from pathlib import Path

from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.plan import PlanFile
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import Plan


def plan_file(config: Config, plan: Plan) -> PlanFile:
    return PlanFile(
        run=config.run,
        models=tuple(plan.models.values()),
        baselines=tuple(plan.baselines.values()),
        cells=tuple(plan.cells.values()),
        checks=plan.checks,
        cost=cost_preview(plan, config),
    )


def write_plan_file(path: Path | str, config: Config, plan: Plan) -> None:
    write_contract(path, plan_file(config, plan))
