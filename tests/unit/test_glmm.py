"""The study's GLMM: reading and refusing tables (no library needed), then fitting (NumPyro)
with parameter recovery on data simulated from known coefficients.

The fits run in the GLMM's own environment, ``.venv-glmm`` (NumPyro and JAX, kept out of
``.venv``), through a subprocess of its Python: ``EVALWATT_GLMM_PYTHON`` when set (``bootstrap.py
test`` sets it), else ``.venv-glmm/bin/python``, else this Python if it can import numpyro.
Without one they skip with the reason, except in CI (``CI`` set) or when
``EVALWATT_GLMM_PYTHON`` names a missing file: there they fail, so that CI never passes
without having fitted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from study_table import STUDY, demo_table, study_table

from evalwatt.base.errors import UserError
from evalwatt.report.glmm import main
from evalwatt.report.glmm.data import DEFAULT_ENERGY_COLUMN, load_table, prepare
from evalwatt.report.glmm.diagnostics import ess, hdi, r_hat
from evalwatt.table.final import write_table
from evalwatt.table.study_view import study_rows

REPO = Path(__file__).resolve().parents[2]
GLMM_PYTHON_VARIABLE = "EVALWATT_GLMM_PYTHON"
GLMM_VENV_PYTHON = REPO / ".venv-glmm" / "bin" / "python"
SET_UP = "python3 workflow/scripts/bootstrap.py test sets up .venv-glmm (envs/glmm-lock.txt)"
COLUMNS = ["model", "benchmark", "total_params_b", "reasoning", "moe", DEFAULT_ENERGY_COLUMN]


def test_the_final_table_is_read_with_its_own_column_names():
    table = study_table(temperatures=(0.0, 0.7), max_connections=(10, 100))
    data = prepare(table)
    assert data.n == 87  # one row per (model, benchmark): the study's view
    assert len(data.models) == 22
    assert data.benchmarks == sorted(STUDY.delta)
    assert any("weight_bits < 16" in n for n in data.notes)
    assert any("several rows" in n for n in data.notes)
    assert any("no reasoning model ran zerobench" in n for n in data.notes)
    assert set(data.quantized) == {0.0, 1.0}
    # E/P in mWh per billion parameters: Wh x 1000 / P
    row = next(
        r
        for r in table.to_pylist()
        if r["model"] == "QwQ-32B" and r["benchmark"] == "piqa" and r["temperature"] == 0
    )
    assert any(
        math.isclose(y, row[DEFAULT_ENERGY_COLUMN] * 1000 / 32.76, rel_tol=0.5) for y in data.y
    )


def test_a_plain_csv_with_booleans_as_words_or_numbers(tmp_path):
    rows = study_table().select([*COLUMNS, "weight_bits"]).to_pylist()
    for i, r in enumerate(rows):
        quantized = r.pop("weight_bits") < 16
        r["quantized"] = ("true" if quantized else "false") if i % 2 else int(quantized)
        r["reasoning"] = int(r["reasoning"]) if i % 2 else str(r["reasoning"]).lower()
    path = tmp_path / "mine.csv"
    path.write_text(
        "model,benchmark,total_params_b,quantized,reasoning,moe,wh\n"
        + "".join(
            f"{r['model']},{r['benchmark']},{r['total_params_b']},{r['quantized']},"
            f"{r['reasoning']},{int(r['moe'])},{r[DEFAULT_ENERGY_COLUMN]}\n"
            for r in rows
        )
    )
    data = prepare(load_table(path), "wh")
    assert data.n == 87


def test_too_small_tables_are_refused_with_every_reason():
    with pytest.raises(UserError) as err:
        prepare(demo_table(), "cpu_est_energy_per_question_wh")
    message = str(err.value)
    assert message.startswith("table too small for the GLMM")
    for part in ("1 model(s)", "every row has quantized=true", "every row has reasoning=false"):
        assert part in message
    # the GPU family of the demo is all null, with its reason in the note
    with pytest.raises(UserError, match="no GPU"):
        prepare(demo_table())


def test_bad_input_is_a_user_error():
    table = study_table()
    with pytest.raises(UserError, match="no column moe"):
        prepare(table.drop_columns(["moe"]))
    with pytest.raises(UserError, match="quantized \\(or weight_bits\\)"):
        prepare(table.drop_columns(["weight_bits"]))
    bad = table.set_column(
        table.schema.get_field_index("moe"),
        "moe",
        pa.array(["maybe"] * table.num_rows),
    )
    with pytest.raises(UserError, match="moe is 'maybe', expected true/false or 1/0"):
        prepare(bad)
    zero = table.set_column(
        table.schema.get_field_index(DEFAULT_ENERGY_COLUMN),
        DEFAULT_ENERGY_COLUMN,
        pa.array([0.0] * table.num_rows),
    )
    with pytest.raises(UserError, match="above zero"):
        prepare(zero)


def test_the_cli_refuses_what_it_cannot_read(tmp_path, capsys):
    assert main([str(tmp_path / "absent.parquet")]) == 2
    (tmp_path / "t.txt").write_text("x")
    assert main([str(tmp_path / "t.txt")]) == 2
    pq.write_table(demo_table(), tmp_path / "demo.parquet")
    assert (
        main([str(tmp_path / "demo.parquet"), "--energy-column", "cpu_est_energy_per_question_wh"])
        == 2
    )
    err = capsys.readouterr().err
    assert "no such file" in err and "unknown format .txt" in err and "too small" in err


def test_a_final_table_of_another_schema_version_is_refused(tmp_path, capsys):
    old = study_table().replace_schema_metadata({b"evalwatt.schema_version": b"3"})
    pq.write_table(old, tmp_path / "old.parquet")
    assert main([str(tmp_path / "old.parquet")]) == 2
    assert "final table has schema_version 3;" in capsys.readouterr().err


def test_several_rows_that_no_duration_tells_apart_are_refused():
    rows = study_table().select([*COLUMNS, "weight_bits"]).to_pylist()
    with pytest.raises(UserError, match="2 rows and no inference_duration_s to choose one"):
        prepare(pa.Table.from_pylist([*rows, rows[5]]))


def test_a_pair_whose_runs_all_failed_is_left_out_not_refused():
    """Every max_connections of one pair without a duration and without energy (its runs
    failed): nothing to choose between, the pair is left out like any null energy."""
    table = study_table(max_connections=(10, 100, 1000))
    rows = table.to_pylist()
    first = (rows[0]["model"], rows[0]["benchmark"])
    for r in rows:
        if (r["model"], r["benchmark"]) == first:
            r["inference_duration_s"] = r[DEFAULT_ENERGY_COLUMN] = None
            r["gpu_energy_null_reason"] = "the job failed"
    data = prepare(pa.Table.from_pylist(rows, schema=table.schema))
    assert data.n == 86
    assert f"1 rows with a null {DEFAULT_ENERGY_COLUMN} left out: the job failed (1)" in data.notes


def test_the_view_is_the_figures_one_a_fastest_run_without_energy_is_not_replaced():
    """The study's view is taken before energy: a pair whose fastest run has no energy is
    left out, not fitted from a slower run of it."""
    table = study_table(max_connections=(10, 100, 1000))
    rows = table.to_pylist()
    kept = study_rows(rows)
    assert len(kept) == 87
    index = rows.index(kept[0])
    energy = table.column(DEFAULT_ENERGY_COLUMN).to_pylist()
    energy[index] = None
    column = table.schema.get_field_index(DEFAULT_ENERGY_COLUMN)
    data = prepare(table.set_column(column, DEFAULT_ENERGY_COLUMN, pa.array(energy)))
    assert data.n == 86
    assert any(n.startswith(f"1 rows with a null {DEFAULT_ENERGY_COLUMN}") for n in data.notes)


def test_hdi_and_diagnostics():
    rng = np.random.default_rng(0)
    low, high = hdi(rng.normal(size=200_000))
    assert low == pytest.approx(-1.96, abs=0.02) and high == pytest.approx(1.96, abs=0.02)
    low, high = hdi(rng.exponential(size=200_000))  # skewed: the HDI starts at 0
    assert low < 0.01 and high == pytest.approx(-math.log(0.05), abs=0.03)
    iid = rng.normal(size=(4, 1000))
    assert r_hat(iid) == pytest.approx(1.0, abs=0.01)
    assert ess(iid) == pytest.approx(4000, rel=0.15)
    shifted = iid + np.array([[0.0], [0.0], [0.0], [3.0]])
    assert r_hat(shifted) > 1.5


# --- fitting, in the GLMM's environment ------------------------------------------------------


def glmm_python_or_why() -> tuple[str | None, str]:
    """The Python that fits (one that imports numpyro and evalwatt), or None and why not."""
    given = os.environ.get(GLMM_PYTHON_VARIABLE)
    if given:
        if Path(given).is_file():
            return given, ""
        return None, f"{GLMM_PYTHON_VARIABLE}={given}: no such file ({SET_UP})"
    if GLMM_VENV_PYTHON.is_file():
        return str(GLMM_VENV_PYTHON), ""
    if importlib.util.find_spec("numpyro") is not None:
        return sys.executable, ""
    return None, f"no .venv-glmm, and numpyro is not importable here: {SET_UP}"


@pytest.fixture(scope="module")
def glmm_python() -> str:
    python, why = glmm_python_or_why()
    if python is None:
        if os.environ.get("CI") or os.environ.get(GLMM_PYTHON_VARIABLE):
            pytest.fail(f"the GLMM fit tests must run here, not skip: {why}", pytrace=False)
        pytest.skip(why)
    return python


def run_glmm_python(python: str, *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [python, *argv], capture_output=True, text=True, cwd=REPO, timeout=600, check=False
    )
    assert done.returncode == 0, f"{python} {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done


# Run in the GLMM's environment: fit a table, print the model's table, the benchmark levels'
# 99% HDIs (α and δ share a level: α + δ_b is what the data pin down, and only the posterior
# draws give its HDI) and the text report; then evalwatt's R-hat and ESS next to NumPyro's on
# an AR(1) series.
FIT = """
import json, sys
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from evalwatt.report.glmm.data import load_table, prepare
from evalwatt.report.glmm.diagnostics import ess, hdi, r_hat
from evalwatt.report.glmm.fit import fit
from evalwatt.report.glmm.terms import summarize
from evalwatt.report.glmm.text import format_report

table, draws, chains, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
result = fit(prepare(load_table(table)), draws=draws, chains=chains, seed=seed)
terms = summarize(result)
s = result.samples
levels = {
    b: hdi(s["alpha"] + s["delta"][..., i], 0.99) for i, b in enumerate(result.data.benchmarks)
}
rng = np.random.default_rng(1)
x = np.zeros((4, 1000))
noise = rng.normal(size=(4, 1000))
for t in range(1, 1000):
    x[:, t] = 0.8 * x[:, t - 1] + noise[:, t]
diagnostics = {
    "r_hat": [r_hat(x), float(split_gelman_rubin(x))],
    "ess": [ess(x), float(effective_sample_size(x))],
}
out = {
    "terms": [t.as_json() for t in terms],
    "levels": levels,
    "report": format_report(result, terms),
    "diagnostics": diagnostics,
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fitted(glmm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The study-shaped table (seed 3) fitted with 2 chains x 300 draws, seed 1."""
    path = tmp_path_factory.mktemp("glmm") / "study.parquet"
    pq.write_table(study_table(seed=3), path)
    done = run_glmm_python(glmm_python, "-c", FIT, str(path), "300", "2", "1")
    return json.loads(done.stdout)


def test_diagnostics_agree_with_numpyro(fitted):
    ours, numpyro = fitted["diagnostics"]["r_hat"]
    assert ours == pytest.approx(numpyro, rel=1e-6)
    ours, numpyro = fitted["diagnostics"]["ess"]
    assert ours == pytest.approx(numpyro, rel=0.05)


def test_parameter_recovery(fitted):
    """Data simulated from the study's coefficients: every true value inside its 95% HDI."""
    terms = {t["term"]: t for t in fitted["terms"]}
    truth = {
        "alpha": STUDY.alpha,
        "beta_quantized": STUDY.beta_quantized,
        "beta_reasoning": STUDY.beta_reasoning,
        "beta_moe": STUDY.beta_moe,
    }
    for name, value in truth.items():
        t = terms[name]
        assert t["hdi_low"] <= value <= t["hdi_high"], (name, value, t)
        assert t["r_hat"] is not None and t["r_hat"] < 1.05, (name, t["r_hat"])
    # Six more checks at 95% would fail a sound fit about one time in four: the benchmark
    # levels α + δ_b are checked at 99%.
    assert sorted(fitted["levels"]) == sorted(STUDY.delta)
    for bench, (low, high) in fitted["levels"].items():
        assert low <= STUDY.alpha + STUDY.delta[bench] <= high, bench
    beta = terms["beta_quantized"]
    assert beta["effect_pct"] == pytest.approx(100 * math.expm1(beta["mean"]), rel=1e-4)
    assert 0 < terms["r2"]["mean"] < 1


def test_the_text_report_reads_like_the_studys_table(fitted):
    text = fitted["report"]
    assert "E/P in mWh per billion parameters per question" in text
    assert "87 rows, 22 models, 6 benchmarks; 2 chains x 300 draws" in text
    assert "reasoning effect per benchmark (β1 + γ_b): healthbench" in text
    line = next(x for x in text.splitlines() if x.startswith("beta_moe"))
    assert "%" in line and "[" in line
    assert "note: no reasoning model ran zerobench" in text


def test_the_cli_reads_the_final_table_and_prints_the_terms_as_json(glmm_python, tmp_path):
    """`evalwatt glmm TABLE --json` on a final table as the workflow writes it (Parquet, with
    the derived columns), with its own column names."""
    paths = [tmp_path / f"energy_table.{ext}" for ext in ("parquet", "csv", "md")]
    write_table(study_table(temperatures=(0.0, 0.7)), *paths, title="synthetic")
    argv = ["-m", "evalwatt", "glmm", str(paths[0]), "--json", "--draws", "30", "--seed", "0"]
    done = run_glmm_python(glmm_python, *argv, "--chains", "1")
    terms = json.loads(done.stdout)
    names = [t["term"] for t in terms]
    benches = sorted(STUDY.delta)
    assert names == [
        "alpha",
        "beta_quantized",
        "beta_reasoning",
        "beta_moe",
        *(f"delta[{b}]" for b in benches),
        *(f"gamma[{b}]" for b in benches),
        "r2",
    ]
    for t in terms:
        assert {"term", "mean", "sd", "hdi_low", "hdi_high", "effect_pct"} <= set(t)
        assert t["hdi_low"] <= t["mean"] <= t["hdi_high"]
    assert terms[0]["effect_pct"] is None
    assert "mWh per billion parameters per question" in terms[0]["unit"]
    assert "weight_bits < 16" in done.stderr and "several rows" in done.stderr
