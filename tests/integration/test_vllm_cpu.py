"""The cluster's server path for real, on the CPU: `vllm serve` from vLLM's CPU build.

The bootstrap sets up ``.venv-vllm`` and the demo model (tests/../workflow/scripts/
bootstrap.py ``setup --vllm``); Snakemake then runs a reduced copy of config/demo-vllm.yaml:
one cell and its load-only baseline, through the rendered job scripts, with the real server,
real Inspect against it, the real sampler, the energy step and the final table. Then the
failures a real server has: weights that are not there (the job fails at once, no server) and
weights that are broken (the server starts and dies: the job fails at once with the tail of
vLLM's log). Neither leaves a result or a process, and no job leaves anything in /tmp or the
home directory: each runs with its own empty HOME and TMPDIR, checked empty afterwards.

Answer texts are never checked: vLLM's eager and compiled bf16 answer differently.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
import yaml

from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.record import CellRecord
from evalwatt.contracts.result import JobResult
from evalwatt.runtime.inspect_steps import generate_config
from evalwatt.runtime.server import Server, free_port
from evalwatt.table.final import read_table

REPO = Path(__file__).resolve().parents[2]
CELL = "SmolLM2-135M-Instruct__humaneval__t0__c2"

pytestmark = pytest.mark.integration


def _bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bootstrap", REPO / "workflow/scripts/bootstrap.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vllm_processes() -> list[str]:
    """Any vLLM server or engine process on the machine (the CPU build names its engine)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        try:
            argv = proc.info["cmdline"] or []
            # [python, .../vllm, serve, ...]: the console script runs under its interpreter
            serving = "serve" in argv[:3] and any(Path(a).name == "vllm" for a in argv[:2])
            if serving or "VLLM" in (proc.info["name"] or ""):
                found.append(f"{proc.pid} {' '.join(argv)[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def tmp_leftovers() -> set[str]:
    """What a vLLM start leaves in the system temp folder when nothing redirects it."""
    names = {p.name for p in Path(tempfile.gettempdir()).iterdir()}
    marks = ("ew-", "vllm", "torchinductor")  # our link; vLLM's and torch's own
    return {n for n in names if n.startswith(marks) or (len(n) == 36 and n.count("-") == 4)}


@pytest.fixture(scope="module")
def vllm_env() -> dict[str, str]:
    """.venv-vllm and the demo model, through the bootstrap (cached after the first time)."""
    bootstrap = _bootstrap()
    why_not = bootstrap.vllm_supported()
    if why_not:
        pytest.skip(why_not)
    return dict(bootstrap.vllm_environment(Path(sys.executable)))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An empty HOME and TMPDIR for the jobs, exported by their scripts (job.env)."""
    root = tmp_path_factory.mktemp("sb")
    out = {"HOME": root / "home", "TMPDIR": root / "tmp"}
    for path in out.values():
        path.mkdir()
    return out


def small_config(sandbox: dict[str, Path]) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "config" / "demo-vllm.yaml").read_text())
    config["run"] = "ci-vllm"
    config["cluster"]["accounting_window_s"] = 5  # a vLLM job lasts longer: no padding
    config["models"][0]["benchmarks"] = ["humaneval"]
    config["benchmarks"] = {"humaneval": config["benchmarks"]["humaneval"]}
    config["benchmarks"]["humaneval"].update(limit=1, max_tokens=48)
    config["judges"] = {}
    config["sweeps"] = {"temperature": [0.0], "max_connections": [2]}
    config["job"]["env"] = {name: str(path) for name, path in sandbox.items()}
    return config


def assert_nothing_left(sandbox: dict[str, Path], before: set[str]) -> None:
    for name, path in sandbox.items():
        left = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
        assert not left, f"a job left files in its {name}: {left[:20]}"
    assert tmp_leftovers() - before == set()
    assert vllm_processes() == []


@pytest.fixture(scope="module")
def run(
    vllm_env: dict[str, str], sandbox: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    assert vllm_processes() == [], "a vLLM server is already running: the checks would mix"
    workdir = tmp_path_factory.mktemp("vllm")
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(sandbox)))
    before = tmp_leftovers()
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml")]
    argv += ["--profile", str(REPO / "profiles" / "local")]
    env = {**os.environ, **vllm_env}
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1500, env=env)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert_nothing_left(sandbox, before)
    return workdir / "results" / "ci-vllm"


def test_the_row_is_in_the_final_table_with_energy(run: Path) -> None:
    (row,) = read_table(run / "final/energy_table.parquet").to_pylist()
    assert (row["cell_id"], row["backend"], row["gpus"]) == (CELL, "vllm", 0)
    assert row["samples_completed"] == 1 and row["output_tokens"] > 0
    assert row["score"] is not None  # HumanEval by unit tests: 0 or 1, never checked as text
    assert row["cpu_est_inference_energy_j"] > 0 and row["cpu_est_baseline_job_energy_j"] > 0
    assert row["load_duration_s"] > 0 and row["baseline_load_duration_s"] > 0


def test_the_cell_ran_the_real_cpu_server_through_its_rendered_job(run: Path, vllm_env) -> None:
    script = (run / "jobs/cell" / CELL / "job.sbatch").read_text()
    assert "/bin/vllm' serve" in script and "#SBATCH --gpus" not in script
    result = read_contract(JobResult, run / "cells" / CELL / "result.json")
    assert result.status == JobStatus.OK, result.problems
    argv = result.server.argv
    assert argv[0] == f"{vllm_env['EVALWATT_VLLM_VENV']}/bin/vllm" and argv[1] == "serve"
    assert argv[2] == vllm_env["EVALWATT_VLLM_DEMO_MODEL"] and "--enforce-eager" in argv
    assert "--tensor-parallel-size" not in argv
    assert result.server.exit_code in (0, -15)  # stopped by the job's SIGTERM
    assert result.server.env["VLLM_TARGET_DEVICE"] == "cpu"
    marks = [result.marks[m] for m in (Mark.LOAD_START, Mark.READY, Mark.INFERENCE_START)]
    assert marks == sorted(marks)
    assert not (run / "cells" / CELL / "server-tmp").exists()


def test_the_servers_own_counters_match_inspects(run: Path) -> None:
    result = read_contract(JobResult, run / "cells" / CELL / "result.json")
    metrics, generation = result.server_metrics, result.generation
    assert metrics is not None and generation is not None
    assert metrics.null_reason is None and metrics.server_version
    assert metrics.requests is not None and metrics.requests >= 1
    for name in metrics.files:
        assert "vllm:generation_tokens_total" in (run / "cells" / CELL / name).read_text()
    record = read_contract(CellRecord, run / "energy" / f"{CELL}.json")
    assert record.tokens.agree is True, record.tokens.problem
    assert record.tokens.server_generation_tokens == generation.output_tokens > 0


def test_the_baseline_loaded_and_stopped_only(run: Path) -> None:
    (folder,) = (run / "baselines").iterdir()
    result = read_contract(JobResult, folder / "result.json")
    assert result.status == JobStatus.OK and result.server_metrics is None
    assert Mark.INFERENCE_START not in result.marks and Mark.READY in result.marks


# --- failures with the real server -----------------------------------------------------------


def _failing_job(
    run: Path, vllm_env: dict[str, str], sandbox: dict[str, Path], weights: Path, name: str
) -> tuple[subprocess.CompletedProcess[str], Path, float]:
    """The baseline of the run's config with other weights, rendered and run by hand."""
    from evalwatt.base.layout import Layout
    from evalwatt.config.load import from_dict
    from evalwatt.jobs.render import render_script
    from evalwatt.jobs.resolve import resolve_job
    from evalwatt.plan.matrix import plan_run

    raw = small_config(sandbox)
    raw["run"] = name
    raw["results_dir"] = str(run.parent)
    raw["models"][0]["path"] = str(weights)
    raw["deferred_checks"] = ["weights"]  # as on a cluster: the job finds out
    config = from_dict(raw, REPO / "config")
    plan = plan_run(config)
    job = resolve_job(
        config, plan, Layout.of(config.results_dir, name), "baseline", next(iter(plan.baselines))
    )
    write_contract(job.spec_path, job.spec)
    job.script.write_text(render_script(job))
    started = time.monotonic()
    env = {**os.environ, **vllm_env}
    done = subprocess.run(
        ["bash", str(job.script)], capture_output=True, text=True, check=False, timeout=600, env=env
    )
    return done, job.files.root, time.monotonic() - started


def test_missing_weights_fail_the_job_at_once(run: Path, vllm_env, sandbox) -> None:
    before = tmp_leftovers()
    done, folder, took = _failing_job(run, vllm_env, sandbox, run / "no-such-model", "missing")
    assert done.returncode != 0 and took < 30
    assert "no weights at" in done.stderr
    assert not (folder / "result.json").exists() and not (folder / "server.log").exists()
    assert_nothing_left(sandbox, before)


def test_broken_weights_fail_the_job_with_the_tail_of_vllms_log(
    run: Path, vllm_env, sandbox
) -> None:
    """A model folder with its config and tokenizer but no weights: vLLM starts, fails while
    loading and exits; the job fails as soon as it does, not after its ready timeout."""
    broken = run.parent / "broken-model"
    shutil.copytree(
        vllm_env["EVALWATT_VLLM_DEMO_MODEL"], broken, ignore=shutil.ignore_patterns("*.safetensors")
    )
    before = tmp_leftovers()
    done, folder, took = _failing_job(run, vllm_env, sandbox, broken, "broken")
    assert done.returncode != 0, done.stdout[-3000:]
    assert took < 300  # ready_timeout_s is 600
    assert "before it was ready" in done.stderr and "last lines of" in done.stderr
    log_tail = done.stderr.split("last lines of", 1)[1]
    assert "Error" in log_tail or "error" in log_tail, log_tail[-2000:]
    assert not (folder / "result.json").exists()
    marks = json.loads((folder / "timeline.json").read_text())["marks"]
    assert "exit" in marks and "ready" not in marks
    assert_nothing_left(sandbox, before)


def _prefix_cache_tokens(server: Server) -> tuple[float, float]:
    """vLLM's own counters: prompt tokens looked up in its prefix cache, and found there."""
    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/metrics", timeout=10) as r:
        text = r.read().decode()

    def total(name: str) -> float:
        pattern = rf"^vllm:{name}_total\{{[^}}]*\}} ([0-9.e+]+)"
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    return total("prefix_cache_queries"), total("prefix_cache_hits")


def test_a_cells_cache_salt_keeps_the_prefix_cache_to_that_cell(
    run: Path, vllm_env, tmp_path
) -> None:
    """What the salt that generate_config gives each cell does on the real server: a prompt
    sent again with the same cell's salt is read from vLLM's prefix cache, the same prompt
    with another cell's salt is computed again (a model job's later cell of the same
    benchmark costs what it costs on a fresh server: docs/validation.md, the busy regime).
    docs/validation/vllm-cpu-cache-salt/ has the same check without salts."""
    evaluation = read_contract(JobResult, run / "cells" / CELL / "result.json")
    assert evaluation.spec.evaluation is not None
    cells = [evaluation.spec.evaluation.model_copy(update={"max_connections": c}) for c in (2, 4)]
    salts = [generate_config(c, "vllm")["extra_body"]["cache_salt"] for c in cells]
    assert salts[0] != salts[1]
    port = free_port()
    argv = [f"{vllm_env['EVALWATT_VLLM_VENV']}/bin/vllm", "serve"]
    argv += [vllm_env["EVALWATT_VLLM_DEMO_MODEL"], "--served-model-name", "m", "--port"]
    argv += [str(port), "--host", "127.0.0.1", "--enforce-eager", "--max-model-len", "2048"]
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
    server = Server.start(argv, "127.0.0.1", port, tmp_path / "server.log", env=env)
    try:
        server.wait_ready(600.0, "m")
        prompt = [{"role": "user", "content": "Tell me about lighthouses. " * 60}]
        found = []
        for salt in (salts[0], salts[0], salts[1]):
            queried, hit = _prefix_cache_tokens(server)
            body = {"model": "m", "messages": prompt, "max_tokens": 2, "cache_salt": salt}
            request = urllib.request.Request(
                f"{server.url}/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=300).read()
            queried_after, hit_after = _prefix_cache_tokens(server)
            assert queried_after - queried > 400  # the whole prompt was looked up
            found.append(hit_after - hit)
    finally:
        server.stop(grace_s=30)
    assert found[0] == 0 and found[1] > 300 and found[2] == 0, found
