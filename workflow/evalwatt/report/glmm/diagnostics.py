"""What the posterior draws say about themselves and about the fit: the HDI, split R-hat,
effective sample size (both as NumPyro computes them; tests/unit/test_glmm.py compares) and
the Bayesian R².

R² is the Bayesian R² of Gelman et al. (2019) as brms computes it, on the data scale: per
posterior draw, var(μ) / (var(μ) + var(y − μ)); its posterior mean is reported.
"""

from __future__ import annotations

import math

import numpy as np

from evalwatt.report.glmm.fit import Fit

HDI_PROB = 0.95
R_HAT_LIMIT = 1.01
"""Above it, the chains disagree: the report warns."""


def hdi(values: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    """The shortest interval holding ``prob`` of the draws."""
    x = np.sort(np.asarray(values).ravel())
    n = x.size
    width = max(math.floor(prob * n), 1)
    if width >= n:
        return float(x[0]), float(x[-1])
    spans = x[width:] - x[: n - width]
    i = int(np.argmin(spans))
    return float(x[i]), float(x[i + width])


def r_hat(chains: np.ndarray) -> float | None:
    """Split R-hat of one scalar's draws shaped (chains, draws); None with fewer than 4 draws."""
    n = chains.shape[1]
    half = n // 2
    if half < 2:
        return None
    split = np.concatenate([chains[:, :half], chains[:, half : 2 * half]], axis=0)
    within = split.var(axis=1, ddof=1).mean()
    between = half * split.mean(axis=1).var(ddof=1)
    if within == 0:
        return None
    var_plus = (half - 1) / half * within + between / half
    return float(np.sqrt(var_plus / within))


def ess(chains: np.ndarray) -> float | None:
    """Effective sample size (Geyer's initial positive sequence over all chains)."""
    c, n = chains.shape
    if n < 4:
        return None
    centred = chains - chains.mean(axis=1, keepdims=True)
    var = chains.var(axis=1, ddof=1).mean() * (n - 1) / n
    if var == 0:
        return None
    spectrum = np.fft.rfft(centred, n=2 * n, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :n] / n
    between = chains.mean(axis=1).var(ddof=1) if c > 1 else 0.0
    var_plus = var + between
    rho = 1.0 - (var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    total = 0.0
    for t in range(0, n - 1, 2):
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        total += pair
    tau = -1.0 + 2.0 * total
    return float(c * n / max(tau, 1.0 / math.log10(c * n + 1)))


def r2_draws(fit_: Fit) -> np.ndarray:
    """Bayesian R² per draw (data scale): var(μ) / (var(μ) + var(y − μ))."""
    s, d = fit_.samples, fit_.data
    b = d.bench_idx
    log_mu = (
        s["alpha"][..., None]
        + s["delta"][..., b]
        + s["beta_quantized"][..., None] * d.quantized
        + (s["beta_reasoning"][..., None] + s["gamma"][..., b]) * d.reasoning
        + s["beta_moe"][..., None] * d.moe
    )
    mu = np.exp(log_mu)
    var_fit = mu.var(axis=-1, ddof=1)
    var_res = (d.y - mu).var(axis=-1, ddof=1)
    return var_fit / (var_fit + var_res)
