# The planned matrix, written for the record: GPUs per model and why, cells, baselines, cost.
from evalwatt.smk import plan as ew_plan


rule plan:
    output:
        LAYOUT.plan(),
    params:
        plan=PLAN.to_json(),
    log:
        LAYOUT.log("plan", "plan"),
    run:
        ew_plan.write_plan(CONFIG, PLAN, output, log)
