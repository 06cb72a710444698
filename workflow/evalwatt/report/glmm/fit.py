"""The GLMM in NumPyro and its NUTS run: the only module of the GLMM that needs JAX.

    E/P ~ Gamma(shape, mean μ)
    log μ = (α + δ_benchmark) + β0·quantized + (β1 + γ_benchmark)·reasoning + β2·moe

δ_b ~ Normal(0, σ_δ) and γ_b ~ Normal(0, σ_γ) are written non-centred (δ = σ_δ·z) so that six
groups sample without divergences. Priors, weakly informative on the log scale: α ~ Normal(0,
5); β ~ Normal(0, 2.5); σ_δ, σ_γ ~ HalfNormal(2); shape ~ Gamma(2, 0.1). docs/results.md says
why NumPyro. JAX and NumPyro are imported only when the model is fitted, so that the rest of
the GLMM reads, checks and summarises without them; a missing library is one clear error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalwatt.base.errors import UserError
from evalwatt.report.glmm.data import GlmmData

DEFAULT_DRAWS = 1000
DEFAULT_CHAINS = 4
TARGET_ACCEPT = 0.95
INSTALL_HINT = (
    "the GLMM needs NumPyro and JAX: pip install 'evalwatt[glmm]' "
    "(or the conda environment envs/glmm.yaml)"
)


@dataclass(frozen=True)
class Sampling:
    """How the posterior is drawn: ``chains`` chains of ``draws`` warm-up then ``draws``
    kept draws each, from ``seed``."""

    draws: int = DEFAULT_DRAWS
    chains: int = DEFAULT_CHAINS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.draws < 10:
            raise UserError(f"--draws {self.draws}: at least 10 draws are needed")
        if self.chains < 1:
            raise UserError(f"--chains {self.chains}: at least 1 chain is needed")


@dataclass(frozen=True)
class Fit:
    """Posterior draws, each array shaped (chains, draws[, benchmarks]); ``seconds`` is the
    wall time of the run, JAX's compilation included."""

    samples: dict[str, np.ndarray]
    data: GlmmData
    sampling: Sampling
    divergences: int
    seconds: float


def _model(
    bench_idx: Any, quantized: Any, reasoning: Any, moe: Any, n_bench: int, y: Any = None
) -> None:
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    beta_q = numpyro.sample("beta_quantized", dist.Normal(0.0, 2.5))
    beta_r = numpyro.sample("beta_reasoning", dist.Normal(0.0, 2.5))
    beta_m = numpyro.sample("beta_moe", dist.Normal(0.0, 2.5))
    sigma_delta = numpyro.sample("sigma_delta", dist.HalfNormal(2.0))
    sigma_gamma = numpyro.sample("sigma_gamma", dist.HalfNormal(2.0))
    with numpyro.plate("benchmarks", n_bench):
        z_delta = numpyro.sample("z_delta", dist.Normal(0.0, 1.0))
        z_gamma = numpyro.sample("z_gamma", dist.Normal(0.0, 1.0))
    delta = numpyro.deterministic("delta", sigma_delta * z_delta)
    gamma = numpyro.deterministic("gamma", sigma_gamma * z_gamma)
    shape = numpyro.sample("shape", dist.Gamma(2.0, 0.1))
    log_mu = (
        alpha
        + delta[bench_idx]
        + beta_q * quantized
        + (beta_r + gamma[bench_idx]) * reasoning
        + beta_m * moe
    )
    with numpyro.plate("rows", bench_idx.shape[0]):
        numpyro.sample("y", dist.Gamma(shape, shape / jnp.exp(log_mu)), obs=y)


def fit(
    data: GlmmData,
    *,
    draws: int = DEFAULT_DRAWS,
    chains: int = DEFAULT_CHAINS,
    seed: int = 0,
) -> Fit:
    """NUTS: ``chains`` chains (vectorised on one device), ``draws`` warm-up and ``draws``
    kept draws each. Deterministic for a given seed, data and library versions."""
    sampling = Sampling(draws, chains, seed)
    try:
        import jax
        from numpyro.infer import MCMC, NUTS
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} ({exc})") from None
    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(_model, target_accept_prob=TARGET_ACCEPT),
        num_warmup=draws,
        num_samples=draws,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(seed),
        bench_idx=data.bench_idx,
        quantized=data.quantized,
        reasoning=data.reasoning,
        moe=data.moe,
        n_bench=len(data.benchmarks),
        y=data.y,
        extra_fields=("diverging",),
    )
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    seconds = time.perf_counter() - start
    return Fit(samples, data, sampling, divergences, seconds)
