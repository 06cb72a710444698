# Render each job (spec.json + job.sbatch) and run it. The script is the unit of work: the
# rule runs it with bash, inside a Slurm allocation under the Slurm executor; an admin can
# submit the same file by hand with sbatch.


rule render_job:
    output:
        script=LAYOUT.job_script("{kind}", "{job}"),
        spec=LAYOUT.job_spec("{kind}", "{job}"),
    params:
        spec=lambda w: ew.spec(CONFIG, PLAN, LAYOUT, w.kind, w.job),
    log:
        LAYOUT.log("render_{kind}", "{job}"),
    run:
        ew.write_job(CONFIG, PLAN, params.spec, output.script, output.spec)


rule run_baseline:
    input:
        script=LAYOUT.job_script("baseline", "{baseline}"),
    output:
        LAYOUT.run_result("baseline", "{baseline}"),
    log:
        LAYOUT.log("run_baseline", "{baseline}"),
    threads: lambda w: ew.job_cpus(CONFIG, PLAN, "baseline", w.baseline)
    resources:
        **ew.job_resources(CONFIG, PLAN, "baseline"),
    conda:
        ew.conda_env(CONFIG, PLAN, "baseline")
    shell:
        "bash {input.script:q} > {log:q} 2>&1"


rule run_cell:
    input:
        script=LAYOUT.job_script("cell", "{cell}"),
    output:
        LAYOUT.run_result("cell", "{cell}"),
    log:
        LAYOUT.log("run_cell", "{cell}"),
    threads: lambda w: ew.job_cpus(CONFIG, PLAN, "cell", w.cell)
    resources:
        **ew.job_resources(CONFIG, PLAN, "cell"),
    conda:
        ew.conda_env(CONFIG, PLAN, "cell")
    shell:
        "bash {input.script:q} > {log:q} 2>&1"


rule run_judge:
    input:
        script=LAYOUT.job_script("judge", "{cell}"),
        cell=LAYOUT.run_result("cell", "{cell}"),
    output:
        LAYOUT.run_result("judge", "{cell}"),
    log:
        LAYOUT.log("run_judge", "{cell}"),
    threads: lambda w: ew.job_cpus(CONFIG, PLAN, "judge", w.cell)
    resources:
        **ew.job_resources(CONFIG, PLAN, "judge"),
    conda:
        ew.conda_env(CONFIG, PLAN, "judge")
    shell:
        "bash {input.script:q} > {log:q} 2>&1"
