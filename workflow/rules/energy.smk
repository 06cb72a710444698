# Per job: the cluster's own accounting of it (CEEMS API, Prometheus, sacct), collected on the
# login node once it ended; only when accounting.sources is set. Every query and raw reply is
# kept under the job's folder, so the energy step below needs no network.
# Per cell: energy terms from the raw readings of the cell, its baseline and its judge job.
# The helpers write the rules' logs (evalwatt.smk.common.rule_log: what they wrote, or the
# traceback).
from evalwatt.smk import energy as ew_energy

if ew_energy.collects_accounting(CONFIG):

    rule collect_accounting:
        input:
            LAYOUT.run_result("{kind}", "{job}"),
        output:
            **ew_energy.accounting_files(CONFIG, LAYOUT),
        log:
            LAYOUT.log("collect_accounting", "{kind}-{job}"),
        localrule: True
        run:
            ew_energy.collect_accounting(CONFIG, input[0], output, log)


rule cell_energy:
    input:
        unpack(lambda w: ew_energy.energy_inputs(CONFIG, PLAN, LAYOUT, w.cell)),
    output:
        LAYOUT.cell_energy("{cell}"),
    log:
        LAYOUT.log("cell_energy", "{cell}"),
    run:
        ew_energy.write_record(CONFIG, PLAN, LAYOUT, wildcards, output, log)
