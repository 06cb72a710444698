"""Packed jobs built by hand from the real H100 trace (tests/data/traces/h100-hf-llama1b), as
the job runtime leaves them: a model job (per-model execution) with its NVML trace in parts
and its own result, two cells written by it (``packed_in``), and, for comparison, the same
cells as per-cell jobs over the same samples and marks, with their load-only baseline; a judge
pass with one judged cell.

The model job's timeline is the real cell job's, with the windows of a model job laid on it:
its loaded idle after ``ready`` is the reference idle window, cell A's evaluation is the real
inference window (814.5..889.8, ~75 s of generation) and cell B's a short window in the idle
after it. ``CELL_A``/``CELL_B`` give the offsets from the trace's own marks.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from evalwatt.base.layout import trace_part_name
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.result import (
    CooldownRecord,
    EvalSummary,
    GenerationWindow,
    JobResult,
    PackedOutcome,
    ServerRun,
    SteadyWindow,
)
from evalwatt.contracts.sampler import GpuDevice, SamplerStatus, TraceInfo
from evalwatt.contracts.spec import (
    CooldownSpec,
    EvaluationSpec,
    JobSpec,
    JudgedCell,
    JudgingSpec,
    ModelSpec,
    PackedCell,
    PackSpec,
    PadSpec,
    SamplerSpec,
    ServerSettings,
    ServerSpec,
)
from evalwatt.sampling.sampler import SCHEMAS, TraceWriter

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "tests" / "data" / "traces" / "h100-hf-llama1b"
UUID = "GPU-8e2f3a61-4c1b-7d9e-a05f-3b6c2d1e9f70"
SLURM_ID = "4242"
Row = tuple[float, float, float]


def rows_of(name: str) -> list[Row]:
    """(t_unix, energy_mj, power_mw) of one of the real traces, sorted."""
    with open(TRACES / f"{name}.csv", encoding="utf-8", newline="") as fh:
        return sorted(
            (float(r["t_unix"]), float(r["energy_mj"]), float(r["power_mw"]))
            for r in csv.DictReader(fh)
        )


def real_marks(name: str) -> dict[str, float]:
    return json.loads((TRACES / f"{name}.marks.json").read_text(encoding="utf-8"))


_REAL = real_marks("cell")
T_READY = _REAL["ready"]
T_INF0, T_INF1 = _REAL["inference_start"], _REAL["inference_end"]
# The model job's marks (the real job's, reference idle and pad included)
MODEL_MARKS = {
    "job_start": _REAL["job_start"],
    "load_start": _REAL["load_start"],
    "ready": T_READY,
    "reference_idle_start": T_READY + 0.5,
    "reference_idle_end": T_READY + 7.5,
    "exit": _REAL["worker_exited"],
    "pad_start": _REAL["pad_start"],
    "pad_end": _REAL["pad_end"],
    "job_end": _REAL["job_end"],
}
SHARED = ("job_start", "load_start", "ready", "reference_idle_start", "reference_idle_end")
# Each cell's own marks
CELL_A = {
    "cooldown_start": T_READY + 7.5,
    "cooldown_end": T_INF0,
    "inference_start": T_INF0,
    "generation_start": T_INF0 + 0.2,
    "steady_start": T_INF0 + 5.0,
    "steady_end": T_INF1 - 5.0,
    "generation_end": T_INF1 - 0.2,
    "inference_end": T_INF1,
}
CELL_B = {
    "cooldown_start": T_INF1 + 0.1,
    "cooldown_end": T_INF1 + 0.6,
    "inference_start": T_INF1 + 0.6,
    "generation_start": T_INF1 + 0.9,
    "generation_end": T_INF1 + 3.6,
    "inference_end": T_INF1 + 4.0,
}
# The sampler closes a part after each cell: parts end after these times
PART_ENDS = (T_INF1 + 0.05, T_INF1 + 4.3)
STEADY_TOKENS = 60000.0


def device() -> GpuDevice:
    return GpuDevice(
        visible_as="0",
        nvml_index=0,
        uuid=UUID,
        name="NVIDIA H100 80GB HBM3",
        pci_bus_id="00000000:18:00.0",
        memory_total_mib=81559,
        power_limit_mw=700000,
    )


def write_parts(folder: Path, rows: list[Row], ends: tuple[float, ...] = ()) -> TraceInfo:
    """The NVML trace in parts cut after each of ``ends`` (part 0 alone without them)."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = [*ends, float("inf")]
    names = []
    lo = float("-inf")
    for part, hi in enumerate(cuts):
        name = trace_part_name("nvml", part)
        writer = TraceWriter(folder / name, SCHEMAS["nvml"])
        writer.add(
            [
                {"t_unix": t, "device": "0", "gpu_uuid": UUID, "energy_mj": e, "power_mw": p}
                for t, e, p in rows
                if lo < t <= hi
            ]
        )
        meta = {"source": "nvml", "domain": "gpu", "is_estimate": False, "interval_s": 0.1}
        writer.close({**meta, "devices": [device().model_dump()]})
        names.append(name)
        lo = hi
    return TraceInfo(
        file=names[0],
        parts=tuple(names) if len(names) > 1 else (),
        rows=len(rows),
        source="nvml",
        domain="gpu",
        is_estimate=False,
        interval_s=0.1,
        devices=(device(),),
    )


def sampler(rows: list[Row], info: TraceInfo) -> SamplerStatus:
    return SamplerStatus(
        started_unix=rows[0][0],
        stopped_unix=rows[-1][0],
        interval_s=0.1,
        rounds=len(rows),
        late_rounds=0,
        max_late_s=0.0,
        median_late_s=0.0,
        traces={"nvml": info},
        unavailable={
            "rapl": "no RAPL package zone under /sys/class/powercap",
            "cpu-model": "not sampled in this test",
        },
    )


def _settings() -> ServerSettings:
    return ServerSettings(
        backend="vllm", gpus=1, cpus=24, quantization="bf16", context_tokens=None, server_args=()
    )


def evaluation(max_connections: int = 10) -> EvaluationSpec:
    return EvaluationSpec(
        benchmark="b",
        task="t",
        task_args={},
        limit=None,
        max_connections=max_connections,
        temperature=0.0,
        top_p=None,
        top_k=None,
        max_tokens=None,
        score_in_job=True,
    )


def spec(kind: str, job_id: str, run_dir: Path, **work: object) -> JobSpec:
    return JobSpec(
        kind=kind,  # type: ignore[arg-type]
        job_id=job_id,
        run="unit",
        run_dir=run_dir,
        model=ModelSpec(name="m", served_name="m", backend="vllm", path="m", hf_id="o/m"),
        server=ServerSpec(argv=("server",), settings=_settings(), baseline_id="m__base"),
        ready_timeout_s=1.0,
        pad=PadSpec(accounting_window_s=120.0, margin_s=0.0),
        sampler=SamplerSpec(interval_s=0.1, cpu_watts_per_core=10.0),
        **work,  # type: ignore[arg-type]
    )


def _summary(log: Path) -> EvalSummary:
    return EvalSummary(
        log=log, status="success", task="t", samples_total=100, samples_completed=100,
        score=0.5, score_stderr=0.05, score_metric="accuracy", scorer="s",
        score_null_reason=None, started_at=None, completed_at=None, input_tokens=1000,
        output_tokens=69120,
    )  # fmt: skip


def _window(marks: dict[str, float], within: tuple[str, str]) -> GenerationWindow:
    return GenerationWindow(
        log=Path("x.eval"), within=within, start=marks.get("generation_start"),  # type: ignore[arg-type]
        end=marks.get("generation_end"), model_calls=100, samples=100, ended_by_sample=0,
        null_reason=None,
    )  # fmt: skip


def result(
    kind: str,
    job_id: str,
    job_spec: JobSpec,
    marks: dict[str, float],
    *,
    sampler_status: SamplerStatus | None,
    packed_in: Path | None = None,
    **extra: object,
) -> JobResult:
    return JobResult(
        kind=kind,  # type: ignore[arg-type]
        job_id=job_id,
        run="unit",
        status="ok",
        problems=(),
        marks=marks,  # type: ignore[arg-type]
        pad_requested_s=30.0,
        server=ServerRun(
            argv=("server",),
            port=1,
            exit_code=None if packed_in else -15,
            log_file="server.log",
        ),
        generation=extra.pop("generation", None),  # type: ignore[arg-type]
        scoring=None,
        sampler=sampler_status,
        packed_in=packed_in,
        host="jzxh042",
        scheduler_job_id=SLURM_ID,
        slurm={"SLURM_JOB_ID": SLURM_ID},
        cuda_visible_devices="0",
        versions={},
        spec=job_spec,
        **extra,  # type: ignore[arg-type]
    )


def steady(marks: dict[str, float], tokens: float | None, why: str | None) -> SteadyWindow:
    return SteadyWindow(
        start=marks.get("steady_start"),
        end=marks.get("steady_end"),
        in_flight=10,
        requests=100 if why is None else 3,
        output_tokens=tokens,
        null_reason=why,
    )


STEADY_B_WHY = "3 requests, fewer than 2 x max_connections (10): no steady state"


def cell_extra(own: dict[str, float]) -> dict[str, object]:
    """What a cell's result carries besides its marks: its steady window, its generation, and
    (packed) its cooldown and temperatures."""
    a = "steady_start" in own
    return {
        "steady_window": steady(own, STEADY_TOKENS if a else None, None if a else STEADY_B_WHY),
        "generation_window": _window(own, ("inference_start", "inference_end")),
        "generation": _summary(Path("x.eval")),
        "temperatures_c": {"inference_start": (41.0,)},
    }


@dataclass(frozen=True)
class Run:
    """The folders of one run of the two cells, per-model and per-cell."""

    model: Path
    cells: dict[str, Path]
    """Cell id -> its folder (its packed result)."""
    alone: dict[str, Path]
    """Cell id -> the same cell as a per-cell job (its own trace)."""
    baseline: Path


def model_job(root: Path, rows: list[Row] | None = None) -> Run:
    """The model job of cells a and b, its cells' packed results, and the same cells as
    per-cell jobs with a baseline, from the real H100 trace."""
    rows = rows or rows_of("cell")
    model_dir = root / "models" / "m__base__0123abcd"
    info = write_parts(model_dir, rows, PART_ENDS)
    status = sampler(rows, info)
    (model_dir / "sampler.json").write_text(status.model_dump_json(), encoding="utf-8")
    cells, alone, outcomes = {}, {}, []
    packed: list[PackedCell] = []
    for cell_id, own in (("a", CELL_A), ("b", CELL_B)):
        folder = root / "cells" / cell_id
        folder.mkdir(parents=True)
        packed.append(PackedCell(cell_id=cell_id, run_dir=folder, evaluation=evaluation()))
        cooldown = CooldownRecord(
            started=own["cooldown_start"], ended=own["cooldown_end"], ended_by="power",
            reference_power_w=(120.0,), power_w_at_end=(125.0,), max_s=60.0, margin_w=10.0,
        )  # fmt: skip
        marks = {**{m: MODEL_MARKS[m] for m in SHARED}, **own}
        cell_spec = spec("cell", cell_id, folder, evaluation=evaluation())
        packed_result = result(
            "cell", cell_id, cell_spec, marks, sampler_status=None, packed_in=model_dir,
            cooldown=cooldown, **cell_extra(own),
        )  # fmt: skip
        write_contract(folder / "result.json", packed_result)
        cells[cell_id] = folder
        outcomes.append(
            PackedOutcome(cell_id=cell_id, status="ok", result=folder / "result.json", error=None)
        )
        alone[cell_id] = _alone(root / "alone" / cell_id, rows, cell_id, own)
    pack = PackSpec(
        reference_idle_s=7.0, cooldown=CooldownSpec(max_s=60.0, margin_w=10.0), cells=tuple(packed)
    )
    model_spec = spec("model", model_dir.name, model_dir, pack=pack)
    own_result = result(
        "model", model_dir.name, model_spec, MODEL_MARKS, sampler_status=status,
        cells=tuple(outcomes), temperatures_c={"reference_idle_start": (38.0,)},
    )  # fmt: skip
    write_contract(model_dir / "result.json", own_result)
    baseline = _baseline(root / "baselines" / "m__base")
    return Run(model_dir, cells, alone, baseline)


def _alone(folder: Path, rows: list[Row], cell_id: str, own: dict[str, float]) -> Path:
    """The same cell as a per-cell job over the same samples: one trace file, its own job
    marks (the model job's, without the reference idle and the other cell)."""
    info = write_parts(folder, rows)
    marks = {
        **{m: MODEL_MARKS[m] for m in ("job_start", "load_start", "ready")},
        **{m: t for m, t in own.items() if not m.startswith("cooldown")},
        **{m: MODEL_MARKS[m] for m in ("exit", "pad_start", "pad_end", "job_end")},
    }
    cell_spec = spec("cell", cell_id, folder, evaluation=evaluation())
    extra = cell_extra(own)
    job = result("cell", cell_id, cell_spec, marks, sampler_status=sampler(rows, info), **extra)
    write_contract(folder / "result.json", job)
    return folder


def _baseline(folder: Path) -> Path:
    rows = rows_of("baseline")
    info = write_parts(folder, rows)
    marks = {k: v for k, v in real_marks("baseline").items() if k in MODEL_MARKS}
    job_spec = spec("baseline", folder.name, folder)
    write_contract(
        folder / "result.json",
        result("baseline", folder.name, job_spec, marks, sampler_status=sampler(rows, info)),
    )
    return folder


def judge_pass(root: Path, cell_id: str, cell_result: Path) -> tuple[Path, Path]:
    """A judge pass (its trace: the real baseline job's samples) that scored one cell, and
    the cell's judged result (``judges/<cell>/``) it wrote."""
    rows = rows_of("baseline")
    real = real_marks("baseline")
    pass_dir = root / "judge-passes" / "judge__89abcdef"
    info = write_parts(pass_dir, rows, (real["ready"] + 8.0,))
    status = sampler(rows, info)
    (pass_dir / "sampler.json").write_text(status.model_dump_json(), encoding="utf-8")
    judged = root / "judges" / cell_id
    judged.mkdir(parents=True)
    own = {
        "judging_start": real["ready"] + 1.0,
        "generation_start": real["ready"] + 2.0,
        "generation_end": real["ready"] + 6.0,
        "judging_end": real["ready"] + 7.0,
    }
    base = {m: real[m] for m in ("job_start", "load_start", "ready")}
    judging = JudgingSpec(
        temperature=0.0,
        max_connections=4,
        max_tokens=None,
        cells=(JudgedCell(cell_id=cell_id, cell_result=cell_result, run_dir=judged),),
    )
    pass_spec = spec("judge-pass", pass_dir.name, pass_dir, judging=judging)
    judged_result = result(
        "judge", cell_id, pass_spec, {**base, **own}, sampler_status=None, packed_in=pass_dir,
        generation_window=_window(own, ("judging_start", "judging_end")),
    )  # fmt: skip
    write_contract(judged / "result.json", judged_result)
    outcome = PackedOutcome(cell_id=cell_id, status="ok", result=judged / "result.json", error=None)
    pass_marks = {**base, **{m: real[m] for m in ("exit", "pad_start", "pad_end", "job_end")}}
    write_contract(
        pass_dir / "result.json",
        result("judge-pass", pass_dir.name, pass_spec, pass_marks, sampler_status=status,
               cells=(outcome,)),
    )  # fmt: skip
    return pass_dir, judged
