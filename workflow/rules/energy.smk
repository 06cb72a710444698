# Per job: the cluster's own accounting of it (CEEMS API, Prometheus, sacct), collected on the
# login node once it ended; only when accounting.sources is set. Every query and raw reply is
# kept under the job's folder, so the energy step below needs no network.
# Per cell: energy terms from the raw readings of the cell, its baseline (per-model: its model
# job's reference idle) and its judgement.
# The helpers write the rules' logs (evalwatt.smk.common.rule_log: what they wrote, or the
# traceback).
from evalwatt.smk import energy as ew_energy

for _rule in ew_common.RUN_RULES if ew_energy.collects_accounting(CONFIG) else ():

    rule:
        name:
            _rule.replace("run_", "collect_accounting_", 1)
        input:
            ew_common.job_files(LAYOUT, _rule).result,
        output:
            **ew_energy.accounting_files(CONFIG, LAYOUT, _rule),
        log:
            LAYOUT.log("collect_accounting", "{kind}-{job}"),
        wildcard_constraints:
            kind=ew_common.kinds_of(_rule),
        localrule: True
        run:
            ew_energy.collect_accounting(CONFIG, input[0], output, log)


rule cell_energy:
    input:
        unpack(lambda w: ew_energy.energy_inputs(CONFIG, RUN, w.cell)),
    output:
        LAYOUT.cell_energy("{cell}"),
    log:
        LAYOUT.log("cell_energy", "{cell}"),
    run:
        ew_energy.write_record(CONFIG, PLAN, LAYOUT, wildcards, output, log)
