"""The study's statistical model (PEReN 2025, annex 4), refitted on the user's own table.

A Gamma GLMM of energy per question per billion parameters, E/P in mWh per billion parameters
per question (the study's unit: its α 1.49 gives e^1.49 x 30 ≈ 130 mWh ≈ 0.13 Wh for a dense
30B model):

    E/P ~ Gamma(shape, mean μ)
    log μ = (α + δ_benchmark) + β0·quantized + (β1 + γ_benchmark)·reasoning + β2·moe

δ and γ are per-benchmark random effects, δ_b ~ Normal(0, σ_δ) and γ_b ~ Normal(0, σ_γ),
written non-centred (δ = σ_δ·z) so that six groups sample without divergences. Priors, weakly
informative on the log scale: α ~ Normal(0, 5); β ~ Normal(0, 2.5); σ_δ, σ_γ ~ HalfNormal(2);
shape ~ Gamma(2, 0.1). It is fitted with NUTS in NumPyro (docs/results.md says why NumPyro).

R² is the Bayesian R² of Gelman et al. (2019) as brms computes it, on the data scale: per
posterior draw, var(μ) / (var(μ) + var(y − μ)); its posterior mean is reported. The effect of a
coefficient in % is 100·(e^β − 1), of its mean (``effect_pct``) and of its HDI bounds, as in the
study's table.

Input: the final table (Parquet or CSV) or any CSV/Parquet with the columns ``model,
benchmark, total_params_b, quantized, reasoning, moe`` and an energy column in Wh per question
(booleans as true/false or 1/0). A final table has ``weight_bits`` instead of ``quantized``:
quantized means fewer than 16 bits per weight. Where a (model, benchmark) has several rows
(temperatures, max_connections), the study's view is kept: the lowest temperature, then the
shortest inference. Rows whose energy is null are left out and counted in the notes.

NumPyro and JAX are imported only by ``fit``: reading, checking and summarising work without
them, and a missing library is one clear error (install the ``glmm`` extra or envs/glmm.yaml).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evalwatt.base.errors import EXIT_USER_ERROR, UserError

UNIT = "mWh per billion parameters per question"
DEFAULT_ENERGY_COLUMN = "gpu_energy_per_question_wh"
REQUIRED = ("model", "benchmark", "total_params_b", "reasoning", "moe")
FACTORS = ("quantized", "reasoning", "moe")
HDI_PROB = 0.95
DEFAULT_DRAWS = 1000
DEFAULT_CHAINS = 4
TARGET_ACCEPT = 0.95
R_HAT_LIMIT = 1.01
INSTALL_HINT = (
    "the GLMM needs NumPyro and JAX: pip install 'evalwatt[glmm]' "
    "(or the conda environment envs/glmm.yaml)"
)

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


@dataclass(frozen=True)
class GlmmData:
    """The rows the model is fitted to, one per (model, benchmark)."""

    energy_column: str
    models: list[str]
    benchmarks: list[str]  # sorted; the index of bench_idx
    bench_idx: np.ndarray  # int, per row
    quantized: np.ndarray  # 0/1 float, per row
    reasoning: np.ndarray
    moe: np.ndarray
    y: np.ndarray  # E/P, mWh per billion parameters per question
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def n_coefficients(self) -> int:
        """α, three β, and a δ and a γ per benchmark."""
        return 4 + 2 * len(self.benchmarks)


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


@dataclass(frozen=True)
class Fit:
    """Posterior draws, each array shaped (chains, draws[, benchmarks])."""

    samples: dict[str, np.ndarray]
    data: GlmmData
    draws: int
    chains: int
    seed: int
    divergences: int
    seconds: float


# --- reading ----------------------------------------------------------------------------------


def load_table(path: Path | str) -> pa.Table:
    """A Parquet or CSV file as a table; anything unreadable is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix == ".csv":
            return pacsv.read_csv(path)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read it ({first})") from None
    raise UserError(f"{path}: unknown format {suffix or '(none)'}: expected .parquet or .csv")


def _flag(value: Any, column: str, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return float(value.strip().lower() in _TRUE)
    raise UserError(f"{where}: {column} is {value!r}, expected true/false or 1/0")


def _number(value: Any, column: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UserError(f"{where}: {column} is {value!r}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where}: {column} is {value!r}, not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{where}: {column} is {value!r}, expected a finite number above zero")
    return number


def _study_view(rows: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """One row per (model, benchmark): lowest temperature, then shortest inference."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["benchmark"])].append(row)
    kept = []
    reduced = 0
    for key in sorted(groups):
        group = groups[key]
        if len(group) > 1:
            reduced += 1
            if all(r.get("temperature") is not None for r in group):
                low = min(r["temperature"] for r in group)
                group = [r for r in group if r["temperature"] == low]
            if len(group) > 1 and all(r.get("inference_duration_s") is not None for r in group):
                group = [min(group, key=lambda r: r["inference_duration_s"])]
            if len(group) > 1:
                raise UserError(
                    f"model {key[0]}, benchmark {key[1]}: {len(group)} rows and no temperature "
                    "or inference_duration_s to choose one; give one row per (model, benchmark)"
                )
        kept.append(group[0])
    if reduced:
        notes.append(
            f"{reduced} (model, benchmark) pairs had several rows: kept the lowest temperature, "
            "then the shortest inference (the study's view)"
        )
    return kept


def prepare(table: pa.Table, energy_column: str = DEFAULT_ENERGY_COLUMN) -> GlmmData:
    """The rows to fit, checked; a UserError says what is missing or why it is too small."""
    names = set(table.column_names)
    missing = [c for c in (*REQUIRED, energy_column) if c not in names]
    if "quantized" not in names and "weight_bits" not in names:
        missing.append("quantized (or weight_bits)")
    if missing:
        raise UserError(
            f"the table has no column {', '.join(missing)}; the GLMM needs model, benchmark, "
            f"total_params_b, quantized, reasoning, moe and an energy column in Wh per question "
            f"(--energy-column, default {DEFAULT_ENERGY_COLUMN})"
        )
    notes: list[str] = []
    rows = table.to_pylist()
    null_reason = energy_column.replace("_per_question_wh", "_null_reason")
    with_energy = [r for r in rows if r[energy_column] is not None]
    if len(with_energy) < len(rows):
        reasons = Counter(str(r.get(null_reason) or "no reason given") for r in rows)
        reasons.subtract(Counter(str(r.get(null_reason) or "no reason given") for r in with_energy))
        why = "; ".join(f"{k} ({v})" for k, v in sorted(reasons.items()) if v > 0)
        notes.append(
            f"{len(rows) - len(with_energy)} rows with a null {energy_column} left out: {why}"
        )
    if "quantized" not in names:
        notes.append("quantized = weight_bits < 16")
    rows = _study_view(with_energy, notes)
    benchmarks = sorted({str(r["benchmark"]) for r in rows})
    index = {b: i for i, b in enumerate(benchmarks)}
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        where = f"model {row['model']}, benchmark {row['benchmark']}"
        params = _number(row["total_params_b"], "total_params_b", where)
        energy = _number(row[energy_column], energy_column, where)
        values["y"].append(energy * 1000.0 / params)
        if "quantized" in names:
            values["quantized"].append(_flag(row["quantized"], "quantized", where))
        else:
            values["quantized"].append(
                float(_number(row["weight_bits"], "weight_bits", where) < 16)
            )
        for factor in ("reasoning", "moe"):
            values[factor].append(_flag(row[factor], factor, where))
    data = GlmmData(
        energy_column=energy_column,
        models=sorted({str(r["model"]) for r in rows}),
        benchmarks=benchmarks,
        bench_idx=np.array([index[str(r["benchmark"])] for r in rows], dtype=np.int32),
        quantized=np.array(values["quantized"]),
        reasoning=np.array(values["reasoning"]),
        moe=np.array(values["moe"]),
        y=np.array(values["y"]),
        notes=notes,
    )
    check_size(data)
    alone = [b for i, b in enumerate(benchmarks) if not data.reasoning[data.bench_idx == i].any()]
    if alone:
        notes.append(
            f"no reasoning model ran {', '.join(alone)}: its γ is the prior's (shrunk to 0, "
            "wide HDI), not a measurement"
        )
    return data


def check_size(data: GlmmData) -> None:
    """Refuse a table the model cannot be fitted to, naming every reason at once."""
    problems = []
    if len(data.benchmarks) < 2:
        problems.append(
            f"{len(data.benchmarks)} benchmark(s): the per-benchmark effects δ and γ need at "
            "least 2"
        )
    if len(data.models) < 3:
        problems.append(f"{len(data.models)} model(s): at least 3 are needed")
    need = 2 * (4 + 2 * max(len(data.benchmarks), 2))
    if data.n < need:
        problems.append(
            f"{data.n} (model, benchmark) rows with energy: at least {need} are needed "
            "(two per coefficient: α, three β, a δ and a γ per benchmark)"
        )
    for factor in FACTORS:
        column = getattr(data, factor)
        if column.size and column.min() == column.max():
            problems.append(
                f"every row has {factor}={'true' if column[0] else 'false'}: β_{factor} cannot "
                f"be estimated without models on both sides"
            )
    if problems:
        raise UserError(
            "table too small for the GLMM: "
            + "; ".join(problems)
            + (f" ({'; '.join(data.notes)})" if data.notes else "")
        )


# --- fitting ----------------------------------------------------------------------------------


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
    import time

    if draws < 10:
        raise UserError(f"--draws {draws}: at least 10 draws are needed")
    if chains < 1:
        raise UserError(f"--chains {chains}: at least 1 chain is needed")
    try:
        import jax
        from numpyro.infer import MCMC, NUTS
    except ImportError as exc:
        raise UserError(f"{INSTALL_HINT} ({exc})") from None
    start = time.perf_counter()
    kernel = NUTS(_model, target_accept_prob=TARGET_ACCEPT)
    mcmc = MCMC(
        kernel,
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
    diverging = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return Fit(
        samples=samples,
        data=data,
        draws=draws,
        chains=chains,
        seed=seed,
        divergences=diverging,
        seconds=time.perf_counter() - start,
    )


# --- summarising ------------------------------------------------------------------------------


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


def _pct(x: float) -> float:
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
        effect_pct=_pct(mean) if effect else None,
        effect_hdi_low_pct=_pct(low) if effect else None,
        effect_hdi_high_pct=_pct(high) if effect else None,
        r_hat=r_hat(draws) if draws.ndim == 2 else None,
        ess=ess(draws) if draws.ndim == 2 else None,
    )


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
        out[bench] = (_pct(float(draws.mean())), _pct(low), _pct(high))
    return out


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.0f}%"


def format_report(fit_: Fit, terms: list[Term]) -> str:
    """The model's table as text, like the study's annex 4."""
    d = fit_.data
    lines = [
        "Gamma GLMM of energy per question per billion parameters (the study's annex 4)",
        "log(E/P) = (α + δ_benchmark) + β0·quantized + (β1 + γ_benchmark)·reasoning + β2·moe",
        f"E = {d.energy_column} (Wh per question) x 1000, P = total_params_b: E/P in {UNIT}",
        f"{d.n} rows, {len(d.models)} models, {len(d.benchmarks)} benchmarks; "
        f"{fit_.chains} chains x {fit_.draws} draws after {fit_.draws} warm-up, seed {fit_.seed}, "
        f"{fit_.seconds:.1f} s",
        "",
        f"{'term':28} {'mean':>7} {'sd':>6}  {'95% HDI':>17}  {'effect':>7}  "
        f"{'effect 95% HDI':>17}  {'r_hat':>5} {'ess':>6}",
    ]
    for t in terms:
        effect_hdi = (
            f"[{_fmt_pct(t.effect_hdi_low_pct)}, {_fmt_pct(t.effect_hdi_high_pct)}]"
            if t.effect_pct is not None
            else ""
        )
        lines.append(
            f"{t.term:28} {t.mean:7.2f} {t.sd:6.2f}  [{t.hdi_low:7.2f}, {t.hdi_high:7.2f}]  "
            f"{_fmt_pct(t.effect_pct):>7}  {effect_hdi:>17}  "
            f"{'' if t.r_hat is None else f'{t.r_hat:.3f}':>5} "
            f"{'' if t.ess is None else f'{t.ess:.0f}':>6}"
        )
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
    warnings = []
    if fit_.divergences:
        warnings.append(f"{fit_.divergences} divergent transitions: read the HDIs with care")
    bad = [t.term for t in terms if t.r_hat is not None and t.r_hat > R_HAT_LIMIT]
    if bad:
        warnings.append(
            f"r_hat above {R_HAT_LIMIT} for {', '.join(bad)}: the chains disagree; "
            "rerun with more --draws"
        )
    lines += [f"note: {n}" for n in d.notes] + [f"warning: {w}" for w in warnings]
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evalwatt glmm",
        description="Refit the study's Gamma GLMM (energy per question per billion parameters).",
    )
    p.add_argument("table", type=Path, help="final table or CSV/Parquet (.parquet, .csv)")
    p.add_argument(
        "--energy-column",
        default=DEFAULT_ENERGY_COLUMN,
        help=f"energy in Wh per question (default {DEFAULT_ENERGY_COLUMN})",
    )
    p.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="draws per chain (and warm-up)")
    p.add_argument("--chains", type=int, default=DEFAULT_CHAINS, help="chains (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="the model's table as a JSON list")
    return p


def main(argv: list[str] | None = None) -> int:
    """``evalwatt glmm``: print the model's table (text, or ``--json``); UserError -> exit 2."""
    args = parser().parse_args(argv)
    try:
        data = prepare(load_table(args.table), args.energy_column)
        result = fit(data, draws=args.draws, chains=args.chains, seed=args.seed)
    except UserError as exc:
        print(f"evalwatt glmm: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    terms = summarize(result)
    if args.json:
        print(json.dumps([t.as_json() for t in terms], indent=2, allow_nan=False))
        for note in data.notes:
            print(f"evalwatt glmm: note: {note}", file=sys.stderr)
    else:
        sys.stdout.write(format_report(result, terms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
