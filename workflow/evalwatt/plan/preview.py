"""The cost preview as rows of text, for ``evalwatt plan`` and the report's plan page alike: the
two modes side by side, by phase, rounded here only (the plan file keeps the unrounded hours)."""

from __future__ import annotations

from evalwatt.config.section import shown
from evalwatt.contracts.plan import CostPreview, PhaseHours

Row = tuple[str, ...]
PHASES = tuple(PhaseHours.model_fields)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def phase_rows(cost: CostPreview) -> list[Row]:
    """Header, then one row per phase: GPU-hours (and wall hours) of each mode, then the
    totals, the share outside generation and judging generation, and the job counts."""
    modes = cost.modes
    header: Row = (
        "",
        *(f"{m.execution} GPU-h" for m in modes),
        *(f"{m.execution} h" for m in modes),
    )
    rows: list[Row] = [header]
    for phase in PHASES:
        gpu = (f"{getattr(m.gpu_hours, phase):.2f}" for m in modes)
        wall = (f"{getattr(m.job_hours, phase):.2f}" for m in modes)
        rows.append((phase, *gpu, *wall))
    rows.append(
        (
            "total",
            *(f"{m.gpu_hours_total:.2f}" for m in modes),
            *(f"{m.job_hours.total:.2f}" for m in modes),
        )
    )
    outside = (_share(m.overhead_share) for m in modes)
    wall_share = (
        _share(m.job_hours.outside_generation / m.job_hours.total if m.job_hours.total else None)
        for m in modes
    )
    rows.append(("outside generation", *outside, *wall_share))
    return rows


def job_rows(cost: CostPreview) -> list[Row]:
    """Header, then the Slurm jobs of each mode by kind, and their total."""
    rows: list[Row] = [("jobs", *(m.execution for m in cost.modes))]
    for kind in ("cell", "baseline", "model", "judge_pass"):
        rows.append((kind.replace("_", "-"), *(str(getattr(m.jobs, kind)) for m in cost.modes)))
    rows.append(("total", *(str(m.jobs.total) for m in cost.modes)))
    return rows


def rate_rows(cost: CostPreview) -> list[Row]:
    """Header, then each served model's output tokens/s by max_connections and its load."""
    rows: list[Row] = [("model", "tokens/s by max_connections", "load s", "from")]
    for rate in cost.rates:
        per_c = ", ".join(f"{c}: {t:.0f}" for c, t in rate.decode_tokens_per_s.items()) or "–"
        rows.append((rate.model, per_c, f"{rate.load_s:.0f}", rate.source))
    return rows


def _value(v: object) -> str:
    if v is None:
        return "null"
    return shown(v) if isinstance(v, float | int) else str(v)


def assumption_items(cost: CostPreview) -> list[tuple[str, str]]:
    return [(k, _value(v)) for k, v in cost.assumptions.model_dump().items()]


def assumption_text(cost: CostPreview) -> str:
    return ", ".join(f"{k}={v}" for k, v in assumption_items(cost))


def fixed_width(rows: list[Row], left: tuple[int, ...] = (0,)) -> list[str]:
    """Rows as aligned text columns: those in ``left`` left-aligned, the others right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: Row) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(cells)
        ).rstrip()

    return [line(r) for r in rows]


def markdown(rows: list[Row]) -> list[str]:
    """Rows as a Markdown table (a | inside a cell would break it: written as /)."""
    cells = [[c.replace("|", "/") for c in r] for r in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    return lines + ["| " + " | ".join(r) + " |" for r in cells[1:]]
