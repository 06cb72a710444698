"""The study's statistical model (PEReN 2025, annex 4), refitted on the user's own table.

A Gamma GLMM of energy per question per billion parameters, E/P in mWh per billion parameters
per question (the study's unit: its α 1.49 gives e^1.49 x 30 ≈ 130 mWh ≈ 0.13 Wh for a dense
30B model):

    E/P ~ Gamma(shape, mean μ)
    log μ = (α + δ_benchmark) + β0·quantized + (β1 + γ_benchmark)·reasoning + β2·moe

δ and γ are per-benchmark random effects. The package, in the order the command runs it:

* ``data``: the table read (through the final table's versioned reader), checked and reduced
  to the study's view, one row per (model, benchmark);
* ``fit``: the NumPyro model and its NUTS run, the only module that needs JAX and NumPyro
  (imported when it fits: reading, checking and summarising work without them);
* ``diagnostics``: HDI, split R-hat, effective sample size, Bayesian R²;
* ``terms``: the model's table, one row per coefficient, effects in %;
* ``text``: that table as the study's annex prints it;
* ``cli``: ``evalwatt glmm``.
"""

from __future__ import annotations

from evalwatt.report.glmm.cli import main

__all__ = ["main"]
