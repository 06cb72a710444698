# Validate the config on load and plan the matrix; every other stage reads PLAN and LAYOUT.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from evalwatt import workflow_support as ew  # noqa: E402

CONFIG = ew.load(config, workflow.configfiles)
PLAN = ew.plan(CONFIG)
LAYOUT = ew.layout(CONFIG)


wildcard_constraints:
    cell=ew.ID_PATTERN,
    baseline=ew.ID_PATTERN,
    kind="cell|baseline|judge",


localrules:
    plan,
    render_job,
    cell_energy,
    final_table,


def final_outputs():
    return ew.final_outputs(LAYOUT, PLAN)
