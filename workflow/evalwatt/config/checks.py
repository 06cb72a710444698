"""Checks of a config against the machine: weights, Inspect tasks, the job's interpreter.

``evalwatt plan`` and the Snakemake workflow run them after the schema and the rules across
fields (``evalwatt.config.load``), so that a typo fails in a second on the login node instead of
inside a GPU job after the weights are loaded. Each check has a name and ends ``passed``,
``deferred`` or failed; every failure is collected into one ``ConfigError``.

Deferred checks. Some things only the compute node can see. A check is deferred, never
skipped in silence, in exactly two cases, and its reason is recorded (``Config.checks``, then
``checks`` in plan.json):

* ``deferred_checks`` in the config names it (``weights``, ``tasks``, ``job_python``): e.g.
  weights on a file system mounted on compute nodes only;
* the path uses an environment variable that is not set here (``$DSDIR`` on a machine that is
  not the cluster): it cannot be resolved, so it cannot be checked.

Under the Slurm executor every job re-reads the workflow on its compute node, where these
checks run again with the node's view (its ``$DSDIR``, its file systems), before the job
starts its server.
"""

from __future__ import annotations

import difflib
import inspect
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalwatt.base.model_path import PACKAGE, ModelPathError, expand, unset_variables
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import Benchmark
from evalwatt.config.types import Check, Config, ConfigError
from evalwatt.contracts.plan import CheckStatus

DEFERRABLE = ("weights", "tasks", "job_python")


class _Failed(Exception):
    """A check that failed; the message is the user's."""


# --- weights ----------------------------------------------------------------------------------


def _weights(model: ModelEntry, config: Config) -> Check:
    """The model's weights exist, resolved as the job resolves them (evalwatt.base.model_path)."""
    name = f"weights:{model.name}"
    written = config.weights(model)
    if model.path:
        where = config.model_field(model.name, "path")
    else:
        where = f"{config.origin}: field model_root"
    if "weights" in config.deferred_checks:
        return Check(
            name=name, status="deferred", detail=f"{written}: deferred_checks lists weights"
        )
    unset = unset_variables(written)
    if unset and not written.startswith(PACKAGE):
        detail = f"{written}: {', '.join(unset)} not set here; checked on the compute node"
        return Check(name=name, status="deferred", detail=detail)
    try:
        path = expand(written)
    except ModelPathError as exc:
        raise _Failed(f"{where} = {written!r}: {exc}") from None
    if written.startswith(PACKAGE):
        return Check(name=name, status="passed", detail=str(path))
    shown = f"{written!r}" + (f" ({path})" if str(path) != written else "")
    if not path.exists():
        raise _Failed(
            f"{where} = {shown}: no such file or folder (weights of model {model.name}); "
            "allowed: an existing path, or add weights to deferred_checks if only compute "
            "nodes see it"
        )
    if model.backend == "llama-cpp" and not path.is_file():
        raise _Failed(f"{where} = {shown}: a folder; llama-cpp needs the .gguf file")
    return Check(name=name, status="passed", detail=str(path))


# --- Inspect tasks ----------------------------------------------------------------------------


def _task_names(registry_find: Any, registry_info: Any, package: str) -> list[str]:
    found = registry_find(lambda info: info.type == "task")
    names = [registry_info(o).name for o in found]
    return sorted(n for n in names if n.startswith(f"{package}/"))


def _task_args(task_fn: Any, bench: Benchmark, where: str) -> None:
    """Every ``task_args`` key must be a parameter of the task function."""
    try:
        params = inspect.signature(task_fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(bench.task_args) - set(params))
    if unknown:
        raise _Failed(
            f"{where}.task_args = {unknown}: not argument(s) of task {bench.task}; "
            f"allowed: {', '.join(params) or '(none)'}"
        )


def _tasks(config: Config) -> Iterator[Check | _Failed]:
    """Each benchmark's task must be registered with Inspect (as ``inspect eval`` resolves a
    registry name), found without running it. Importing the task packages takes seconds."""
    benchmarks = config.benchmarks
    if "tasks" in config.deferred_checks:
        for name, bench in benchmarks.items():
            detail = f"{bench.task}: deferred_checks lists tasks"
            yield Check(name=f"task:{name}", status="deferred", detail=detail)
        return
    try:
        from inspect_ai._util.registry import registry_find, registry_info, registry_lookup
    except ImportError as exc:
        for name, bench in benchmarks.items():
            yield _Failed(
                f"{config.origin}: field benchmarks.{name}.task = {bench.task!r}: cannot "
                f"check that the task exists: inspect_ai is not importable here ({exc}); "
                "install it (the job needs it too), or add tasks to deferred_checks"
            )
        return
    for name, bench in benchmarks.items():
        task, where = bench.task, f"{config.origin}: field benchmarks.{name}"
        if (task.endswith(".py") or "/" not in task) and Path(task).is_file():
            yield Check(name=f"task:{name}", status="passed", detail=f"{task} (a file)")
            continue
        found = registry_lookup("task", task)
        if found is not None:
            try:
                _task_args(found, bench, where)
            except _Failed as exc:
                yield exc
                continue
            yield Check(name=f"task:{name}", status="passed", detail=task)
            continue
        package = task.split("/")[0]
        known = _task_names(registry_find, registry_info, package)
        if known:
            close = difflib.get_close_matches(task, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"{len(known)} known"
            why = f"no task {task!r} in package {package} ({hint})"
        elif package == "evalwatt":
            why = (
                "evalwatt's tasks are not registered with Inspect: install the package "
                "(pip install -e .)"
            )
        else:
            why = f"no installed package registers Inspect tasks as {package}/..."
        yield _Failed(f"{where}.task = {task!r}: {why}")


# --- the job's interpreter --------------------------------------------------------------------


def _python_check(status: CheckStatus, detail: str) -> Check:
    return Check(name="job_python", status=status, detail=detail)


def _job_python(config: Config) -> Check:
    python = config.job.python
    if python is None:
        return _python_check("passed", "the interpreter that renders the jobs")
    if "job_python" in config.deferred_checks:
        return _python_check("deferred", f"{python}: deferred_checks lists job_python")
    unset = unset_variables(python)
    if unset:
        return _python_check("deferred", f"{python}: {', '.join(unset)} not set here")
    expanded = os.path.expandvars(python)
    found = shutil.which(expanded)
    if found is None:
        raise _Failed(
            f"{config.origin}: field job.python = {python!r}: no executable file there; "
            "allowed: an existing interpreter (absolute path, or a name on PATH), or null"
        )
    return _python_check("passed", found)


def check_environment(config: Config) -> Config:
    """Run every check; raise one ConfigError with all failures, or return ``config`` with the
    passed and deferred checks recorded."""
    results: list[Check] = []
    failures: list[str] = []
    seen: set[str] = set()
    for model in config.models:
        written = config.weights(model)
        try:
            check = _weights(model, config)
        except _Failed as exc:
            if written not in seen:
                failures.append(str(exc))
        else:
            results.append(check)
        seen.add(written)
    for outcome in _tasks(config):
        if isinstance(outcome, _Failed):
            failures.append(str(outcome))
        else:
            results.append(outcome)
    try:
        results.append(_job_python(config))
    except _Failed as exc:
        failures.append(str(exc))
    if failures:
        raise ConfigError("\n".join(failures))
    return config.with_checks(tuple(results))
