"""The model's table as text, like the study's annex 4: the terms, the level of a 30B model,
the reasoning effect per benchmark, then the notes on the data and the warnings on the fit."""

from __future__ import annotations

import math

from evalwatt.report.glmm.data import UNIT
from evalwatt.report.glmm.diagnostics import R_HAT_LIMIT
from evalwatt.report.glmm.fit import Fit
from evalwatt.report.glmm.terms import Term, reasoning_by_benchmark


def _fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.0f}%"


def _line(t: Term) -> str:
    effect_hdi = (
        f"[{_fmt_pct(t.effect_hdi_low_pct)}, {_fmt_pct(t.effect_hdi_high_pct)}]"
        if t.effect_pct is not None
        else ""
    )
    return (
        f"{t.term:28} {t.mean:7.2f} {t.sd:6.2f}  [{t.hdi_low:7.2f}, {t.hdi_high:7.2f}]  "
        f"{_fmt_pct(t.effect_pct):>7}  {effect_hdi:>17}  "
        f"{'' if t.r_hat is None else f'{t.r_hat:.3f}':>5} "
        f"{'' if t.ess is None else f'{t.ess:.0f}':>6}"
    )


def _warnings(fit_: Fit, terms: list[Term]) -> list[str]:
    """What makes the fit's numbers doubtful: divergences, chains that disagree."""
    warnings = []
    if fit_.divergences:
        warnings.append(f"{fit_.divergences} divergent transitions: read the HDIs with care")
    bad = [t.term for t in terms if t.r_hat is not None and t.r_hat > R_HAT_LIMIT]
    if bad:
        warnings.append(
            f"r_hat above {R_HAT_LIMIT} for {', '.join(bad)}: the chains disagree; "
            "rerun with more --draws"
        )
    return warnings


def format_report(fit_: Fit, terms: list[Term]) -> str:
    """The model's table as text, like the study's annex 4."""
    d, run = fit_.data, fit_.sampling
    lines = [
        "Gamma GLMM of energy per question per billion parameters (the study's annex 4)",
        "log(E/P) = (α + δ_benchmark) + β0·quantized + (β1 + γ_benchmark)·reasoning + β2·moe",
        f"E = {d.energy_column} (Wh per question) x 1000, P = total_params_b: E/P in {UNIT}",
        f"{d.n} rows, {len(d.models)} models, {len(d.benchmarks)} benchmarks; "
        f"{run.chains} chains x {run.draws} draws after {run.draws} warm-up, seed {run.seed}, "
        f"{fit_.seconds:.1f} s",
        "",
        f"{'term':28} {'mean':>7} {'sd':>6}  {'95% HDI':>17}  {'effect':>7}  "
        f"{'effect 95% HDI':>17}  {'r_hat':>5} {'ess':>6}",
        *map(_line, terms),
    ]
    alpha = next(t for t in terms if t.term == "alpha")
    lines += [
        "",
        f"e^α = {math.exp(alpha.mean):.2f} {UNIT} (dense, not quantized, no reasoning, "
        "average benchmark); a 30B model: "
        f"{math.exp(alpha.mean) * 30 / 1000:.3f} Wh per question",
        "reasoning effect per benchmark (β1 + γ_b): "
        + ", ".join(
            f"{b} {m:+.0f}% [{lo:+.0f}%, {hi:+.0f}%]"
            for b, (m, lo, hi) in reasoning_by_benchmark(fit_).items()
        ),
    ]
    lines += [f"note: {n}" for n in d.notes]
    lines += [f"warning: {w}" for w in _warnings(fit_, terms)]
    return "\n".join(lines) + "\n"
