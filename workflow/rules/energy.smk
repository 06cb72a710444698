# Per cell: energy terms from the raw readings of the cell, its baseline and its judge job.
# The helper writes the rule's log (ew.rule_log: what it wrote, or the traceback).


rule cell_energy:
    input:
        unpack(lambda w: ew.energy_inputs(CONFIG, PLAN, LAYOUT, w.cell)),
    output:
        LAYOUT.cell_energy("{cell}"),
    log:
        LAYOUT.log("cell_energy", "{cell}"),
    run:
        ew.write_record(CONFIG, PLAN, LAYOUT, wildcards, output, log)
