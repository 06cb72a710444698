"""Job scripts: golden files, #SBATCH lines from the plan, and hostile strings.

Golden files live in tests/data/golden/. After an intended template change, regenerate them
with ``EVALWATT_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py``, then read the diff.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evalwatt.base.layout import Layout
from evalwatt.config.load import ConfigError, from_dict
from evalwatt.jobs.render import RenderError, render_script, slurm_time
from evalwatt.jobs.resolve import JobError, resolve_job
from evalwatt.plan.matrix import plan_run

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden"
PY = "/opt/py/bin/python"
# A results folder that exists nowhere: resolve() leaves it as it is on every machine.
GOLDEN_RESULTS = "/evalwatt-golden/results"

GPU_CELL = "Qwen2.5-32B-Instruct__piqa__t0__c10"
JUDGED_CELL = "Qwen2.5-32B-Instruct__writingbench__t0.7__c100"
BASH = shutil.which("bash")


def _setup(config_dict: dict, python: str = PY, results_dir: str | None = None):
    config_dict.setdefault("job", {})["python"] = python
    if results_dir is not None:
        config_dict["results_dir"] = results_dir
    config = from_dict(config_dict, Path("."))
    plan = plan_run(config)
    return config, plan, Layout.of(config.results_dir, config.run)


def _cpu_baseline(plan) -> str:
    (bid,) = [b.id for b in plan.baselines.values() if b.model == "SmolLM2-135M-Instruct"]
    return bid


def _render(kind: str, job_id: str, config, plan, layout) -> str:
    return render_script(resolve_job(config, plan, layout, kind, job_id))


def _spec(kind: str, job_id: str, config, plan, layout):
    return resolve_job(config, plan, layout, kind, job_id).spec


def _sbatch(script: str) -> dict[str, str]:
    lines = [
        line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")
    ]
    return dict(line.split("=", 1) for line in lines)


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("golden", ["cell.sbatch", "baseline.sbatch", "judge.sbatch"])
def test_golden_scripts(small_config, golden):
    config, plan, layout = _setup(small_config, results_dir=GOLDEN_RESULTS)
    kind, job_id = {
        "cell.sbatch": ("cell", GPU_CELL),
        "baseline.sbatch": ("baseline", _cpu_baseline(plan)),
        "judge.sbatch": ("judge", JUDGED_CELL),
    }[golden]
    script = _render(kind, job_id, config, plan, layout)
    path = GOLDEN_DIR / golden
    if os.environ.get("EVALWATT_UPDATE_GOLDEN") == "1":
        path.write_text(script, encoding="utf-8")
    assert script == path.read_text(encoding="utf-8")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("golden", ["cell.sbatch", "baseline.sbatch", "judge.sbatch"])
def test_golden_scripts_are_valid_bash(golden):
    subprocess.run([BASH, "-n", str(GOLDEN_DIR / golden)], check=True)


# --- #SBATCH lines ---------------------------------------------------------------------------


def test_sbatch_lines_follow_the_plan(small_config):
    config, plan, layout = _setup(small_config)
    jobs = [
        ("cell", GPU_CELL, "Qwen2.5-32B-Instruct"),
        ("judge", JUDGED_CELL, "Qwen3-Next-80B-A3B-Instruct"),
        ("baseline", _cpu_baseline(plan), "SmolLM2-135M-Instruct"),
        ("cell", "SmolLM2-135M-Instruct__piqa__t0.7__c100", "SmolLM2-135M-Instruct"),
    ]
    expected_gpus = {
        "Qwen2.5-32B-Instruct": 2,
        "Qwen3-Next-80B-A3B-Instruct": 4,
        "SmolLM2-135M-Instruct": 0,
    }
    expected_cpus = {
        "Qwen2.5-32B-Instruct": 48,
        "Qwen3-Next-80B-A3B-Instruct": 96,
        "SmolLM2-135M-Instruct": 2,
    }
    for kind, job_id, model in jobs:
        script = _render(kind, job_id, config, plan, layout)
        sb = _sbatch(script)
        if expected_gpus[model]:
            assert sb["--gpus"] == str(expected_gpus[model]), job_id
        else:
            assert "--gpus" not in sb, job_id
            assert not re.search(r"--gres|--gpus", script), job_id
        assert sb["--cpus-per-task"] == str(expected_cpus[model]), job_id
        assert sb["--time"] == "01:30:00"
        assert sb["--partition"] == "gpu_p6"
        assert sb["--account"] == "abc@h100"
        assert sb["--qos"] == "qos_gpu-t3"
        assert sb["--constraint"] == "h100"
        assert sb["--nodes"] == "1" and sb["--ntasks"] == "1"
        assert sb["--job-name"] == f"ew-{kind}-{job_id}"


def test_sbatch_lines_absent_when_unset(small_config):
    for key in ("partition", "account", "qos", "constraint"):
        small_config["cluster"][key] = None
    small_config["cluster"]["time_limit_min"] = 1500
    config, plan, layout = _setup(small_config)
    sb = _sbatch(_render("cell", GPU_CELL, config, plan, layout))
    assert set(sb) == {"--job-name", "--nodes", "--ntasks", "--gpus", "--cpus-per-task", "--time"}
    assert sb["--time"] == "1-01:00:00"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("partition", "gpu p6"),
        ("partition", "gpu\n#SBATCH --uid=0"),
        ("account", "abc;id"),
        ("qos", "$(id)"),
        ("constraint", "h100'"),
    ],
)
def test_unsafe_sbatch_value_raises(small_config, key, value):
    config, plan, layout = _setup(small_config)
    # past the schema, as a config built by hand (or a later edit) could be
    config = config.replace(cluster=config.cluster.model_copy(update={key: value}))
    with pytest.raises(RenderError, match="unsafe value for an #SBATCH line"):
        _render("cell", GPU_CELL, config, plan, layout)


def test_unsafe_sbatch_value_is_already_refused_by_the_schema(small_config):
    small_config["cluster"]["partition"] = "gpu p6"
    with pytest.raises(ConfigError, match=r"cluster\.partition"):
        from_dict(small_config, Path("."))


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (90, "01:30:00"),
        (1500, "1-01:00:00"),
        (1, "00:01:00"),
        (1440, "1-00:00:00"),
        (1439, "23:59:00"),
        (1200, "20:00:00"),
        (3 * 1440 + 61, "3-01:01:00"),
    ],
)
def test_slurm_time(minutes, expected):
    assert slurm_time(minutes) == expected


# --- the spec -------------------------------------------------------------------------------


def test_spec_server_command_follows_the_plan(small_config):
    config, plan, layout = _setup(small_config)
    spec = _spec("cell", GPU_CELL, config, plan, layout)
    argv = spec.server.argv
    assert argv[:3] == ("/opt/py/bin/vllm", "serve", "{model_path}")
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
    assert argv[argv.index("--max-model-len") + 1] == "32768"
    assert spec.model.path == "/models/Qwen/Qwen2.5-32B-Instruct"
    assert spec.evaluation.max_connections == 10
    assert spec.evaluation.temperature == 0.0
    assert spec.evaluation.score_in_job is True
    assert spec.pad.model_dump() == {"accounting_window_s": 300, "margin_s": 30}
    assert spec.server.baseline_id == plan.cells[GPU_CELL].baseline
    judge = _spec("judge", JUDGED_CELL, config, plan, layout)
    assert judge.model.name == "Qwen3-Next-80B-A3B-Instruct"
    jargv = judge.server.argv
    assert jargv[jargv.index("--tensor-parallel-size") + 1] == "4"
    assert judge.judging.temperature == 0.2
    assert str(judge.judging.cells[0].cell_result).endswith(
        f"results/unit/cells/{JUDGED_CELL}/result.json"
    )


def test_a_judge_only_model_gets_the_planners_server_settings(small_config):
    """The judge model has no cells, so no baseline in the plan: its settings and id come
    from the planner's own functions, exactly as a baseline of it would have them."""
    from evalwatt.contracts.spec import ServerSettings
    from evalwatt.plan.matrix import baseline_id, server_settings

    config, plan, layout = _setup(small_config)
    judge = resolve_job(config, plan, layout, "judge", JUDGED_CELL)
    name = "Qwen3-Next-80B-A3B-Instruct"
    settings = server_settings(config.model(name), plan.models[name], config)
    assert judge.spec.server.settings == ServerSettings.model_validate(settings)
    assert judge.baseline_id == baseline_id(config.model(name), settings)
    assert (judge.resources.gpus, judge.resources.cpus) == (4, 96)


@pytest.mark.parametrize(
    ("kind", "job_id", "message"),
    [
        ("cell", "nope", "no cell 'nope'"),
        ("baseline", "nope", "no baseline 'nope'"),
        ("judge", GPU_CELL, "has no judge job"),
        ("sweep", GPU_CELL, "unknown job kind"),
    ],
)
def test_a_job_not_in_the_plan_is_refused(small_config, kind, job_id, message):
    config, plan, layout = _setup(small_config)
    with pytest.raises(JobError, match=message):
        resolve_job(config, plan, layout, kind, job_id)


def test_spec_of_a_cpu_model(small_config):
    config, plan, layout = _setup(small_config)
    spec = _spec("baseline", _cpu_baseline(plan), config, plan, layout)
    argv = spec.server.argv
    assert argv[:3] == (PY, "-m", "llama_cpp.server")
    assert argv[argv.index("--n_threads") + 1] == "2"
    assert argv[-2:] == ("--seed", "0")
    assert spec.evaluation is None and spec.judging is None


# --- hostile strings ------------------------------------------------------------------------

HOSTILE_ENV = {
    "EW_SUBST": "$(touch PWNED)",
    "EW_BACKTICK": "`touch PWNED`",
    "EW_QUOTES": "it's \"double\" and 'single' \\ backslash",
    "EW_NEWLINES": "line one\nline two\n$(touch PWNED)\n",
    "EW_DOLLARS": "$HOME ${PATH} $((6*7)) $$",
    "EW_GLOB": "* ? [a-z] ~",
    "EW_EMPTY": "",
}
HOSTILE_MODULES = ["arch/h100", "name with spaces", 'it\'s "q" $(touch PWNED) `touch PWNED`']

FAKE_PYTHON = """#!/bin/sh
printf '%s\\0' "$@" > "$FAKE_OUT/argv"
env -0 > "$FAKE_OUT/env"
"""
FAKE_MODULE = """#!/bin/sh
printf '%s\\0' "$@" >> "$FAKE_OUT/module"
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def _nul_list(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


def _run_script(tmp_path: Path, script_path: Path, extra_env: dict[str, str]) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    bin_dir = tmp_path / "bin"
    _executable(bin_dir / "module", FAKE_MODULE)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_OUT": str(out),
        "HOME": str(tmp_path),
        **extra_env,
    }
    subprocess.run([BASH, str(script_path)], cwd=work, env=env, check=True, timeout=30)
    environ = dict(item.split("=", 1) for item in _nul_list(out / "env"))
    modules = _nul_list(out / "module") if (out / "module").exists() else []
    return {"argv": _nul_list(out / "argv"), "env": environ, "modules": modules}


def _no_pwned(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.name.startswith("PWNED")]


def _hostile_setup(tmp_path: Path, small_config: dict, python: str = PY):
    # a results_dir a shell could read otherwise is refused on load (test_shell_safety.py);
    # spaces and the other characters it allows arrive as written
    results = tmp_path / "res ults +a=b,c@d"
    small_config["job"]["env"] = dict(HOSTILE_ENV)
    small_config["cluster"]["modules"] = list(HOSTILE_MODULES)
    return _setup(small_config, python=python, results_dir=str(results))


@pytest.fixture
def hostile(tmp_path, small_config):
    return _hostile_setup(tmp_path, small_config)


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("kind", ["cell", "baseline", "judge"])
def test_hostile_strings_arrive_byte_for_byte(tmp_path, small_config, kind):
    fake = _executable(tmp_path / "fakepy" / "python", FAKE_PYTHON)
    config, plan, layout = _hostile_setup(tmp_path, small_config, python=str(fake))
    job_id = {"cell": GPU_CELL, "judge": JUDGED_CELL, "baseline": _cpu_baseline(plan)}[kind]
    spec_path = layout.job_spec(kind, job_id)
    script = _render(kind, job_id, config, plan, layout)
    script_path = _executable(tmp_path / "job.sbatch", script)
    subprocess.run([BASH, "-n", str(script_path)], check=True)

    got = _run_script(tmp_path, script_path, {})

    assert got["argv"] == ["-m", "evalwatt", "job", str(spec_path.resolve())]
    for name, value in HOSTILE_ENV.items():
        assert got["env"][name] == value, name
    assert got["env"]["HF_HUB_OFFLINE"] == "1"
    assert got["modules"] == [w for m in HOSTILE_MODULES for w in ("load", m)]
    assert _no_pwned(tmp_path) == []


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_hostile_python_path(tmp_path, small_config):
    """The interpreter path written into the script is quoted too, and nothing in the
    environment can replace it (no hidden override)."""
    fake = _executable(tmp_path / "py dir 'q' $(touch PWNED) } {x}" / "python", FAKE_PYTHON)
    config, plan, layout = _hostile_setup(tmp_path, small_config, python=str(fake))
    spec_path = layout.job_spec("cell", GPU_CELL)
    script = _render("cell", GPU_CELL, config, plan, layout)
    script_path = _executable(tmp_path / "job.sbatch", script)
    got = _run_script(tmp_path, script_path, {"EVALWATT_PYTHON": "/bin/false"})
    assert got["argv"] == ["-m", "evalwatt", "job", str(spec_path.resolve())]
    assert _no_pwned(tmp_path) == []


def test_hostile_values_stay_out_of_sbatch_and_comment_lines(hostile):
    """No value with a way out of its line reaches an #SBATCH line or a comment."""
    config, plan, layout = hostile
    script = _render("cell", GPU_CELL, config, plan, layout)
    for line in script.splitlines():
        if line.startswith("#"):
            assert "PWNED" not in line, line
