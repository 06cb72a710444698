# evalwatt: GPU energy per answer of language models, next to their benchmark scores.
#
#   snakemake --profile profiles/local                               # the CPU demo
#   snakemake --profile profiles/slurm --configfile config/peren.yaml  # the study on a cluster
#
# Stages (one file each under workflow/rules/):
#   common   validate the config, plan the matrix (GPUs per model, cells, baselines)
#   plan     write the plan and its cost preview, for the record
#   jobs     render one sbatch script per job (jinja2) and run it: cells and load-only
#            baselines (execution: per-cell) or one job per model (per-model), and one
#            judge pass per judge
#   energy   per cell: energy terms from the jobs' raw readings, with formulas
#   final    the final table (Parquet, CSV, Markdown), the fastest-setting view, the audit
#   report   the figures and the report's pages (snakemake --report results/<run>/report.html)
from snakemake.utils import min_version

min_version("9.0")


# The embedded default is the CPU demo. `--configfile FILE` replaces it: Snakemake would
# otherwise merge the two, nested keys and all (a demo judge inside the study's config).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/jobs.smk"
include: "workflow/rules/energy.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        ew_final.final_outputs(RUN),
        ew_report.report_outputs(RUN),


# A run that ends with jobs not done names each one, why, and its log (evalwatt.smk.common).
onerror:
    ew_common.on_error(CONFIG, PLAN, LAYOUT)
