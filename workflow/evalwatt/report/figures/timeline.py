"""Per job: power over time with the job's phases shaded, from its trace and timeline."""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.patches import Patch

from evalwatt.energy.trace import Series, TraceError
from evalwatt.energy.trace_files import COUNTS, read_timeline, read_trace
from evalwatt.report.figures._common import FigureResult, new_figure, save

# The phase that starts at each mark, and its colour. Marks not listed (cold_idle_end,
# ready_idle_end, post_idle_end, worker_exited) do not start a phase of their own.
PHASES: dict[str, tuple[str, str]] = {
    "job_start": ("start-up", "#d9d9d9"),
    "load_start": ("load", "#E69F00"),
    "ready": ("loaded, idle", "#F0E442"),
    "warm_up_start": ("warm-up wave", "#999933"),
    "warm_up_end": ("loaded, idle", "#F0E442"),
    "inference_start": ("Inspect", "#B3DE69"),
    "generation_start": ("generation", "#009E73"),
    "generation_end": ("Inspect", "#B3DE69"),
    "inference_end": ("after the evaluation", "#bdbdbd"),
    "judging_start": ("judging", "#56B4E9"),
    "judging_end": ("after judging", "#bdbdbd"),
    "exit": ("shutdown", "#CC79A7"),
    "scoring_start": ("scoring", "#0072B2"),
    "scoring_end": ("after scoring", "#bdbdbd"),
    "pad_start": ("padding", "#D55E00"),
    "pad_end": ("after padding", "#d9d9d9"),
}
HARNESS_PHASES = {
    "inference_start": PHASES["generation_start"],
    "inference_end": ("after generation", "#bdbdbd"),
}
END = "job_end"


def phases(marks: dict[str, float]) -> list[tuple[str, str, float, float]]:
    """(label, colour, start, end) of each phase: the span from a phase's mark to the next
    mark that starts a phase (or job_end), in time order; empty spans are dropped."""
    # a harness's timeline without generation marks: its inference window is its generation
    table = PHASES if "generation_start" in marks else {**PHASES, **HARNESS_PHASES}
    starts = sorted((t, m) for m, t in marks.items() if m in table or m == END)
    out = []
    for (t0, m0), (t1, _) in itertools.pairwise(starts):
        if m0 in table and t1 > t0:
            label, colour = table[m0]
            out.append((label, colour, t0, t1))
    return out


def _power_w(series: Series) -> tuple[list[float], list[float], bool]:
    """Sampled power in W, or the counter's slope between samples when power was not
    sampled (returned flag True)."""
    if all(p is not None for p in series.power_mw):
        return series.t_unix, [p / 1000.0 for p in series.power_mw if p is not None], False
    ts, ws = [], []
    for (t0, e0), (t1, e1) in itertools.pairwise(zip(series.t_unix, series.energy_mj, strict=True)):
        if t1 > t0 and e1 >= e0:
            ts.append((t0 + t1) / 2)
            ws.append((e1 - e0) / (t1 - t0) / 1000.0)
    return ts, ws, True


def power_timeline(
    trace_path: Path | str,
    timeline_path: Path | str,
    out_dir: Path,
    *,
    name: str = "power_timeline",
    title: str | None = None,
) -> FigureResult:
    """Power of every device of one job over time, its phases shaded, with the energy of each
    phase (counter difference) in the legend. A bad trace or timeline raises TraceError."""
    trace = read_trace(trace_path)
    marks = {k: v for k, v in read_timeline(timeline_path).items() if k not in COUNTS}
    what = (
        f"{trace.domain.upper()} power ({trace.source}{', ESTIMATE' if trace.is_estimate else ''})"
    )
    caption = (
        f"One job ({Path(trace_path).name}, marks from {Path(timeline_path).name}): {what} in "
        "W against seconds since the job's first mark, one line per device; the shaded bands "
        "are the job's phases between its timeline marks (load, idle, generation, shutdown, "
        "padding...), and the legend gives each phase's duration and energy (counter "
        "difference over the phase, all devices). The share of generation in the whole is "
        "what the phase-resolved energy keeps and the whole-job method subtracts around."
    )
    columns = ("t_unix", "power_mw", "energy_mj", *sorted(marks))
    spans = phases(marks)
    if not spans:
        return FigureResult(name, caption, columns, skipped=f"{timeline_path}: no phase marks")
    t0 = min(t for _, _, t, _ in spans)
    fig = new_figure(10, 4.2)
    ax = fig.add_subplot()
    handles, seen = [], set()
    totals: dict[str, tuple[float, float | None]] = {}
    for label, _, start, end in spans:
        try:
            joules: float | None = trace.window(start, end).energy_j
        except TraceError:
            joules = None
        dur, j = totals.get(label, (0.0, 0.0))
        totals[label] = (dur + end - start, None if joules is None or j is None else j + joules)
    for label, colour, start, end in spans:
        ax.axvspan(start - t0, end - t0, color=colour, alpha=0.35, lw=0, zorder=1)
        if label not in seen:
            seen.add(label)
            dur, joules = totals[label]
            energy = "energy n/a" if joules is None else f"{joules / 1000:.2f} kJ"
            handles.append(Patch(color=colour, alpha=0.5, label=f"{label}: {dur:.0f} s, {energy}"))
    derived = False
    for k, device in enumerate(trace.devices):
        ts, ws, slope = _power_w(trace.series[device])
        derived |= slope
        ax.plot(
            [t - t0 for t in ts],
            ws,
            lw=0.8,
            color=("black", "#0072B2", "#D55E00", "#CC79A7")[k % 4],
            label=f"device {device}",
            zorder=3,
        )
    ax.set_xlabel(f"seconds since {min(marks, key=lambda m: marks[m])}")
    ax.set_ylabel("power, W" + (" (from the counter's slope)" if derived else ""))
    ax.set_ylim(bottom=0)
    ax.set_xlim(
        min(0.0, trace.series[trace.devices[0]].t_unix[0] - t0), max(end for *_, end in spans) - t0
    )
    ax.grid(True, alpha=0.25)
    ax.set_title(title or f"{what}: {Path(trace_path).name}", fontsize=10)
    lines, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles=handles + lines,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        frameon=False,
    )
    if derived:
        caption += " Power was not sampled: it is the energy counter's slope between samples."
    return FigureResult(name, caption, columns, files=save(fig, out_dir, name))
