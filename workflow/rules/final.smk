# The final table (one row per cell), the study's fastest-setting view and the audit
# (audit/audit.{parquet,md}: every source side by side, job by job; `evalwatt audit` rebuilds it).
from evalwatt.smk import final as ew_final


rule final_table:
    input:
        [LAYOUT.cell_energy(c) for c in PLAN.cells],
    output:
        **ew_final.final_files(LAYOUT),
    log:
        LAYOUT.log("final_table", "final"),
    run:
        ew_final.write_final(CONFIG, input, output, log)
