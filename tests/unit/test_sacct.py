"""The sacct source: ConsumedEnergyRaw of a real job on the live Slurm (tests/cluster/slurm-up.sh),
which has no energy plugin: a null with its reason, never 0. And the reading rules on kept
outputs: a plugin's joules, NO_VAL, a node shared with another job.

The live test needs the single-node Slurm of tests/cluster/slurm-up.sh (CI starts it, as root);
skipped only when not root, not in CI, and no Slurm answers.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from evalwatt.config.load import from_dict
from evalwatt.contracts.accounting import Exchange
from evalwatt.energy.cluster import sacct
from evalwatt.energy.cluster.collect import collect_source
from evalwatt.energy.cluster.sacct import SacctJob, SacctSource
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.energy.sources import Unavailable

REPO = Path(__file__).resolve().parents[2]
SLURM_UP = REPO / "tests" / "cluster" / "slurm-up.sh"


def settings(**accounting) -> Settings:
    from conftest import _SMALL_CONFIG  # type: ignore[import-not-found]

    raw = copy.deepcopy(_SMALL_CONFIG)
    raw["accounting"] = {
        "sources": ["sacct"],
        "timeout_s": 30,
        "deadline_s": 120,
        "backoff_initial_s": 1,
        "backoff_max_s": 5,
        **accounting,
    }
    return Settings.of(from_dict(raw, REPO))


def _slurm() -> None:
    """The live Slurm, started when needed (idempotent), or a skip where that is impossible."""
    root, ci = os.geteuid() == 0, os.environ.get("CI") == "true"
    answers = (
        shutil.which("sinfo")
        and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30, check=False).returncode
        == 0
    )
    if not answers and not root and not ci:
        pytest.skip("no Slurm here, and starting one needs root (CI starts it)")
    if root or ci:
        done = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True,
                              timeout=900, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_consumed_energy_without_a_plugin_is_null_with_the_reason_never_zero(tmp_path):
    _slurm()
    done = subprocess.run(
        ["sbatch", "--parsable", "-A", "evalwatt", "-o", str(tmp_path / "slurm-%j.out"),
         "--wrap", "sleep 2"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    job_id = done.stdout.strip().split(";")[0]
    now = time.time()
    facts = JobFacts(tmp_path, job_id, "vm", {"job_start": now, "job_end": now + 2}, None, 0)
    record = collect_source("sacct", settings(), facts)
    assert record.status == "ok", record.detail
    assert record.context["config"]["AcctGatherEnergyType"] == "acct_gather_energy/none"
    row = SacctJob.of(record)
    assert row.energy_j is None  # what Slurm printed (0 or nothing) is not a measurement
    assert "no energy plugin" in (row.null_reason or "")
    assert row.elapsed_s is not None and row.elapsed_s >= 1
    with pytest.raises(Unavailable, match="no energy plugin"):
        SacctSource(row).job()
    # every command kept, with its output and exit code
    commands = [x.request for x in record.exchanges]
    assert any(c.startswith("scontrol show config") for c in commands)
    assert any(f"-j {job_id}" in c for c in commands)
    assert row.exclusive in (True, False)  # root sees every job: the check could run


# --- reading kept outputs ---------------------------------------------------------------------


def _record(tmp_path, energy: str, plugin: str, others: str = "", private: str = "none"):
    s = settings()
    facts = JobFacts(tmp_path, "77", "n1", {"job_start": 0.0, "job_end": 1.0}, None, 1)
    job_row = f"77|COMPLETED|2026-11-22T03:00:00|2026-11-22T03:10:00|600|n1|8|cpu=8|{energy}\n"
    exchanges = [
        Exchange(at_unix=1.0, request="scontrol show config", headers={}, status=0,
                 elapsed_s=0.1, body="", error=None),
        Exchange(at_unix=2.0, request="sacct -j 77 -X -n -P", headers={}, status=0,
                 elapsed_s=0.1, body=job_row, error=None),
        Exchange(at_unix=3.0, request="others", headers={}, status=0, elapsed_s=0.1,
                 body=others, error=None),
    ]  # fmt: skip
    context = {
        "fields": list(sacct.FIELDS),
        "config": {
            "AcctGatherEnergyType": plugin,
            "PrivateData": private,
            "SlurmUser": "slurm(64030)",
        },
        "others_query": "others",
        "others_fields": ["JobIDRaw", "Start", "End", "NodeList", "State"],
        "euid": 1000,
        "user": "alice",
    }  # fmt: skip
    return facts.record("sacct", s, 0.0, exchanges, "ok", None, context)


def test_a_plugin_reading_is_kept_in_joules(tmp_path):
    row = SacctJob.of(_record(tmp_path, "123456", "acct_gather_energy/ipmi"))
    assert row.energy_j == 123456.0 and row.null_reason is None
    assert SacctSource(row).job().energy_j == 123456.0
    assert row.exclusive is True


@pytest.mark.parametrize(
    ("energy", "plugin", "why"),
    [
        ("0", "acct_gather_energy/none", "no energy plugin"),
        ("", "acct_gather_energy/none", "no energy plugin"),
        ("0", "acct_gather_energy/ipmi", "took no reading"),
        ("18446744073709551614", "acct_gather_energy/ipmi", "no value"),
        ("", "acct_gather_energy/rapl", "empty"),
    ],
)
def test_nothing_measured_is_null_never_zero(tmp_path, energy, plugin, why):
    row = SacctJob.of(_record(tmp_path, energy, plugin))
    assert row.energy_j is None and why in (row.null_reason or "")


def test_a_shared_node_is_flagged(tmp_path):
    others = "77|2026-11-22T03:00:00|2026-11-22T03:10:00|n1|COMPLETED\n" \
             "78|2026-11-22T03:05:00|2026-11-22T03:20:00|n1|COMPLETED\n"  # fmt: skip
    row = SacctJob.of(_record(tmp_path, "5000", "acct_gather_energy/ipmi", others))
    assert row.exclusive is False and "78" in row.exclusive_detail


def test_hidden_jobs_make_exclusivity_unknown(tmp_path):
    row = SacctJob.of(_record(tmp_path, "5000", "acct_gather_energy/ipmi", "", "jobs,usage"))
    assert row.exclusive is None and "PrivateData" in row.exclusive_detail


def test_gpu_plugin_on_nvidia_is_noted(tmp_path):
    row = SacctJob.of(_record(tmp_path, "5000", "acct_gather_energy/gpu"))
    assert any("AMD GPUs only" in n for n in row.notes)
