"""The audit: every source of a job side by side, recomputed from the raw files; a source that
disagrees with the NVML counter by more than the threshold is flagged.

Two job folders are built from the real H100 traces (tests/data/traces/h100-hf-llama1b) as
the sampler writes them (NVML Parquet, result.json), with the cluster's raw records beside them
as collection writes them: a CEEMS API reply consistent with the counter (PUE 1.2), and
Prometheus DCGM power series deliberately 25 % high. The test then recomputes every audited
number from those raw files with a few independent lines.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import urllib.parse
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evalwatt.base.layout import JobFiles
from evalwatt.config.load import from_dict
from evalwatt.contracts.accounting import Exchange
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.result import JobResult, ServerRun
from evalwatt.contracts.sampler import GpuDevice, SamplerStatus, TraceInfo
from evalwatt.contracts.spec import (
    JobSpec,
    ModelSpec,
    PadSpec,
    SamplerSpec,
    ServerSettings,
    ServerSpec,
)
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.report.audit import AUDIT_SCHEMA, AuditJob, audit_row, audit_table, sources_markdown
from evalwatt.sampling.sampler import SCHEMAS, TraceWriter

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "tests" / "data" / "traces" / "h100-hf-llama1b"
UUID = "GPU-8e2f3a61-4c1b-7d9e-a05f-3b6c2d1e9f70"
PUE = 1.2
PROM_BIAS = 1.25
CLUSTER = "jz-h100"
PROM = "http://127.0.0.1:9"


def _rows(name: str) -> list[tuple[float, float, float]]:
    with open(TRACES / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return sorted(
            (float(r["t_unix"]), float(r["energy_mj"]), float(r["power_mw"]))
            for r in csv.DictReader(fh)
        )


def _marks(name: str) -> dict[str, float]:
    from evalwatt.base.vocabulary import Mark

    marks = json.loads((TRACES / f"{name}.marks.json").read_text(encoding="utf-8"))
    return {k: v for k, v in marks.items() if k in set(Mark)}  # the harness's extra marks out


def _job(name: str, run_dir: Path, baseline_id: str | None = None) -> AuditJob:
    """The job ``name`` (also its kind) of cell c1, planned on one GPU."""
    return AuditJob(
        kind=name,
        job_id=name,
        cells=("c1",),
        run_dir=run_dir,
        baseline_id=baseline_id,
        gpus_planned=1,
    )


def settings() -> Settings:
    from conftest import _SMALL_CONFIG  # type: ignore[import-not-found]

    raw = copy.deepcopy(_SMALL_CONFIG)
    raw["cluster"]["accounting_window_s"] = 120
    raw["accounting"] = {
        "sources": ["ceems-api", "prometheus", "sacct"],
        "cluster_id": CLUSTER,
        "pue": PUE,
        "ceems": {"url": "http://127.0.0.1:8"},
        "prometheus": {"url": PROM, "series": "dcgm-power"},
    }
    return Settings.of(from_dict(raw, REPO))


def _job_dir(root: Path, name: str, slurm_id: str, rows: list | None = None) -> Path:
    """A finished job as the runtime leaves it: NVML trace, result.json (one H100)."""
    path = root / name
    path.mkdir(parents=True)
    rows = rows or _rows(name)
    marks = _marks(name)
    writer = TraceWriter(path / "trace-gpu.parquet", SCHEMAS["nvml"])
    writer.add(
        [
            {"t_unix": t, "device": "0", "gpu_uuid": UUID, "energy_mj": e, "power_mw": p}
            for t, e, p in rows
        ]
    )
    device = GpuDevice(
        visible_as="0",
        nvml_index=0,
        uuid=UUID,
        name="NVIDIA H100 80GB HBM3",
        pci_bus_id="00000000:18:00.0",
        memory_total_mib=81559,
        power_limit_mw=700000,
    )
    writer.close(
        {
            "source": "nvml",
            "domain": "gpu",
            "is_estimate": False,
            "interval_s": 0.1,
            "devices": [device.model_dump()],
        }
    )
    settings_ = ServerSettings(
        backend="vllm",
        gpus=1,
        cpus=24,
        quantization="bf16",
        context_tokens=None,
        server_args=(),
    )
    spec = JobSpec(
        kind="baseline",
        job_id=name,
        run="unit",
        run_dir=path,
        model=ModelSpec(name="m", served_name="m", backend="vllm", path="m", hf_id="o/m"),
        server=ServerSpec(argv=("server",), settings=settings_, baseline_id=name),
        ready_timeout_s=1.0,
        pad=PadSpec(accounting_window_s=120.0, margin_s=0.0),
        sampler=SamplerSpec(interval_s=0.1, cpu_watts_per_core=10.0),
    )
    trace = TraceInfo(
        file="trace-gpu.parquet",
        rows=len(rows),
        source="nvml",
        domain="gpu",
        is_estimate=False,
        interval_s=0.1,
        devices=(device,),
    )
    sampler = SamplerStatus(
        started_unix=rows[0][0],
        stopped_unix=rows[-1][0],
        interval_s=0.1,
        rounds=len(rows),
        late_rounds=0,
        max_late_s=0.0,
        median_late_s=0.0,
        traces={"nvml": trace},
        unavailable={},
    )
    result = JobResult(
        kind="baseline",
        job_id=name,
        run="unit",
        status="ok",
        problems=(),
        marks=marks,
        pad_requested_s=30.0,
        server=ServerRun(argv=("server",), port=1, exit_code=-15, log_file="server.log"),
        generation=None,
        scoring=None,
        sampler=sampler,
        host="jzxh042",
        scheduler_job_id=slurm_id,
        slurm={"SLURM_JOB_ID": slurm_id},
        cuda_visible_devices="0",
        versions={},
        spec=spec,
    )
    write_contract(path / "result.json", result)
    return path


def _ceems_record(s: Settings, facts: JobFacts, gpu_j: float):
    start, end = facts.span
    unit = {
        "cluster_id": CLUSTER,
        "uuid": facts.scheduler_job_id,
        "state": "COMPLETED",
        "started_at_ts": int(start * 1000),
        "ended_at_ts": int(end * 1000),
        "total_time_seconds": {"walltime": end - start},
        "total_gpu_energy_usage_kwh": {"total": gpu_j * PUE / 3.6e6},
        "total_cpu_energy_usage_kwh": {"total": 0.001},
    }
    body = json.dumps({"status": "success", "data": [unit]})
    x = Exchange(at_unix=end + 900, request="GET http://127.0.0.1:8/api/v1/units?uuid=x",
                 headers={}, status=200, elapsed_s=0.01, body=body, error=None)  # fmt: skip
    return facts.record("ceems-api", s, end + 900, [x], "ok", None, {"tries": 1})


def _prom_record(s: Settings, facts: JobFacts, rows):
    """DCGM power scraped every second, 25 % high (the deliberately inconsistent source)."""
    start, end = facts.span
    points, t, i = [], float(int(start - 60)), 0
    while t <= min(end + 60, rows[-1][0]):
        while i + 1 < len(rows) and rows[i + 1][0] <= t:
            i += 1
        points.append([t, f"{rows[i][2] / 1000 * PROM_BIAS:.3f}"])
        t += 1.0
    metric = {"__name__": "DCGM_FI_DEV_POWER_USAGE", "Hostname": facts.host, "UUID": UUID}
    body = json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": metric, "values": points}]}}
    )  # fmt: skip
    query = f'DCGM_FI_DEV_POWER_USAGE{{Hostname="{facts.host}",UUID=~"{UUID}"}}[400s]'
    params = urllib.parse.urlencode([("query", query), ("time", f"{end + 120:.3f}")])
    x = Exchange(at_unix=end + 130, request=f"GET {PROM}/api/v1/query?{params}", headers={},
                 status=200, elapsed_s=0.01, body=body, error=None)  # fmt: skip
    context = {"queries": {"dcgm-power": query}}
    return facts.record("prometheus", s, end + 130, [x], "ok", None, context)


def _sacct_record(s: Settings, facts: JobFacts):
    body = f"{facts.scheduler_job_id}|COMPLETED|2026-11-22T03:00:00|2026-11-22T03:03:00|180|jzxh042|24|cpu=24,gres/gpu=1|0\n"  # noqa: E501
    xs = [
        Exchange(at_unix=1.0, request="scontrol show config", headers={}, status=0,
                 elapsed_s=0.1, body="AcctGatherEnergyType = acct_gather_energy/none\n",
                 error=None),
        Exchange(at_unix=2.0, request=f"sacct -j {facts.scheduler_job_id} -X", headers={},
                 status=0, elapsed_s=0.1, body=body, error=None),
    ]  # fmt: skip
    from evalwatt.energy.cluster.sacct import FIELDS

    context = {
        "fields": list(FIELDS),
        "config": {"AcctGatherEnergyType": "acct_gather_energy/none"},
    }
    return facts.record("sacct", s, 2.0, xs, "ok", None, context)


def _nvml_joules(rows, start: float, end: float) -> float:
    """Counter (mJ) interpolated at both edges, independently of evalwatt."""

    def at(t: float) -> float:
        for (ta, ea, _), (tb, eb, _) in itertools.pairwise(rows):
            if ta <= t <= tb:
                return ea + (eb - ea) * (t - ta) / (tb - ta)
        edge = rows[0] if t < rows[0][0] else rows[-1]
        return edge[1] + edge[2] * (t - edge[0])

    return (at(end) - at(start)) / 1000


def _trapezoid(points: list[list], start: float, end: float) -> float:
    """Integral of the raw samples joined by straight lines, held flat past the last one."""
    ts = [float(t) for t, _ in points]
    ws = [float(w) for _, w in points]
    fine = 2000
    total = 0.0
    for k in range(fine):
        t = start + (end - start) * (k + 0.5) / fine  # midpoint rule on the linear joins
        j = max(i for i, x in enumerate(ts) if x <= t) if t >= ts[0] else 0
        w = (
            ws[j]
            if j + 1 >= len(ts)
            else ws[j] + (ws[j + 1] - ws[j]) * (t - ts[j]) / (ts[j + 1] - ts[j])
        )
        total += w * (end - start) / fine
    return total


@pytest.fixture
def run(tmp_path):
    s = settings()
    jobs = {}
    for name, slurm_id in (("cell", "9001"), ("baseline", "9002")):
        path = _job_dir(tmp_path, name, slurm_id)
        facts = JobFacts.of(path)
        files = JobFiles(path)
        rows = _rows(name)
        write_contract(
            files.accounting("ceems-api"),
            _ceems_record(s, facts, _nvml_joules(rows, *facts.span)),
        )
        write_contract(files.accounting("prometheus"), _prom_record(s, facts, rows))
        write_contract(files.accounting("sacct"), _sacct_record(s, facts))
        jobs[name] = path
    return s, jobs


def test_the_inconsistent_source_is_flagged_and_the_consistent_one_is_not(run):
    s, jobs = run
    job = _job("cell", jobs["cell"], "baseline")
    row = audit_row(s, "unit", job)
    assert row["flagged"] is True
    assert abs(row["ceems_gap_pct"]) < 0.01  # consistent by construction
    assert row["prometheus_gap_pct"] > 10  # ~ +25 %
    assert "prometheus: +" in row["flags"] and "ceems-api" not in row["flags"]
    md = "\n".join(sources_markdown([row], s.gap_flag_pct))
    assert f"**{row['prometheus_gap_pct']:+.1f} %**" in md
    assert "### Flags" in md and "prometheus: +" in md


def test_every_audited_number_is_recomputed_from_the_raw_files(run):
    s, jobs = run
    for name, path in jobs.items():
        row = audit_row(s, "unit", _job(name, path))
        marks = json.loads((path / "result.json").read_text())["marks"]
        start, end = marks["job_start"], marks["job_end"]
        rows = _rows(name)
        nvml = _nvml_joules(rows, start, end)
        assert row["nvml_job_j"] == pytest.approx(nvml, rel=1e-9)
        ceems = json.loads((path / "accounting" / "ceems-api.json").read_text())
        unit = json.loads(ceems["exchanges"][-1]["body"])["data"][0]
        kwh = unit["total_gpu_energy_usage_kwh"]["total"]
        assert row["ceems_reported_j"] == pytest.approx(kwh * 3.6e6, rel=1e-12)
        assert row["ceems_job_j"] == pytest.approx(kwh * 3.6e6 / PUE, rel=1e-12)
        assert row["ceems_host_j"] == pytest.approx(0.001 * 3.6e6)
        assert row["ceems_gap_pct"] == pytest.approx(100 * (kwh * 3.6e6 / PUE - nvml) / nvml)
        prom = json.loads((path / "accounting" / "prometheus.json").read_text())
        points = json.loads(prom["exchanges"][-1]["body"])["data"]["result"][0]["values"]
        expected = _trapezoid(points, start, end)
        assert row["prometheus_job_j"] == pytest.approx(expected, rel=1e-4)
        assert row["prometheus_gap_pct"] == pytest.approx(
            100 * (row["prometheus_job_j"] - nvml) / nvml
        )
        assert row["prometheus_pad_j"] == pytest.approx(
            _trapezoid(points, marks["pad_start"], marks["pad_end"]), rel=1e-4
        )
        # the rest of the row, from result.json and the raw sacct output
        assert row["scheduler_job_id"] == ("9001" if name == "cell" else "9002")
        assert (row["gpus_allocated"], row["gpus_measured"], row["gpu_uuids"]) == (1, 1, UUID)
        assert row["elapsed_s"] == pytest.approx(end - start)
        assert row["under_cutoff"] is (end - start < 120)
        assert row["pad_s"] == pytest.approx(marks["pad_end"] - marks["pad_start"])
        assert row["counter_resets"] == 0 and row["sampling_gaps"] == 0
        assert row["sacct_reported_j"] is None and "no energy plugin" in row["sacct_null_reason"]
        assert row["sacct_nodes"] == "jzxh042" and row["slurm_elapsed_s"] == 180
        assert row["other_processes"] is None and "not record" in row["other_processes_null_reason"]
        assert row["pue"] == PUE


def test_the_baseline_under_the_cutoff_is_flagged_with_the_padding_hint(run):
    s, jobs = run
    row = audit_row(s, "unit", _job("baseline", jobs["baseline"]))
    assert row["under_cutoff"] is True  # 75 s < 120 s
    assert "cluster.accounting_window_s" in row["flags"]


def test_a_missing_raw_file_is_an_error_not_a_zero(run):
    s, jobs = run
    (jobs["cell"] / "accounting" / "ceems-api.json").unlink()
    row = audit_row(s, "unit", _job("cell", jobs["cell"]))
    assert row["ceems_status"] == "error" and row["ceems_job_j"] is None
    assert "not collected" in row["ceems_null_reason"]
    assert "ceems-api: not collected" in row["flags"]


def test_a_counter_reset_is_counted_and_flagged(run, tmp_path):
    s, _ = run
    rows = _rows("cell")
    half = len(rows) // 2
    rows = rows[:half] + [(t, e - rows[half][1] + 1000, p) for t, e, p in rows[half:]]
    path = _job_dir(tmp_path / "reset", "cell", "9003", rows)
    row = audit_row(s, "unit", _job("cell", path))
    assert row["counter_resets"] == 1, row["nvml_null_reason"]
    assert row["nvml_job_j"] is None and "went backwards" in row["nvml_null_reason"]
    assert "counter never goes backwards" in row["flags"]
    assert "not collected" in row["flags"]  # no raw files of the cluster in that folder


def test_the_parquet_has_a_documented_column_for_every_field(run, tmp_path):
    s, jobs = run
    rows = [audit_row(s, "unit", _job(n, p)) for n, p in jobs.items()]
    table = audit_table(rows)
    pq.write_table(table, tmp_path / "audit.parquet")
    back = pq.read_table(tmp_path / "audit.parquet")
    assert back.schema.equals(AUDIT_SCHEMA, check_metadata=False)
    assert back.num_rows == 2
    assert all(f.metadata and f.metadata.get(b"doc") for f in AUDIT_SCHEMA)
    assert set(rows[0]) == set(AUDIT_SCHEMA.names)
