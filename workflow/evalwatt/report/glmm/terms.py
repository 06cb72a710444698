"""The model's table: one row per coefficient, as the study's annex 4 gives it.

Coefficients are on the log scale of E/P. The effect of a coefficient in % is 100·(e^β − 1),
of its mean (``effect_pct``) and of its HDI bounds, as in the study's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalwatt.report.glmm.data import FACTORS, UNIT
from evalwatt.report.glmm.diagnostics import ess, hdi, r2_draws, r_hat
from evalwatt.report.glmm.fit import Fit


@dataclass(frozen=True)
class Term:
    """One row of the model's table. Coefficients are on the log scale of E/P."""

    term: str
    mean: float
    sd: float
    hdi_low: float
    hdi_high: float
    effect_pct: float | None  # 100 (e^mean - 1); None for alpha (a level, not an effect)
    effect_hdi_low_pct: float | None
    effect_hdi_high_pct: float | None
    r_hat: float | None
    ess: float | None

    def as_json(self) -> dict[str, Any]:
        out = {k: _round(v) for k, v in self.__dict__.items()}
        out["unit"] = "R² of E/P" if self.term == "r2" else f"log of E/P, E/P in {UNIT}"
        return out


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def pct(x: float) -> float:
    """A log-scale coefficient as an effect in %."""
    return 100.0 * math.expm1(x)


def _term(name: str, draws: np.ndarray, effect: bool) -> Term:
    low, high = hdi(draws)
    mean = float(draws.mean())
    return Term(
        term=name,
        mean=mean,
        sd=float(draws.std(ddof=1)),
        hdi_low=low,
        hdi_high=high,
        effect_pct=pct(mean) if effect else None,
        effect_hdi_low_pct=pct(low) if effect else None,
        effect_hdi_high_pct=pct(high) if effect else None,
        r_hat=r_hat(draws) if draws.ndim == 2 else None,
        ess=ess(draws) if draws.ndim == 2 else None,
    )


def summarize(fit_: Fit) -> list[Term]:
    """The model's table: alpha, the three β, δ and γ per benchmark, then R²."""
    s = fit_.samples
    terms = [_term("alpha", s["alpha"], effect=False)]
    terms += [_term(f"beta_{f}", s[f"beta_{f}"], effect=True) for f in FACTORS]
    for key in ("delta", "gamma"):
        for i, bench in enumerate(fit_.data.benchmarks):
            terms.append(_term(f"{key}[{bench}]", s[key][..., i], effect=True))
    terms.append(_term("r2", r2_draws(fit_), effect=False))
    return terms


def reasoning_by_benchmark(fit_: Fit) -> dict[str, tuple[float, float, float]]:
    """Per benchmark, the reasoning effect β1 + γ_b in %: mean, HDI low, HDI high."""
    out = {}
    for i, bench in enumerate(fit_.data.benchmarks):
        draws = fit_.samples["beta_reasoning"] + fit_.samples["gamma"][..., i]
        low, high = hdi(draws)
        out[bench] = (pct(float(draws.mean())), pct(low), pct(high))
    return out
