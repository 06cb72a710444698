"""What the Snakemake rules call: thin adapters from wildcards to the evalwatt package.

Rule files stay a table of contents; the logic lives in importable, tested modules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from evalwatt.atomic import write_json, write_text
from evalwatt.config import Config, from_dict
from evalwatt.layout import FINAL_BEST, FINAL_FORMATS, FINAL_TABLE, JobKind, Layout
from evalwatt.paths import REPO_DIR
from evalwatt.plan import Plan, plan_run
from evalwatt.render import job_spec, render_script

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
ENVS = {"vllm": "envs/vllm.yaml", "llama-cpp": "envs/llamacpp.yaml"}


def load(config: Mapping[str, Any], configfiles: Iterable[str | Path]) -> Config:
    """Validate Snakemake's config; a model sheet is read relative to the last config file."""
    files = [Path(f) for f in configfiles]
    base = files[-1].parent if files else Path("config")
    origin = str(files[-1]) if files else "config"
    return from_dict(config, base, origin=origin)


def plan(config: Config) -> Plan:
    return plan_run(config)


def layout(config: Config) -> Layout:
    return Layout.of(config.results_dir, config.run)


def final_files(layout: Layout) -> dict[str, str]:
    files = {
        f"{name}_{fmt}": str(layout.final(name, fmt))
        for name in (FINAL_TABLE, FINAL_BEST)
        for fmt in FINAL_FORMATS
    }
    files["audit"] = str(layout.audit())
    return files


def final_outputs(layout: Layout, plan: Plan) -> list[str]:
    """Everything a run must have, each job's result included: Snakemake does not rerun a job
    whose output was deleted while what it feeds is still there, unless it is a target."""
    jobs = [layout.run_result("baseline", b) for b in plan.baselines]
    for cell in plan.cells.values():
        jobs.append(layout.run_result("cell", cell.id))
        if cell.judge:
            jobs.append(layout.run_result("judge", cell.id))
        jobs.append(layout.cell_energy(cell.id))
    return [str(layout.plan()), *map(str, jobs), *final_files(layout).values()]


def write_plan(config: Config, plan: Plan, path: str) -> None:
    from evalwatt.plan import cost_preview

    write_json(path, {"run": config.run, **plan.to_json(), "cost": cost_preview(plan, config)})


# --- jobs -------------------------------------------------------------------------------------


def spec(config: Config, plan: Plan, layout: Layout, kind: str, job: str) -> dict[str, Any]:
    return job_spec(_kind(kind), job, config, plan, layout)


def write_job(
    config: Config, plan: Plan, spec: Mapping[str, Any], script: str, spec_path: str
) -> None:
    write_json(spec_path, dict(spec))
    write_text(script, render_script(dict(spec), config, plan, Path(spec_path)))
    Path(script).chmod(0o755)


def _kind(kind: str) -> JobKind:
    if kind not in ("cell", "baseline", "judge"):
        raise ValueError(f"unknown job kind {kind!r}")
    return kind  # type: ignore[return-value]


def _job_model(plan: Plan, config: Config | None, kind: str, job: str) -> str:
    if kind == "baseline":
        return plan.baselines[job].model
    cell = plan.cells[job]
    if kind == "judge":
        assert config is not None and cell.judge
        return str(config.raw["judges"][cell.judge]["model"])
    return cell.model


def job_cpus(config: Config, plan: Plan, kind: str, job: str) -> int:
    """CPUs of a job (for a judge job, those of the judge's model)."""
    return plan.models[_job_model(plan, config, kind, job)].cpus


def job_resources(config: Config, plan: Plan, kind: str) -> dict[str, Any]:
    """Snakemake resources of a job rule; the Slurm executor turns them into sbatch flags."""

    def model_of(w: Any) -> str:
        return _job_model(plan, config, kind, w.cell if kind != "baseline" else w.baseline)

    cluster = config.cluster
    resources: dict[str, Any] = {
        "gpu": lambda w: plan.models[model_of(w)].gpus,
        "cpus_per_task": lambda w: plan.models[model_of(w)].cpus,
        "runtime": cluster["time_limit_min"],
    }
    for key, field in (("slurm_partition", "partition"), ("slurm_account", "account")):
        if cluster[field]:
            resources[key] = cluster[field]
    extra = [f"--{f}={cluster[f]}" for f in ("qos", "constraint") if cluster[f]]
    if extra:
        resources["slurm_extra"] = " ".join(extra)
    return resources


def conda_env(config: Config, plan: Plan, kind: str) -> Callable[[Any], str]:
    """The pinned environment of a job, by backend (with --software-deployment-method conda)."""

    def env(w: Any) -> str:
        model = _job_model(plan, config, kind, w.cell if kind != "baseline" else w.baseline)
        return str(REPO_DIR / ENVS[plan.models[model].backend])

    return env


# --- energy and the final table ---------------------------------------------------------------


def energy_inputs(plan: Plan, layout: Layout, cell_id: str) -> dict[str, str]:
    cell = plan.cells[cell_id]
    inputs = {
        "cell": str(layout.run_result("cell", cell_id)),
        "baseline": str(layout.run_result("baseline", cell.baseline)),
    }
    if cell.judge:
        inputs["judge"] = str(layout.run_result("judge", cell_id))
    return inputs


def write_record(config: Config, plan: Plan, layout: Layout, cell_id: str, path: str) -> None:
    from evalwatt.record import build_record

    write_json(path, build_record(config, plan, layout, cell_id))


def write_final(config: Config, records: Iterable[str], outputs: Any) -> None:
    from evalwatt.audit import audit_markdown
    from evalwatt.results import best_view, to_table, write_table

    loaded = [json.loads(Path(p).read_text(encoding="utf-8")) for p in records]
    table = to_table([r["row"] for r in loaded])
    write_table(
        table,
        Path(outputs.energy_table_parquet),
        Path(outputs.energy_table_csv),
        Path(outputs.energy_table_md),
        f"evalwatt run {config.run}: energy per cell",
    )
    write_table(
        best_view(table),
        Path(outputs.energy_table_best_parquet),
        Path(outputs.energy_table_best_csv),
        Path(outputs.energy_table_best_md),
        f"evalwatt run {config.run}: fastest max_connections per setting",
    )
    write_text(outputs.audit, audit_markdown(config, loaded))
