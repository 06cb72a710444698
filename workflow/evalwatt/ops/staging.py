"""Stage what offline compute nodes need, on the login node: ``evalwatt stage``.

Compute nodes have no internet, and jobs run with ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
TRANSFORMERS_OFFLINE=1`` (exported by every rendered ``job.sbatch``,
workflow/templates/job.sbatch.j2, whoever runs it). What they read must be there first:

* model weights: a model's ``path`` (``$VARS`` expanded), or ``<model_root>/<hf_id>``.
  ``--download`` fetches a missing one with ``huggingface_hub.snapshot_download`` (a single
  file, such as a ``.gguf``, with ``hf_hub_download``). Weights shipped in a Python package
  (``package:<module>/<file>``) are installed, not staged.
* the benchmarks' datasets, into the caches the jobs read (``HF_HOME``,
  ``INSPECT_EVALS_CACHE_DIR``, ... from the config's ``job.env``): ``--download`` instantiates
  each Inspect task once with its ``task_args`` (its task function loads its dataset; no model
  is needed), in a fresh process with those variables set and online. evalwatt's own offline
  tasks (``evalwatt/...``) read packaged files and need nothing.

What is staged, where and when, is written to the run's stage manifest
(``results/<run>/stage/manifest.json``, ``Layout.stage_manifest``). A job whose task is
neither offline by nature nor in the manifest (with the caches the job reads) fails at once
with the command to run (``require_staged``), not after the libraries' ~5 minutes of offline
retries. Without ``--download`` nothing is fetched: weights are looked for on disk, datasets
in the manifest (an offline cache cannot be probed without those retries).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from evalwatt.base.layout import Layout
from evalwatt.base.model_path import weights_present
from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.spec import EvaluationSpec, JobSpec
from evalwatt.contracts.staging import StagedDataset, StagedModel, StageManifest
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.matrix import Plan
from evalwatt.runtime.offline import (
    OFFLINE_VARIABLES,
    STAGE_COMMAND,
    cache_env,
    offline_by_nature,
    read_manifest,
    task_key,
)

DATASET_TIMEOUT_S = 3600


class ItemState(StrEnum):
    STAGED = "staged"
    DOWNLOADED = "downloaded"
    OFFLINE = "offline"
    """needs nothing: an offline task, reading packaged files"""
    MISSING = "missing"
    FAILED = "failed"


@dataclass(frozen=True)
class Item:
    """One thing the jobs need, and whether it is staged."""

    what: Literal["model", "dataset"]
    name: str
    state: ItemState
    where: str
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.state in {ItemState.STAGED, ItemState.DOWNLOADED, ItemState.OFFLINE}

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state.value}


@dataclass(frozen=True)
class ModelNeed:
    name: str
    hf_id: str
    path: str
    """as written (a path with $VARS, or package:<module>/<file>)"""


@dataclass(frozen=True)
class TaskNeed:
    benchmark: str
    task: str
    task_args: Mapping[str, Any]

    @property
    def key(self) -> str:
        return task_key(self.task, self.task_args)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def needs(config: Config, plan: Plan) -> tuple[list[ModelNeed], list[TaskNeed]]:
    """The models (of every job of the run, judge passes included) and tasks (of every cell
    of every job: a cell job's, each cell of a model job)."""
    run = RunJobs(config, plan, Layout.of(config.results_dir, config.run))
    models: dict[str, ModelNeed] = {}
    tasks: dict[str, TaskNeed] = {}
    for kind, job_id in run.jobs():
        spec = run.job(kind, job_id).spec
        models.setdefault(
            spec.model.name, ModelNeed(spec.model.name, spec.model.hf_id, spec.model.path)
        )
        for evaluation in evaluations(spec):
            need = TaskNeed(evaluation.benchmark, evaluation.task, evaluation.task_args)
            tasks.setdefault(need.key, need)
    return list(models.values()), list(tasks.values())


def evaluations(spec: JobSpec) -> list[EvaluationSpec]:
    """The evaluations a job runs: a cell job's one, a model job's cells'."""
    if spec.evaluation is not None:
        return [spec.evaluation]
    return [c.evaluation for c in spec.pack.cells] if spec.pack is not None else []


# --- models ------------------------------------------------------------------------------------


Downloader = Callable[[str, str], None]


def hf_download(hf_id: str, target: str) -> None:
    """Fetch a model's repository into ``target`` (a folder), or one file when ``target``
    names a file of the repository (``.../model.Q4_1.gguf``)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    path = Path(target)
    if path.suffix in {".gguf", ".bin", ".safetensors"}:
        hf_hub_download(repo_id=hf_id, filename=path.name, local_dir=str(path.parent))
    else:
        snapshot_download(repo_id=hf_id, local_dir=str(path))


def stage_model(need: ModelNeed, download: bool, downloader: Downloader = hf_download) -> Item:
    present, where = weights_present(need.path)
    if present:
        return Item("model", need.name, ItemState.STAGED, where)
    if need.path.startswith("package:"):
        module = need.path.removeprefix("package:").split("/")[0]
        return Item(
            "model",
            need.name,
            ItemState.MISSING,
            need.path,
            f"weights ship in the Python package of module {module}: install it in the "
            "jobs' environment",
        )
    if not download:
        return Item(
            "model", need.name, ItemState.MISSING, where, f"run `{STAGE_COMMAND}` to fetch it"
        )
    try:
        downloader(need.hf_id, where)
    except Exception as exc:
        return Item("model", need.name, ItemState.FAILED, where, f"download failed: {exc}")
    if not weights_present(need.path)[0]:
        return Item("model", need.name, ItemState.FAILED, where, "nothing there after download")
    return Item("model", need.name, ItemState.DOWNLOADED, where, f"from {need.hf_id}")


# --- datasets ----------------------------------------------------------------------------------

_LOAD_TASK = """
import json, sys
from inspect_ai._eval.loader import load_tasks
task = load_tasks([sys.argv[1]], json.loads(sys.argv[2]))[0]
print(f"{task.name}: {len(task.dataset)} samples")
"""


def load_task_online(task: str, task_args: Mapping[str, Any], caches: Mapping[str, str]) -> str:
    """Instantiate an Inspect task in a fresh process, online, with the jobs' cache variables
    (the libraries read them at import): its task function downloads its dataset into them.
    Returns what it printed; raises RuntimeError with the output's tail on failure."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    env.update(caches)
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_TASK, task, json.dumps(dict(task_args))],
        capture_output=True,
        text=True,
        env=env,
        timeout=DATASET_TIMEOUT_S,
        check=False,
    )
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise RuntimeError(" | ".join(tail) or f"exit code {out.returncode}")
    return out.stdout.strip()


TaskLoader = Callable[[str, Mapping[str, Any], Mapping[str, str]], str]


def stage_dataset(
    need: TaskNeed,
    caches: Mapping[str, str],
    previous: Mapping[str, StagedDataset],
    download: bool,
    loader: TaskLoader = load_task_online,
) -> tuple[Item, StagedDataset | None]:
    where = ", ".join(f"{k}={v}" for k, v in sorted(caches.items())) or "the libraries' defaults"
    if offline_by_nature(need.task):
        return Item("dataset", need.benchmark, ItemState.OFFLINE, need.task), None
    before = previous.get(need.key)
    if before is not None and before.caches == dict(caches) and not download:
        return Item("dataset", need.benchmark, ItemState.STAGED, where, before.staged_at), before
    if not download:
        return (
            Item("dataset", need.benchmark, ItemState.MISSING, where, f"run `{STAGE_COMMAND}`"),
            None,
        )
    try:
        said = loader(need.task, need.task_args, caches)
    except Exception as exc:
        return Item("dataset", need.benchmark, ItemState.FAILED, where, str(exc)[:500]), None
    staged = StagedDataset(
        benchmark=need.benchmark,
        task=need.task,
        task_args=dict(need.task_args),
        caches=dict(caches),
        staged_at=now_iso(),
    )
    return Item("dataset", need.benchmark, ItemState.DOWNLOADED, where, said), staged


# --- the run -----------------------------------------------------------------------------------


def stage(
    config: Config,
    plan: Plan,
    *,
    download: bool,
    downloader: Downloader = hf_download,
    loader: TaskLoader = load_task_online,
) -> tuple[list[Item], Path]:
    """Check (and with ``download`` fetch) what the run's jobs need; write the manifest."""
    layout = Layout.of(config.results_dir, config.run)
    models, tasks = needs(config, plan)
    caches = cache_env(config.job.env)
    path = layout.stage_manifest()
    old = read_manifest(path)
    previous = {task_key(d.task, d.task_args): d for d in old.datasets} if old else {}
    items: list[Item] = []
    staged_models = []
    for m in models:
        item = stage_model(m, download, downloader)
        items.append(item)
        if item.ready:
            source: Literal["package", "disk", "downloaded"] = (
                "package" if m.path.startswith("package:") else "disk"
            )
            staged_models.append(
                StagedModel(
                    name=m.name,
                    hf_id=m.hf_id,
                    path=item.where,
                    source="downloaded" if item.state == ItemState.DOWNLOADED else source,
                    staged_at=now_iso(),
                )
            )
    datasets = []
    for t in tasks:
        item, staged = stage_dataset(t, caches, previous, download, loader)
        items.append(item)
        if staged is not None:
            datasets.append(staged)
    write_contract(
        path,
        StageManifest(
            run=config.run,
            written_at=now_iso(),
            models=tuple(staged_models),
            datasets=tuple(datasets),
            offline_tasks=tuple(sorted({t.task for t in tasks if offline_by_nature(t.task)})),
        ),
    )
    return items, path


def format_items(items: Iterable[Item]) -> str:
    """One line per item (what, name, state, where), its detail on the next line."""
    rows = list(items)
    name_w = max([4, *(len(i.name) for i in rows)])
    lines = [f"{'what':8} {'name':{name_w}} {'state':10} where"]
    for i in rows:
        line = f"{i.what:8} {i.name:{name_w}} {i.state.value:10} {i.where}"
        lines.append(line + (f"\n{'':8} {'':{name_w}} {'':10} {i.detail}" if i.detail else ""))
    return "\n".join(lines)
