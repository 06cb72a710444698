"""No config value reaches a shell unquoted, on any path to Slurm (issue 16).

Every config field that ends up in a shell or a Slurm option gets a hostile corpus (quotes,
``$(...)``, backticks, ``;``, newlines, spaces, ``&``, ``|``, globs). Each value is either
refused on load, with a message naming the field and the value, or it reaches its destination
verbatim and runs nothing, on each path that carries it:

* the rendered job.sbatch, run by bash with stub ``module`` and ``python`` executables;
* the Snakemake Slurm executor plugin's sbatch command line (the plugin's own
  ``get_submit_command``, which it runs with ``/bin/sh``), run with a stub ``sbatch``;
* submitit's batch script (``evalwatt submit``), run by bash with a stub ``srun``.

An injected command would ``touch`` a marker file, or run a stub command named after a
feature: the marker stays absent. docs/running.md#slurm-fields lists the fields.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from evalwatt.base.layout import Layout
from evalwatt.config.load import Config, ConfigError, from_dict
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import Job, Scheduler, resolve_job
from evalwatt.plan.matrix import Plan, plan_run

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

MARK = "PWNED"
HOSTILE = [
    "it's",
    'say "hi"',
    f"$(touch {MARK})",
    f"`touch {MARK}`",
    f"x;touch {MARK}",
    f"x\ntouch {MARK}",
    "two words",
    f"x&touch {MARK}",
    f"x|touch {MARK}",
    f"x&&touch {MARK}",
    "$HOME ${PATH}",
    "*",
    "\\",
]
# Valid Slurm feature expressions made of shell metacharacters: they must reach sbatch as
# written. The node of tests/cluster/slurm-up.sh has features h100, a and b.
CONSTRAINTS = ["h100&(a|b)", "h100|a", "h100&a", "[a|b]", "h100*2", "(a|b)*2"]

# Fields refused on load for every hostile value: a pattern or a grammar admits no shell
# metacharacter (partition may list partitions with ','; account may hold '@').
REFUSED = [
    "cluster.partition",
    "cluster.account",
    "cluster.qos",
    "cluster.constraint",
    "run",
    "cluster.name",
    "models.0.name",
    "job.env.<name>",
]
STUB = """#!/bin/sh
printf '%s\\0' "$@" >> "$STUB_OUT/{name}"
"""
PYTHON_STUB = """#!/bin/sh
printf '%s\\0' "$@" > "$STUB_OUT/python"
env -0 > "$STUB_OUT/env"
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def _calls(out: Path, name: str) -> list[str]:
    """The NUL-separated arguments a stub recorded (all calls, one after the other)."""
    path = out / name
    return path.read_bytes().decode().split("\0")[:-1] if path.exists() else []


def _stubs(tmp_path: Path, *names: str) -> tuple[Path, Path]:
    """A bin folder of recording stubs, and the folder they record into."""
    out, bin_dir = tmp_path / "out", tmp_path / "bin"
    out.mkdir(exist_ok=True)
    for name in names:
        _executable(bin_dir / name, STUB.format(name=name))
    # a command named after a feature of CONSTRAINTS: run only if a shell read "h100|a"
    _executable(bin_dir / "a", f"#!/bin/sh\ntouch {out}/{MARK}-a\n")
    return bin_dir, out


def _run(shell: str, script: Path | str, tmp_path: Path, bin_dir: Path, out: Path) -> None:
    """Run a script file (or a command line, with ``-c``) in an empty folder, stubs first on
    PATH."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_OUT": str(out), "HOME": str(tmp_path)}
    argv = [shell, str(script)] if isinstance(script, Path) else [shell, "-c", script]
    subprocess.run(argv, cwd=work, env=env, check=True, timeout=30)


def _injected(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob(f"{MARK}*")]


def _set(data: dict[str, Any], field: str, value: Any) -> None:
    *parents, last = field.split(".")
    for part in parents:
        data = data[int(part)] if part.isdigit() else data.setdefault(part, {})
    data[last] = value


def _load(small_config: dict[str, Any], python: str = "/opt/py/bin/python") -> Config:
    small_config.setdefault("job", {})["python"] = python
    return from_dict(small_config, Path("."))


def _first_cell(config: Config, results: Path) -> tuple[Job, Plan]:
    plan = plan_run(config)
    layout = Layout.of(str(results), config.run)
    return resolve_job(config, plan, layout, "cell", next(iter(plan.cells))), plan


# --- refused on load ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", REFUSED)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_of_a_slurm_or_name_field_is_refused_on_load(small_config, field, value):
    if field == "job.env.<name>":
        small_config["job"]["env"] = {value: "1"}
        where = "job.env"
    else:
        _set(small_config, field, value)
        where = field
    with pytest.raises(ConfigError) as err:
        from_dict(small_config, Path("."))
    assert f"field {where}" in str(err.value)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v != "two words"])
def test_a_hostile_results_dir_is_refused_on_load(small_config, value):
    """Its paths reach the executor plugin's command line inside double quotes (`--wrap="..."`,
    `--wait-for-files '...'`), where the login node's shell would expand $(...)."""
    small_config["results_dir"] = value
    with pytest.raises(ConfigError, match=r"field results_dir = "):
        from_dict(small_config, Path("."))


# --- the rendered job.sbatch --------------------------------------------------------------------


def _job_script_run(tmp_path: Path, config: Config, results: Path) -> tuple[Job, Path]:
    job, _ = _first_cell(config, results)
    script = _executable(tmp_path / "job.sbatch", render_script(job))
    bin_dir, out = _stubs(tmp_path, "module")
    subprocess.run([BASH, "-n", str(script)], check=True)
    _run(BASH or "bash", script, tmp_path, bin_dir, out)
    return job, out


@pytest.mark.parametrize("value", [v for v in HOSTILE if "\n" not in v])
def test_a_hostile_module_name_reaches_module_load_verbatim(tmp_path, small_config, value):
    small_config["cluster"]["modules"] = ["arch/h100", value]
    fake = _executable(tmp_path / "py" / "python", PYTHON_STUB)
    _, out = _job_script_run(tmp_path, _load(small_config, str(fake)), tmp_path / "results")
    assert _calls(out, "module") == ["load", "arch/h100", "load", value]
    assert _injected(tmp_path) == []


def test_a_module_name_with_a_newline_is_refused_on_load(small_config):
    small_config["cluster"]["modules"] = [f"x\ntouch {MARK}"]
    with pytest.raises(ConfigError, match=r"field cluster.modules.0 = 'x\\ntouch"):
        from_dict(small_config, Path("."))


def test_hostile_job_env_values_and_python_path_arrive_verbatim(tmp_path, small_config):
    """Values of job.env (newlines included) and a job.python whose folder is named with every
    shell metacharacter of the corpus but the newline (refused in a path)."""
    env = {f"EW_{i}": value for i, value in enumerate(HOSTILE)}
    small_config["job"]["env"] = env
    folder = "py " + " ".join(v for v in HOSTILE if "\n" not in v and v != "\\")
    fake = _executable(tmp_path / folder.replace("/", "_") / "python", PYTHON_STUB)
    results = tmp_path / "my results"
    job, out = _job_script_run(tmp_path, _load(small_config, str(fake)), results)
    assert _calls(out, "python") == ["-m", "evalwatt", "job", str(job.spec_path.resolve())]
    got = dict(item.split("=", 1) for item in _calls(out, "env"))
    assert {name: got[name] for name in env} == env
    assert _injected(tmp_path) == []


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_a_constraint_is_one_sbatch_line_as_written_and_runs_nothing(
    tmp_path, small_config, constraint
):
    small_config["cluster"]["constraint"] = constraint
    fake = _executable(tmp_path / "py" / "python", PYTHON_STUB)
    job, out = _job_script_run(tmp_path, _load(small_config, str(fake)), tmp_path / "results")
    script = render_script(job)
    assert f"#SBATCH --constraint={constraint}\n" in script
    assert _calls(out, "python")  # the script ran to its end
    assert _injected(tmp_path) == []


# --- the Snakemake Slurm executor plugin ---------------------------------------------------------


class _Resources(dict[str, Any]):
    """Snakemake's job resources as the plugin reads them (``.get`` and attributes)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _plugin_command(scheduler: Scheduler, tmp_path: Path) -> str:
    """The sbatch command line the plugin builds for a run_job job of these settings (its own
    code; the account and partition arguments are built by its executor, left out here)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    resources = _Resources(scheduler.slurm_executor_resources(), runtime=30, cpus_per_task=2, gpu=1)
    job = SimpleNamespace(resources=resources, threads=2)
    params = {
        "run_uuid": "0f1e2d3c",
        "slurm_logfile": str(tmp_path / "slurm logs" / "%j.log"),
        "comment_str": "rule_run_job_wildcards_cell",
        "account": "",
        "partition": "",
        "workdir": str(tmp_path / "work dir"),
    }
    return get_submit_command(job, params) + ' --wrap="true"'


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_the_executor_plugin_passes_constraint_and_qos_verbatim(tmp_path, small_config, constraint):
    small_config["cluster"].update(constraint=constraint, qos="qos_gpu-t3")
    scheduler = Scheduler.of(_load(small_config))
    resources = scheduler.slurm_executor_resources()
    assert "slurm_extra" not in resources  # pasted unquoted into the command line by the plugin
    bin_dir, out = _stubs(tmp_path, "sbatch")
    _run("/bin/sh", _plugin_command(scheduler, tmp_path), tmp_path, bin_dir, out)
    argv = _calls(out, "sbatch")
    assert argv[argv.index("-C") + 1] == constraint
    assert "--qos=qos_gpu-t3" in argv
    assert _injected(tmp_path) == []


def test_the_harness_sees_an_unquoted_constraint_run_a_command(tmp_path):
    """The plugin's old path (slurm_extra, unquoted): the stub `a` runs. The tests above would
    see it."""
    bin_dir, out = _stubs(tmp_path, "sbatch")
    _run("/bin/sh", "sbatch --constraint=h100|a", tmp_path, bin_dir, out)
    assert [p.name for p in _injected(tmp_path)] == [f"{MARK}-a"]


# --- submitit (evalwatt submit) ------------------------------------------------------------------


def _submitit_script(job: Job, folder: Path, bin_dir: Path, monkeypatch) -> str:
    """The batch script submitit writes for the job (its SlurmExecutor needs srun on PATH)."""
    from evalwatt.ops.submit import _executor

    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    executor = _executor("slurm", folder, job)
    return str(executor._make_submission_file_text(executor._submitit_command_str, "uid"))


@pytest.mark.parametrize("constraint", ["h100&(a|b)", "h100|a"])
def test_submitit_gets_every_slurm_value_verbatim_and_runs_nothing(
    tmp_path, small_config, monkeypatch, constraint
):
    small_config["cluster"]["constraint"] = constraint
    results = tmp_path / "my results"
    job, _ = _first_cell(_load(small_config), results)
    bin_dir, out = _stubs(tmp_path, "srun")
    python = tmp_path / "py $(touch PWNED) `x` it's" / "python"
    monkeypatch.setattr(sys, "executable", str(python))
    folder = Layout.of(str(results), "unit").submit_dir()
    script = _submitit_script(job, folder, bin_dir, monkeypatch)
    sbatch = dict(
        shlex.split(line.removeprefix("#SBATCH "))[0].split("=", 1)
        for line in script.splitlines()
        if line.startswith("#SBATCH ")
    )  # sbatch reads #SBATCH words with shell-like quotes
    assert sbatch["--constraint"] == constraint
    assert sbatch["--partition"] == "gpu_p6"
    assert sbatch["--account"] == "abc@h100"
    assert sbatch["--job-name"] == job.scheduler_name
    assert sbatch["--output"].startswith(str(folder))
    path = _executable(tmp_path / "submitit.sbatch", script)
    _run(BASH or "bash", path, tmp_path, bin_dir, out)
    srun = _calls(out, "srun")
    assert srun[srun.index("--output") + 1].startswith(str(folder))
    assert srun[-5:] == [str(python), "-u", "-m", "submitit.core._submit", str(folder)]
    assert _injected(tmp_path) == []


def test_the_corpus_holds_every_kind_of_metacharacter():
    text = "".join(HOSTILE)
    for char in ("'", '"', "$(", "`", ";", "\n", " ", "&", "|", "*", "\\"):
        assert char in text, char
