# Per cell: energy terms from the raw readings of the cell, its baseline and its judge job.


rule cell_energy:
    input:
        unpack(lambda w: ew.energy_inputs(PLAN, LAYOUT, w.cell)),
    output:
        LAYOUT.cell_energy("{cell}"),
    log:
        LAYOUT.log("cell_energy", "{cell}"),
    run:
        ew.write_record(CONFIG, PLAN, LAYOUT, wildcards.cell, output[0])
