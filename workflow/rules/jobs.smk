# Render each job (spec.json + job.sbatch) and run it. The script is the unit of work: the
# rule runs it with bash, inside a Slurm allocation under the Slurm executor; an admin can
# submit the same file by hand with sbatch. One rule for the three kinds of job (cell,
# baseline, judge): everything that differs between them comes from evalwatt.jobs.resolve.


rule render_job:
    output:
        script=LAYOUT.job_script("{kind}", "{job}"),
        spec=LAYOUT.job_spec("{kind}", "{job}"),
    params:
        spec=lambda w: ew.job_spec_text(CONFIG, PLAN, LAYOUT, w),
    log:
        LAYOUT.log("render_{kind}", "{job}"),
    wildcard_constraints:
        job=ew.ID_PATTERN,
    run:
        ew.write_job(CONFIG, PLAN, LAYOUT, wildcards, output, log)


rule run_job:
    input:
        unpack(lambda w: ew.job_inputs(PLAN, LAYOUT, w)),
    output:
        LAYOUT.run_result("{kind}", "{job}"),
    log:
        LAYOUT.log("run_{kind}", "{job}"),
    wildcard_constraints:
        job=ew.ID_PATTERN,
    threads: lambda w: ew.job_cpus(CONFIG, PLAN, LAYOUT, w)
    resources:
        **ew.job_resources(CONFIG, PLAN, LAYOUT),
    conda:
        lambda w: ew.job_conda_env(CONFIG, PLAN, LAYOUT, w)
    shell:
        "bash {input.script:q} > {log:q} 2>&1"
