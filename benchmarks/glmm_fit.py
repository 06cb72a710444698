"""How long the study's GLMM takes at full size, and how well it recovers known coefficients.

What it measures
    The wall time of ``evalwatt.report.glmm.fit.fit`` on a table of the study's shape (22 models,
    6 benchmarks, 87 (model, benchmark) rows, tests/unit/study_table.py) with the CLI's
    defaults: 4 chains x 1000 draws after 1000 warm-up draws, NUTS in NumPyro on the CPU. The
    first fit includes JAX's compilation; a second fit with another seed shows the time
    without it (the CLI pays the compilation on every call). It then prints, per coefficient,
    the true value the data were simulated from, the posterior mean and the 95% HDI, and the
    divergences, worst R-hat and smallest ESS.

Why
    The CLI should answer in seconds on a 2-core login node or laptop; the unit test uses
    small draws, this is the size a user runs.

Run it with the GLMM's environment, which ``bootstrap.py test`` sets up (envs/glmm-lock.txt):

    .venv-glmm/bin/python benchmarks/glmm_fit.py            # defaults
    .venv-glmm/bin/python benchmarks/glmm_fit.py --draws 2000 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from study_table import STUDY, study_table

from evalwatt.report.glmm.data import prepare
from evalwatt.report.glmm.diagnostics import hdi
from evalwatt.report.glmm.fit import DEFAULT_CHAINS, DEFAULT_DRAWS, fit
from evalwatt.report.glmm.terms import summarize


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--draws", type=int, default=DEFAULT_DRAWS)
    p.add_argument("--chains", type=int, default=DEFAULT_CHAINS)
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated data and the fit")
    args = p.parse_args()
    data = prepare(study_table(seed=args.seed))
    print(f"{data.n} rows, {len(data.models)} models, {len(data.benchmarks)} benchmarks")
    for label, seed in (("first fit (with JAX compilation)", args.seed), ("second fit", 1)):
        start = time.perf_counter()
        result = fit(data, draws=args.draws, chains=args.chains, seed=seed)
        print(
            f"{label}: {time.perf_counter() - start:.1f} s "
            f"({args.chains} chains x {args.draws} draws + {args.draws} warm-up)"
        )
    terms = {t.term: t for t in summarize(result)}
    print(f"\n{'coefficient':28} {'true':>6} {'mean':>6}  95% HDI            inside")
    truth = {
        "alpha": STUDY.alpha,
        "beta_quantized": STUDY.beta_quantized,
        "beta_reasoning": STUDY.beta_reasoning,
        "beta_moe": STUDY.beta_moe,
    }
    rows = [(k, v, terms[k].mean, terms[k].hdi_low, terms[k].hdi_high) for k, v in truth.items()]
    for i, bench in enumerate(data.benchmarks):
        draws = result.samples["alpha"] + result.samples["delta"][..., i]
        low, high = hdi(draws)
        true = STUDY.alpha + STUDY.delta[bench]
        rows.append((f"alpha+delta[{bench}]", true, float(draws.mean()), low, high))
    for name, true, mean, low, high in rows:
        print(
            f"{name:28} {true:6.2f} {mean:6.2f}  [{low:6.2f}, {high:6.2f}]  "
            f"{'yes' if low <= true <= high else 'NO'}"
        )
    r_hats = [t.r_hat for t in terms.values() if t.r_hat is not None]
    esses = [t.ess for t in terms.values() if t.ess is not None]
    print(
        f"\nR² {terms['r2'].mean:.2f}; divergences {result.divergences}; "
        f"worst R-hat {max(r_hats):.3f}; smallest ESS {min(esses):.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
