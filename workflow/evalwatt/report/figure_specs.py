"""The report's figures by name, caption and place (``FigureSpec``), without drawing them.

The Snakemake rules declare each figure as an output, flagged for the report, while Snakemake
builds its DAG; the drawing (``evalwatt.report.figures``, matplotlib) is imported only by the
rules that draw. Kept apart so that a dry run never imports matplotlib (about 0.65 s of CPU,
benchmarks/plan_scale.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def safe_name(name: str) -> str:
    """A benchmark's name as it may stand in a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its name (the file stem), its caption file under
    workflow/report/, where the report lists it, and the one label that tells it apart."""

    name: str
    caption: str
    category: str
    subcategory: str
    label: tuple[str, str]


def figure_specs(benchmarks: Iterable[str], jobs: Iterable[tuple[str, str]]) -> list[FigureSpec]:
    """Every figure of a run whose table has these benchmarks, and the power timelines of
    these ``(kind, job_id)`` jobs; in the order ``make_figures`` returns them."""
    table = "Figures: energy and score"
    specs = [
        FigureSpec(
            f"score_vs_energy__{safe_name(b)}",
            "score_vs_energy.rst",
            table,
            "Score against energy, per benchmark",
            ("benchmark", b),
        )
        for b in sorted(set(benchmarks))
    ]
    drivers = "What energy follows"
    specs += [
        FigureSpec("energy_vs_time_tokens", "energy_vs_time_tokens.rst", table, drivers,
                   ("figure", "energy against generation time and output tokens")),
        FigureSpec("energy_vs_params", "energy_vs_params.rst", table, drivers,
                   ("figure", "energy (normalised per benchmark) against parameters")),
    ]  # fmt: skip
    paired = "Paired comparisons"
    specs += [
        FigureSpec(f"paired__{factor}", f"paired_{factor}.rst", table, paired, ("factor", words))
        for factor, words in (
            ("reasoning", "reasoning against not reasoning"),
            ("quantized", "quantized against 16-bit weights"),
            ("moe", "mixture of experts against dense"),
            ("temperature", "temperature 0.7 against 0"),
        )
    ]
    specs.append(
        FigureSpec("max_connections", "max_connections.rst", table, drivers,
                   ("figure", "max_connections against generation time and energy")),
    )  # fmt: skip
    specs += [
        FigureSpec(
            f"power_timeline__{kind}",
            "power_timeline.rst",
            "Figures: power per job",
            "Power over one job, phases shaded",
            ("job", f"{kind} {job_id}"),
        )
        for kind, job_id in jobs
    ]
    return specs
