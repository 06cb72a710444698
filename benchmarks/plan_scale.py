"""How long `snakemake -n` takes on a large evalwatt matrix, next to a bare workflow.

What it measures
    The wall time of a dry run (`snakemake -n`) of the evalwatt Snakefile on a synthetic study
    config: by default 50 models x 6 benchmarks x 2 temperatures x 3 max_connections = 1,800
    cells, plus one load-only baseline per model and the judge passes of the judged cells
    (`--execution per-model`: one model job per model instead of cells and baselines). It then
    times a *bare* Snakemake workflow of exactly the same shape: the same rules (plan,
    render_job, run_job and run_judge_pass for every kind of job, cell_energy, final_table,
    figures, report_pages), the same jobs per rule, the same dependencies and the same
    declared files (outputs and logs, named by evalwatt's Layout from the run's own list of
    jobs), but literal tables instead of evalwatt's Python behind inputs, params, threads,
    resources and conda, and `touch {output}` bodies.

Why
    A dry run is what a user does first, and what Snakemake does before every real run, on a
    login node. The bare workflow is Snakemake's own floor for a DAG of that shape, so the
    ratio evalwatt / bare is the overhead of evalwatt's Python (config validation, planning,
    per-job params, resources and job specs). The target (issue 15) is a ratio <= 1.2 on the
    1,800-cell matrix.

Both dry runs run in a fresh temporary directory (`--directory`), so results, `.snakemake/`
and the Snakefile's default `config/config.yaml` (absent there) cannot leak into the figure.
`--quiet rules host` drops the per-job printout (so the time is DAG building, not terminal
output) but keeps the "Job stats" table, which is parsed to check that both DAGs have the
same jobs per rule: a bare workflow that no longer matches the Snakefile stops the script
(exit 1) rather than give a figure. The runs of the two workflows alternate, and each run's
CPU time is printed next to its wall time, because on a shared machine the load drifts.

`--short` is the check CI runs (tests/test_benchmarks.py): a 300-cell matrix, one round, the
DAGs compared and the times printed, the ratio not judged (at that size evalwatt's fixed
start-up, ~1 s of imports and config checks, weighs more than its per-job cost).

    .venv/bin/python benchmarks/plan_scale.py                  # the figures (exit 1: above target)
    .venv/bin/python benchmarks/plan_scale.py --short          # CI's check, about 30 s
    .venv/bin/python benchmarks/plan_scale.py --profile        # and where the time goes
    .venv/bin/python benchmarks/plan_scale.py --models 10 --repeat 5
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import platform
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from evalwatt.base.layout import FINAL_BEST, FINAL_FORMATS, FINAL_TABLE, REPORT_PAGES, Layout
from evalwatt.config.load import Config, load_config
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.matrix import Plan, plan_run
from evalwatt.smk.energy import energy_inputs
from evalwatt.smk.jobs import JobRules
from evalwatt.smk.report import figure_inputs, figure_specs

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
QUIET = ["--quiet", "rules", "host"]  # no per-job blocks, no header; "Job stats" stays
TARGET_RATIO = 1.2
EVALWATT_CODE = r"workflow/evalwatt/|Snakefile|\.smk"  # --profile's second view

# Model archetypes (family, total_params_b, weight_bits, attention_heads, kv_heads), shaped like
# the study's sheet: 1, 2 or 4 GPUs of 80 GB (two need 3, which the planner rounds to 4).
ARCHETYPES = [
    ("llama", 70.55, 16, 64, 8),
    ("qwen2.5", 32.76, 16, 40, 8),
    ("gemma", 27.43, 16, 32, 16),
    ("qwen2.5", 7.62, 16, 28, 4),
    ("mistral", 123.0, 8, 96, 8),
    ("qwen3", 80.0, 16, 16, 2),
    ("llama", 8.03, 16, 32, 8),
    ("phi", 14.7, 16, 40, 10),
    ("qwen3", 1.7, 16, 16, 8),
    ("mistral", 24.0, 16, 32, 8),
]
JUDGE = "synth-judge"


@dataclass(frozen=True)
class Matrix:
    """The sizes of the synthetic study."""

    models: int
    benchmarks: int
    temperatures: int
    max_connections: int

    @property
    def cells(self) -> int:
        return self.models * self.benchmarks * self.temperatures * self.max_connections


# --- the synthetic evalwatt config ------------------------------------------------------------


def model_names(matrix: Matrix) -> list[str]:
    """The judge model is the first one, so judge jobs run a model of the matrix."""
    return [JUDGE] + [f"synth-{i:02d}" for i in range(1, matrix.models)]


def benchmark_names(matrix: Matrix) -> list[str]:
    return [f"bench_{i}" for i in range(matrix.benchmarks)]


def judged(benchmark_index: int) -> bool:
    """Every other benchmark is scored by the LLM judge (the study: 3 of 6)."""
    return benchmark_index % 2 == 0


def temperatures(n: int) -> list[float]:
    step = min(0.7, 2.0 / max(n - 1, 1))  # 0 and 0.7 like the study; stays within [0, 2]
    return [round(i * step, 4) for i in range(n)]


def connections(n: int) -> list[int]:
    return [10 ** (i + 1) for i in range(n)]  # 10, 100, 1000 like the study


def model_entry(index: int, name: str, benches: list[str]) -> dict:
    family, params, bits, heads, kv = ARCHETYPES[index % len(ARCHETYPES)]
    params = round(params * (1 + 0.01 * (index // len(ARCHETYPES))), 2)  # sizes vary a little
    return {
        "name": name,
        "hf_id": f"synth-org/{name}",
        "backend": "vllm",
        "family": family,
        "total_params_b": params,
        "weight_bits": bits,
        "attention_heads": heads,
        "kv_heads": kv,
        "benchmarks": benches,
    }


def benchmark_entry(index: int) -> dict:
    entry = {
        "task": f"inspect_evals/synthetic_{index}",
        "samples": 100 + 50 * index,
        "scorer": "llm-judge" if judged(index) else "exact-match",
        "expected_s_per_sample": 1.0 + index,
    }
    if judged(index):
        entry["judge"] = "synth-judge-role"
    return entry


def synthetic_config(matrix: Matrix, model_root: Path) -> dict:
    """A config shaped like config/peren.yaml, with an inline `models:` list."""
    benches = benchmark_names(matrix)
    models = [model_entry(i, n, benches) for i, n in enumerate(model_names(matrix))]
    qwen3 = {"top_p": 0.8, "top_k": 20, "max_tokens": 32768}  # sampling only for a family used
    return {
        "run": "scale",
        "results_dir": "results",
        "model_root": str(model_root),
        # synthetic tasks and weights exist nowhere: say so rather than fail the machine checks
        "deferred_checks": ["weights", "tasks"],
        "cluster": {
            "name": "synthetic-h100",
            "gpu_model": "NVIDIA H100 80GB HBM3",
            "gpus_per_node": 4,
            "gpu_memory_gb": 80,
            "cpus_per_gpu": 24,
            "accounting_window_s": 300,
            "pad_margin_s": 30,
            "time_limit_min": 1200,
            "account": "abc@h100",
            "constraint": "h100",
        },
        "planner": {"vram_overhead": 1.3, "round_three_to_four": True},
        "job": {"ready_timeout_s": 3600, "env": {"VLLM_NO_USAGE_STATS": "1"}},
        "models": models,
        "benchmarks": {name: benchmark_entry(i) for i, name in enumerate(benches)},
        "judges": {"synth-judge-role": {"model": JUDGE, "temperature": 0.2}},
        "sweeps": {
            "temperature": temperatures(matrix.temperatures),
            "max_connections": connections(matrix.max_connections),
        },
        "sampling": {"qwen3": qwen3} if any(m["family"] == "qwen3" for m in models) else {},
    }


def write_evalwatt_config(
    matrix: Matrix, workdir: Path, execution: str = "per-cell"
) -> tuple[Path, Config, Plan]:
    """Write the config and check that evalwatt accepts it and plans the matrix's cells."""
    path = workdir / "config.yaml"
    data = synthetic_config(matrix, workdir / "models") | {"execution": execution}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    plan = plan_run(config)
    if len(plan.cells) != matrix.cells:
        raise SystemExit(f"evalwatt planned {len(plan.cells)} cells, not {matrix.cells}")
    return path, config, plan


# --- the bare workflow ------------------------------------------------------------------------

BARE_RUN = "bare"
ID = r"[A-Za-z0-9][A-Za-z0-9._-]*"

BARE_RULES = """
wildcard_constraints:
    cell=ID,
    baseline=ID,


localrules:
    plan,
    render_job,
    cell_energy,
    final_table,
    figures,
    report_pages,


rule all:
    input:
        ALL,


rule plan:
    output:
        PLAN,
    log:
        LOGS + "/plan/plan.log",
    shell:
        "touch {output}"


rule render_job:
    output:
        script=JOBS + "/{kind}/{job}/job.sbatch",
        spec=JOBS + "/{kind}/{job}/spec.json",
    log:
        LOGS + "/render_{kind}/{job}.log",
    wildcard_constraints:
        job=ID,
    shell:
        "touch {output}"


rule run_job:
    input:
        unpack(lambda w: JOB_INPUTS[w.kind + "/" + w.job]),
    output:
        ROOT + "/{kind}s/{job}/result.json",
    log:
        LOGS + "/run_{kind}/{job}.log",
    wildcard_constraints:
        job=ID,
        kind="cell|baseline|model",
    shell:
        "touch {output}"


rule run_judge_pass:
    input:
        unpack(lambda w: JOB_INPUTS[w.kind + "/" + w.job]),
    output:
        ROOT + "/{kind}es/{job}/result.json",
    log:
        LOGS + "/run_{kind}/{job}.log",
    wildcard_constraints:
        job=ID,
        kind="judge-pass",
    shell:
        "touch {output}"


rule cell_energy:
    input:
        unpack(lambda w: ENERGY_INPUTS[w.cell]),
    output:
        ROOT + "/energy/{cell}.json",
    log:
        LOGS + "/cell_energy/{cell}.log",
    shell:
        "touch {output}"


rule final_table:
    input:
        ENERGY,
    output:
        **FINAL,
    log:
        LOGS + "/final_table/final.log",
    shell:
        "touch {output}"


rule figures:
    input:
        **FIGURE_INPUTS,
    output:
        **FIGURES,
    log:
        LOGS + "/figures/figures.log",
    shell:
        "touch {output}"


rule report_pages:
    input:
        **PAGE_INPUTS,
    output:
        **PAGES,
    log:
        LOGS + "/report_pages/report.log",
    shell:
        "touch {output}"
"""


def bare_tables(config: Config, plan: Plan) -> dict[str, object]:
    """Every file of the run the bare workflow declares, as literal values named by evalwatt's
    Layout: the run's jobs (``RunJobs.jobs``, the list evalwatt's rules and status use) with
    each one's and each cell's inputs, then the final files, the figures and the pages."""
    layout = Layout.of("results", BARE_RUN)
    run = RunJobs(config, plan, layout)
    root = layout.root
    paths = {"ID": ID, "ROOT": str(root), "JOBS": str(root / "jobs"), "LOGS": str(root / "logs")}
    return paths | _job_tables(config, run) | _output_tables(run)


def _job_tables(config: Config, run: RunJobs) -> dict[str, object]:
    """Each job's inputs (its script; a judge pass's cells) and each cell's energy inputs,
    worked out by evalwatt's own functions once, written as literals."""
    rules = JobRules(run)
    job_inputs = {
        f"{kind}/{job_id}": rules.inputs(SimpleNamespace(kind=kind, job=job_id))
        for kind, job_id in run.jobs()
    }
    energy = {c: energy_inputs(config, run, c) for c in run.plan.cells}
    return {"JOB_INPUTS": job_inputs, "ENERGY_INPUTS": energy}


def _output_tables(run: RunJobs) -> dict[str, object]:
    """The plan, the final files, the figures, the pages, and everything ``rule all`` asks."""
    plan, layout = run.plan, run.layout
    final = {
        f"{name}_{fmt}": str(layout.final(name, fmt))
        for name in (FINAL_TABLE, FINAL_BEST)
        for fmt in FINAL_FORMATS
    } | {"audit": str(layout.audit("md")), "audit_table": str(layout.audit("parquet"))}
    figures = {s.name: str(layout.figure(s.name)) for s in figure_specs(plan, run.per_model)}
    figures["index"] = str(layout.figure_index())
    pages = {name: str(layout.report_page(name)) for name in REPORT_PAGES}
    energy = [str(layout.cell_energy(c)) for c in plan.cells]
    results = [str(layout.run_result(kind, job_id)) for kind, job_id in run.jobs()]
    targets = [str(layout.plan()), *results, *energy, *final.values(), *figures.values()]
    return {
        "PLAN": str(layout.plan()),
        "ENERGY": energy,
        "FINAL": final,
        "FIGURE_INPUTS": figure_inputs(run),
        "FIGURES": figures,
        "PAGE_INPUTS": {
            "table": str(layout.final(FINAL_TABLE, "md")),
            "best": str(layout.final(FINAL_BEST, "md")),
            "plan": str(layout.plan()),
            "audit": str(layout.audit("md")),
        },
        "PAGES": pages,
        "ALL": [*targets, *pages.values()],
    }


def bare_snakefile(config: Config, plan: Plan) -> str:
    """The bare Snakefile: literal tables of every file (``bare_tables``), then the rules.

    Which baseline a cell uses and whether it has a judge job cannot be written as a wildcard
    pattern, so run_job and cell_energy look their inputs up in a table, where evalwatt's
    rules call its Python.
    """
    lines = ["# Generated by benchmarks/plan_scale.py: evalwatt's DAG shape, no logic.", ""]
    lines += [f"{name} = {value!r}" for name, value in bare_tables(config, plan).items()]
    return "\n".join(lines) + "\n" + BARE_RULES


def write_bare_workflow(config: Config, plan: Plan, workdir: Path) -> Path:
    path = workdir / "Snakefile"
    path.write_text(bare_snakefile(config, plan))
    return path


# --- running and timing -----------------------------------------------------------------------


def dry_run_argv(snakefile: Path, workdir: Path, configfile: Path | None) -> list[str]:
    argv = ["-n", "--snakefile", str(snakefile), "--directory", str(workdir), *QUIET]
    if configfile is not None:
        argv += ["--configfile", str(configfile)]
    return argv


@dataclass
class Runs:
    """The dry runs of one workflow: wall and CPU seconds of each, and the DAG's jobs."""

    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)


def dry_run(argv: list[str]) -> tuple[float, float, str]:
    """Run `snakemake <argv>` once; return its wall time, its CPU time (user + system, which a
    busy machine inflates less than wall time) and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *argv], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(argv)} failed ({proc.returncode}):\n{out}")
    return wall, cpu, out


def job_stats(output: str) -> dict[str, int]:
    """The first "Job stats" table of a dry run, as {rule: count} (with "total")."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^(\S+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    if not rows:
        raise ValueError(f"no Job stats table in the dry-run output:\n{output}")
    return {rule: int(count) for rule, count in rows}


def time_dry_runs(workflows: dict[str, list[str]], repeat: int) -> dict[str, Runs]:
    """`repeat` rounds, each one dry run of every workflow in turn: interleaved, so that a
    change of load on the machine weighs on all of them alike."""
    runs = {name: Runs() for name in workflows}
    for i in range(repeat):
        for name, argv in workflows.items():
            wall, cpu, out = dry_run(argv)
            runs[name].wall_s.append(wall)
            runs[name].cpu_s.append(cpu)
            runs[name].jobs = job_stats(out)
            print(
                f"  round {i + 1}/{repeat} {name:<9} {wall:6.2f} s wall {cpu:6.2f} s CPU",
                flush=True,
            )
    return runs


def profile_dry_run(argv: list[str], workdir: Path, top: int) -> str:
    """One more evalwatt dry run, under cProfile in a fresh interpreter (no warm caches of
    this script's own config check): the top functions by cumulative time."""
    stats_file = workdir / "dry_run.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "snakemake", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not stats_file.exists():
        raise SystemExit(f"profiled dry run failed ({proc.returncode}):\n{proc.stderr}")
    sink = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=sink).sort_stats("cumulative")
    stats.print_stats(top)
    print(f"The same, only evalwatt's own code ({EVALWATT_CODE}):", file=sink)
    stats.print_stats(EVALWATT_CODE, top)
    return sink.getvalue()


# --- report -----------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if "model name" in line),
        platform.processor() or "unknown CPU",
    )
    return (
        f"machine: {len(os.sched_getaffinity(0))} CPUs usable (nproc), {cpu}; "
        f"Python {platform.python_version()}; "
        f"snakemake {importlib.metadata.version('snakemake')}; {platform.platform()}"
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (on {os.cpu_count()} CPUs)"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def stats_table(evalwatt: dict[str, int], bare: dict[str, int]) -> str:
    rows = [f"  {'rule':<14}{'evalwatt':>10}{'bare':>10}"]
    rows += [
        f"  {rule:<14}{evalwatt.get(rule, 0):>10}{bare.get(rule, 0):>10}"
        for rule in dict.fromkeys([*evalwatt, *bare])
    ]
    return "\n".join(rows)


FULL = Matrix(models=50, benchmarks=6, temperatures=2, max_connections=3)
"""The issue's matrix: 1,800 cells, shaped like the study."""
SHORT = Matrix(models=10, benchmarks=5, temperatures=2, max_connections=3)
"""CI's check: 300 cells, every model archetype, judged and unjudged benchmarks."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument(
        "--short",
        action="store_true",
        help=f"CI's check: {SHORT.cells} cells, one round, the ratio not judged",
    )
    p.add_argument("--models", type=int, help=f"default {FULL.models} ({SHORT.models} --short)")
    p.add_argument("--benchmarks", type=int, help=f"default {FULL.benchmarks}")
    p.add_argument("--temperatures", type=int, help=f"default {FULL.temperatures}")
    p.add_argument(
        "--max-connections",
        type=int,
        choices=range(1, 6),
        help=f"number of max_connections values (10, 100, ...); at most 5; default "
        f"{FULL.max_connections}",
    )
    p.add_argument(
        "--repeat", type=int, help="dry runs per workflow (median); default 3 (1 --short)"
    )
    p.add_argument("--snakefile", type=Path, default=SNAKEFILE, help="the evalwatt Snakefile")
    p.add_argument(
        "--execution",
        choices=("per-cell", "per-model"),
        default="per-cell",
        help="the config's execution mode (default per-cell: the most jobs)",
    )
    p.add_argument(
        "--profile", action="store_true", help="also profile the evalwatt dry run with cProfile"
    )
    p.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def matrix_of(args: argparse.Namespace) -> Matrix:
    """The --short or the full matrix, with the sizes given on the command line."""
    base = SHORT if args.short else FULL
    return Matrix(
        args.models or base.models,
        args.benchmarks or base.benchmarks,
        args.temperatures or base.temperatures,
        args.max_connections or base.max_connections,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    matrix = matrix_of(args)
    repeat = args.repeat or (1 if args.short else 3)
    tmp = Path(tempfile.mkdtemp(prefix="evalwatt-plan-scale-"))
    try:
        return compare(matrix, repeat, args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def compare(matrix: Matrix, repeat: int, args: argparse.Namespace, tmp: Path) -> int:
    """Time both dry runs in ``tmp``; 1 when the DAGs differ or the ratio is above target."""
    ew_dir, bare_dir = tmp / "evalwatt", tmp / "bare"
    ew_dir.mkdir()
    bare_dir.mkdir()
    config_path, config, plan = write_evalwatt_config(matrix, ew_dir, args.execution)
    bare = write_bare_workflow(config, plan, bare_dir)
    ew_argv = dry_run_argv(args.snakefile, ew_dir, config_path)
    bare_argv = dry_run_argv(bare, bare_dir, None)
    print(machine())
    print(
        f"matrix: {matrix.models} models x {matrix.benchmarks} benchmarks x "
        f"{matrix.temperatures} temperatures x {matrix.max_connections} max_connections = "
        f"{matrix.cells} cells; workdir {tmp}"
    )
    print(f"evalwatt: snakemake {' '.join(ew_argv)}")
    print(f"bare:     snakemake {' '.join(bare_argv)}", flush=True)

    print(f"load average before: {load()}", flush=True)
    runs = time_dry_runs({"evalwatt": ew_argv, "bare": bare_argv}, repeat)
    ew, bare_runs = runs["evalwatt"], runs["bare"]
    print(f"load average after:  {load()}")
    print("jobs per rule:")
    print(stats_table(ew.jobs, bare_runs.jobs))
    if ew.jobs != bare_runs.jobs:
        print("FAILED: the bare workflow's DAG differs from evalwatt's: update BARE_RULES")
        return 1

    ratio = ew.wall / bare_runs.wall
    if args.short:
        verdict = f"not judged at {matrix.cells} cells: start-up weighs too much"
    else:
        verdict = "OK" if ratio <= TARGET_RATIO else f"ABOVE the target {TARGET_RATIO:g}"
    n = f"median of {repeat}"
    print(f"evalwatt dry run: {ew.wall:.2f} s wall ({ew.cpu:.2f} s CPU), {n}")
    print(f"bare dry run:     {bare_runs.wall:.2f} s wall ({bare_runs.cpu:.2f} s CPU), {n}")
    print(f"ratio evalwatt / bare: {ratio:.2f} wall ({verdict}), {ew.cpu / bare_runs.cpu:.2f} CPU")

    if args.profile:
        print(f"\ncProfile of the evalwatt dry run, top {args.top} by cumulative time:")
        print(profile_dry_run(ew_argv, tmp, args.top))
    return 1 if verdict.startswith("ABOVE") else 0


if __name__ == "__main__":
    sys.exit(main())
