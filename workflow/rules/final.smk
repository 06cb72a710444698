# The final table (one row per cell), the study's fastest-setting view and the audit
# (audit/audit.{parquet,md}: every source side by side, job by job; `evalwatt audit` rebuilds it).


rule final_table:
    input:
        [LAYOUT.cell_energy(c) for c in PLAN.cells],
    output:
        **ew.final_files(LAYOUT),
    log:
        LAYOUT.log("final_table", "final"),
    run:
        ew.write_final(CONFIG, input, output, log)
