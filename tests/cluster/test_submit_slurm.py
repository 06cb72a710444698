"""`evalwatt submit CELL --repeats 3` on the real Slurm: three jobs through submitit, each asking
for the cell's planned (fake) GPU and CPUs, landing three results in the run's layout, shown
by `evalwatt status` as pending or running while they run and done after."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evalwatt.base.layout import Layout, repeat_id
from evalwatt.base.vocabulary import JobStatus
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = REPO / "tests" / "cluster" / "ci-slurm.yaml"
EVALWATT = [sys.executable, "-m", "evalwatt"]

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("slurm_cluster")]


def _evalwatt(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVALWATT, *args], cwd=workdir, capture_output=True, text=True, timeout=600
    )


def test_three_repeats_land_in_the_layout(tmp_path: Path) -> None:
    data = yaml.safe_load(CI_CONFIG.read_text())
    data["benchmarks"]["humaneval"]["limit"] = 1
    config = tmp_path / "repeats.yaml"
    config.write_text(yaml.safe_dump(data))
    status = json.loads(_evalwatt(tmp_path, "status", "--configfile", str(config), "--json").stdout)
    cell = next(
        j["job_id"] for j in status if j["kind"] == "cell" and j["benchmark"] == "humaneval"
    )
    ids = [repeat_id(cell, n) for n in (1, 2, 3)]

    sent = _evalwatt(tmp_path, "submit", cell, "--repeats", "3", "--configfile", str(config))
    assert sent.returncode == 0, sent.stderr
    assert sent.stderr.count("-> slurm job") == 3

    seen: dict[str, set[str]] = {i: set() for i in ids}
    deadline = time.monotonic() + 540
    while True:
        out = _evalwatt(tmp_path, "status", "--configfile", str(config), "--json")
        assert out.returncode == 1  # the plan's own jobs are not run here
        states = {j["job_id"]: j for j in json.loads(out.stdout) if j["repeat_of"] == cell}
        assert set(states) == set(ids)
        for i in ids:
            seen[i].add(states[i]["state"])
        if all(states[i]["state"] == "done" for i in ids):
            break
        assert not any(states[i]["state"] == "failed" for i in ids), states
        assert time.monotonic() < deadline, states
        time.sleep(1)
    assert all(seen[i] & {"pending", "running"} for i in ids), seen
    text = _evalwatt(tmp_path, "status", "--configfile", str(config)).stdout
    assert f"{cell}: r1 done, r2 done, r3 done" in text

    layout = Layout.of(tmp_path / "results", data["run"])
    results = [read_contract(JobResult, layout.run_result("cell", i)) for i in ids]
    assert [r.job_id for r in results] == ids
    assert all(r.status == JobStatus.OK and r.scheduler_job_id for r in results)
    assert all(r.generation and r.generation.samples_total == 1 for r in results)
    assert not layout.run_result("cell", cell).exists()  # the cell itself is not touched
    fields = "JobIDRaw,AllocTRES,Comment"
    rows = subprocess.run(
        [
            "sacct",
            "-X",
            "-P",
            "-n",
            f"--format={fields}",
            "-j",
            ",".join(r.scheduler_job_id for r in results),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    by_id = {line.split("|")[0]: line.split("|") for line in rows}
    flags = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    stores_comments = "job_comment" in flags
    for r in results:
        _, tres, comment = by_id[r.scheduler_job_id]
        # AccountingStoreFlags=job_comment (slurm-up.sh sets it); slurmdbd may store a submitit
        # job's comment late or not at all, so a comment that is there must be ours
        if stores_comments and comment:
            assert comment == f"evalwatt_submit_cell_{r.job_id}"
        assert "gres/gpu=1" in tres and "cpu=2" in tres, tres
        assert r.cuda_visible_devices is not None

    again = _evalwatt(tmp_path, "submit", cell, "--repeats", "3", "--configfile", str(config))
    assert again.returncode == 0 and again.stderr.count("not sent again") == 3

    # The repeats' mean and spread: the cell's baseline is run by the workflow (the repeats
    # share it), then `evalwatt repeats` summarises the three measurements.
    from evalwatt.config.load import load_config
    from evalwatt.plan.matrix import plan_run

    loaded = load_config(config)
    base_id = plan_run(loaded).cells[cell].baseline
    baseline = str(Layout.of("results", loaded.run).run_result("baseline", base_id))
    snakemake = [str(Path(sys.executable).parent / "snakemake"), baseline]
    snakemake += [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--profile",
        str(REPO / "profiles/slurm-ci"),
    ]
    snakemake += ["--directory", str(tmp_path), "--configfile", str(config)]
    ran = subprocess.run(snakemake, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stderr[-2000:]
    table = _evalwatt(tmp_path, "repeats", "--configfile", str(config))
    assert table.returncode == 0, table.stderr
    import pyarrow.parquet as pq

    (summary,) = pq.read_table(tmp_path / table.stdout.strip()).to_pylist()
    assert summary["cell_id"] == cell and summary["measurements"] == 3
    assert summary["repeat_ids"] == ",".join(ids)
    assert summary["cpu_est_inference_energy_j_n"] == 3
    assert summary["cpu_est_inference_energy_j_min"] <= summary["cpu_est_inference_energy_j_mean"]
    assert summary["cpu_est_inference_energy_j_mean"] <= summary["cpu_est_inference_energy_j_max"]
    assert summary["cpu_est_inference_energy_j_std"] is not None  # three values: a spread
    assert summary["gpu_inference_energy_j_n"] == 0  # fake GPUs: no NVML, a null, not 0 J
    assert summary["gpu_inference_energy_j_mean"] is None
