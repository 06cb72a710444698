"""Send one cell, or N repeats of it for a variance study, outside the Snakemake DAG.

``evalwatt submit CELL [--repeats N]`` and ``submit_cell(...)`` render the cell's job exactly
as the ``render_job`` rule does (its ``spec.json`` and ``job.sbatch``, from the same ``Job``
of ``evalwatt.jobs.resolve``) and hand the script to submitit, which runs ``bash job.sbatch``
(so the
same ``evalwatt job spec.json``, the same offline settings and module loads) and writes into
the same results layout. The script's output goes to the job log the ``run_job`` rule would
write (``logs/run_cell/<id>.log``), so ``evalwatt status`` reads both the same way.

* Without ``--repeats`` the cell itself runs, under its own id.
* With ``--repeats N`` repeats 1..N run under the ids ``<cell>__r1`` .. ``<cell>__rN``
  (``evalwatt.base.layout.repeat_id``), each in its own folder; the cell's own result is not
  touched. A repeat is the same cell spec with another id and folder, and it shares the
  cell's load-only baseline (the same server settings).
* A job already done, running or pending (``evalwatt.ops.job_state``) is not sent again: run the
  same command after a failure and only the missing repeats go.
* On Slurm each job asks for the cell's planned GPUs (one node), CPUs and time limit, the
  run's partition, account, QoS and constraint, and carries the comment
  ``evalwatt_submit_cell_<id>`` by which ``evalwatt status`` finds it. Repeats are submitted
  together: Slurm places them (one job per allocation, as the DAG's cells).
* Without Slurm (no ``sbatch``), submitit's local executor runs them one after the other and
  waits for each, so that two jobs never share the machine's readings.

Judge-scored cells: a repeat runs the generation only; its score is the cell's (the judge pass
scores the cell, not its repeats). The repeats are for the variance of time and energy.

In a per-model run (``execution: per-model``) the cell is sent the same way, as its own
per-cell job (the spec a model job gives the cell): its result counts as done for the next
``snakemake`` run, but its energy, like a repeat's, needs the load-only baseline that only
per-cell runs have; the command says so.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from evalwatt.base.atomic import write_text
from evalwatt.base.errors import UserError
from evalwatt.base.layout import Layout
from evalwatt.base.slurm import SlurmView, query_jobs
from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.jobs.render import render_script
from evalwatt.jobs.repeats import repeat_job
from evalwatt.jobs.resolve import Job, resolve_job
from evalwatt.ops.evidence import SUBMIT_COMMENT, local_job_processes
from evalwatt.ops.job_state import State, job_state
from evalwatt.plan.matrix import Plan

Executor = Literal["auto", "slurm", "local"]
EXECUTORS: tuple[Executor, ...] = ("auto", "slurm", "local")
MAX_REPEATS = 100


class SubmitError(UserError):
    """A cell, a repeat count or an executor that cannot be submitted."""


@dataclasses.dataclass(frozen=True)
class Submission:
    """One job handed to submitit."""

    job_id: str
    """evalwatt's id (the cell's, or ``<cell>__r<n>``)."""
    scheduler_job_id: str
    """Slurm's job id, or the local process id."""
    executor: str
    result: Path
    log: Path
    handle: Any = dataclasses.field(compare=False, repr=False)
    """The submitit job (``.result()`` waits for it)."""


def run_script(script: str, log: str) -> None:
    """What submitit runs on the node: the rendered job script, its output in the job log.
    A script that fails raises, so that submitit reports the job as failed."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        code = subprocess.run(["bash", script], stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{script} exited with code {code}; see {log}")


def cell_jobs(
    config: Config, plan: Plan, layout: Layout, cell_id: str, repeats: int | None
) -> list[Job]:
    """The cell's job (``repeats`` None) or its repeats 1..N; a cell not in the plan is a
    ``JobError`` naming the known cells' count."""
    if repeats is not None and not 1 <= repeats <= MAX_REPEATS:
        raise SubmitError(f"--repeats {repeats}: allowed: 1 to {MAX_REPEATS}")
    if cell_id not in plan.cells:
        known = sorted(plan.cells)
        hint = f"; cells of run {config.run}: {', '.join(known[:6])}" + (
            f" (and {len(known) - 6} more; `evalwatt status` lists them)" if len(known) > 6 else ""
        )
        raise SubmitError(f"no cell {cell_id!r} in the plan{hint}")
    job = resolve_job(config, plan, layout, "cell", cell_id)
    if repeats is None:
        return [job]
    return [repeat_job(job, layout, n) for n in range(1, repeats + 1)]


def write_job_files(job: Job) -> None:
    """The job's spec.json and job.sbatch, as the render_job rule writes them."""
    write_contract(job.spec_path, job.spec)
    write_text(job.script, render_script(job))
    job.script.chmod(0o755)


def choose_executor(executor: Executor) -> Literal["slurm", "local"]:
    if executor not in EXECUTORS:
        raise SubmitError(f"--executor {executor!r}: allowed: {', '.join(EXECUTORS)}")
    has_slurm = shutil.which("sbatch") is not None
    if executor == "slurm" and not has_slurm:
        raise SubmitError("--executor slurm: no sbatch on PATH; allowed here: auto, local")
    if executor == "auto":
        return "slurm" if has_slurm else "local"
    return executor


def slurm_parameters(job: Job) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters of a job: the plan's GPUs (one node), CPUs, the
    job's first-attempt time limit, memory per CPU and the run's scheduler settings: what the
    Slurm profile asks for the same job."""
    res, sched = job.resources, job.resources.scheduler
    params: dict[str, Any] = {
        "job_name": job.scheduler_name,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": res.cpus,
        "time": res.runtime_minutes(1),
        "mem_per_cpu": f"{sched.mem_mb_per_cpu}M",
        "comment": f"{SUBMIT_COMMENT}_{job.kind}_{job.job_id}",
    }
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    for name, value in (
        ("partition", sched.partition),
        ("account", sched.account),
        ("qos", sched.qos),
        ("constraint", sched.constraint),
    ):
        if value:
            params[name] = value
    return params


def _executor(kind: Literal["slurm", "local"], folder: Path, job: Job) -> Any:
    import submitit

    if kind == "slurm":
        # submitit writes `python` into its batch script as a shell word: quoted here (its own
        # default is quoted; a path given is taken as written)
        slurm = submitit.SlurmExecutor(folder=folder, python=shlex.quote(sys.executable))
        slurm.update_parameters(**slurm_parameters(job))
        return slurm
    ex = submitit.LocalExecutor(folder=folder)
    params: dict[str, Any] = {
        "timeout_min": job.resources.runtime_minutes(1),
        "nodes": 1,
        "tasks_per_node": 1,
    }
    if job.resources.gpus:
        params["gpus_per_node"] = job.resources.gpus
    ex.update_parameters(**params)
    return ex


def _not_to_send(layout: Layout, job: Job, slurm: SlurmView) -> State | None:
    """The state that makes a job not to be sent again (done, running, pending), or None."""
    state = job_state(layout, "cell", job.job_id, slurm, local_job_processes(), Path.cwd())
    keep = {State.DONE, State.INCOMPLETE, State.RUNNING, State.PENDING}
    return state.state if state.state in keep else None


def submit_jobs(
    jobs: Sequence[Job],
    layout: Layout,
    executor: Executor = "auto",
    *,
    wait: bool = False,
    log: Any = None,
) -> list[Submission]:
    """Render and submit ``jobs``; return what was submitted. Jobs already done, running or
    pending are skipped (said on ``log``). The local executor always waits for each job."""
    kind = choose_executor(executor)
    out = log or sys.stderr
    slurm = query_jobs(None) if kind == "slurm" else SlurmView()
    folder = layout.submit_dir()
    folder.mkdir(parents=True, exist_ok=True)
    submitted = []
    for job in jobs:
        skip = _not_to_send(layout, job, slurm)
        if skip is not None:
            print(f"evalwatt submit: {job.job_id} is {skip.value}: not sent again", file=out)
            continue
        write_job_files(job)
        job_log = layout.job_log("cell", job.job_id)
        handle = _executor(kind, folder, job).submit(
            run_script, str(job.script.resolve()), str(job_log.resolve())
        )
        sub = Submission(job.job_id, str(handle.job_id), kind, job.files.result, job_log, handle)
        if kind == "slurm":  # found by id where the accounting keeps no comments
            with open(layout.submissions("cell", job.job_id), "a", encoding="utf-8") as fh:
                fh.write(f"{sub.scheduler_job_id}\n")
        print(
            f"evalwatt submit: {job.job_id} -> {kind} job {sub.scheduler_job_id} "
            f"(result: {sub.result}, log: {sub.log})",
            file=out,
            flush=True,
        )
        if kind == "local":
            wait_for([sub])
        submitted.append(sub)
    if wait:
        wait_for(submitted)
    return submitted


def wait_for(submissions: Sequence[Submission]) -> None:
    """Wait for jobs to end; a failed one raises ``SubmitError`` naming its log."""
    failed = []
    for sub in submissions:
        try:
            sub.handle.result()
        except Exception as exc:
            failed.append(
                f"{sub.job_id} ({sub.executor} job {sub.scheduler_job_id}): "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}; "
                f"log: {sub.log}"
            )
    if failed:
        raise SubmitError("job(s) failed:\n" + "\n".join(failed))


def submit_cell(
    config: Config,
    plan: Plan,
    cell_id: str,
    *,
    repeats: int | None = None,
    executor: Executor = "auto",
    wait: bool = False,
) -> list[Submission]:
    """The Python entry point: send one cell (``repeats`` None) or its repeats 1..N."""
    layout = Layout.of(config.results_dir, config.run)
    jobs = cell_jobs(config, plan, layout, cell_id, repeats)
    if config.execution == "per-model":
        print(
            f"evalwatt submit: run {config.run} is per-model: {cell_id} is sent as its own "
            "per-cell job; its energy needs the cell's load-only baseline, which only per-cell "
            "runs have (docs/running.md#execution-modes)",
            file=sys.stderr,
        )
    return submit_jobs(jobs, layout, executor, wait=wait)
