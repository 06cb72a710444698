# Render each job (spec.json + job.sbatch) and run it. The script is the unit of work: the
# rule runs it with bash, inside a Slurm allocation under the Slurm executor; an admin can
# submit the same file by hand with sbatch. Everything that differs between the kinds of job
# (cell, baseline, model, judge-pass) comes from evalwatt.jobs.resolve, each job resolved once
# (evalwatt.jobs.run). Two rules run jobs, one per spelling of the kind's folder: run_job
# (cells/, baselines/, models/) and run_judge_pass (judge-passes/).
# The rules' functions are lambdas, not JOBS's bound methods: Snakemake inspects a function's
# signature each time it calls it (several calls per job), and a bound method's costs it about
# twice a plain function's (benchmarks/plan_scale.py).
from evalwatt.smk.jobs import JobRules

JOBS = JobRules(RUN)


rule render_job:
    output:
        script=LAYOUT.job_script("{kind}", "{job}"),
        spec=LAYOUT.job_spec("{kind}", "{job}"),
    params:
        spec=lambda w: JOBS.spec_text(w),
    log:
        LAYOUT.log("render_{kind}", "{job}"),
    wildcard_constraints:
        job=ew_common.ID_PATTERN,
    run:
        JOBS.write(wildcards, output, log)


for _rule in ew_common.RUN_RULES:

    rule:
        name:
            _rule
        input:
            unpack(lambda w: JOBS.inputs(w)),
        output:
            ew_common.job_files(LAYOUT, _rule).result,
        log:
            LAYOUT.log("run_{kind}", "{job}"),
        wildcard_constraints:
            job=ew_common.ID_PATTERN,
            kind=ew_common.kinds_of(_rule),
        threads: lambda w: JOBS.cpus(w)
        resources:
            **JOBS.resources(),
        conda:
            lambda w: JOBS.conda_env(w)
        shell:
            "bash {input.script:q} > {log:q} 2>&1"
