# Validate the config on load and plan the matrix; every other stage reads PLAN and LAYOUT.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from snakemake.exceptions import WorkflowError  # noqa: E402

from evalwatt.smk import common as ew_common  # noqa: E402
from evalwatt.config.checks import check_environment  # noqa: E402
from evalwatt.config.load import read_config_file  # noqa: E402
from evalwatt.base.errors import UserError  # noqa: E402

# A bad config is the user's to fix: show the message (file, field, value, what is allowed),
# not a traceback of evalwatt. Snakemake's own YAML reading keeps the last of two equal keys,
# so each config file is read again strictly first.
try:
    for _configfile in workflow.configfiles:
        read_config_file(Path(_configfile))
    CONFIG = check_environment(ew_common.load(config, workflow.configfiles))
    PLAN = ew_common.plan(CONFIG)
except UserError as _error:
    raise WorkflowError(f"evalwatt: bad configuration:\n{_error}") from None
LAYOUT = ew_common.layout(CONFIG)
# The run's jobs: baselines and cells (execution per-cell) or model jobs (per-model), and the
# judge passes; packed jobs hold the cells not done on disk (evalwatt.jobs.run).
RUN = ew_common.run_jobs(CONFIG, PLAN, LAYOUT)


wildcard_constraints:
    cell=ew_common.ID_PATTERN,
    baseline=ew_common.ID_PATTERN,
    kind=ew_common.RUN_KIND_PATTERN,


localrules:
    plan,
    render_job,
    cell_energy,
    final_table,
