# Render each job (spec.json + job.sbatch) and run it. The script is the unit of work: the
# rule runs it with bash, inside a Slurm allocation under the Slurm executor; an admin can
# submit the same file by hand with sbatch. One rule for the three kinds of job (cell,
# baseline, judge): everything that differs between them comes from evalwatt.jobs.resolve,
# each job resolved once (evalwatt.smk.jobs.RunJobs).
from evalwatt.smk.jobs import RunJobs

JOBS = RunJobs(CONFIG, PLAN, LAYOUT)


rule render_job:
    output:
        script=LAYOUT.job_script("{kind}", "{job}"),
        spec=LAYOUT.job_spec("{kind}", "{job}"),
    params:
        spec=JOBS.spec_text,
    log:
        LAYOUT.log("render_{kind}", "{job}"),
    wildcard_constraints:
        job=ew_common.ID_PATTERN,
    run:
        JOBS.write(wildcards, output, log)


rule run_job:
    input:
        unpack(JOBS.inputs),
    output:
        LAYOUT.run_result("{kind}", "{job}"),
    log:
        LAYOUT.log("run_{kind}", "{job}"),
    wildcard_constraints:
        job=ew_common.ID_PATTERN,
    threads: JOBS.cpus
    resources:
        **JOBS.resources(),
    conda:
        JOBS.conda_env
    shell:
        "bash {input.script:q} > {log:q} 2>&1"
