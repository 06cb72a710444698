"""The study's GLMM: reading and refusing tables (no library needed), then fitting (NumPyro)
with parameter recovery on data simulated from known coefficients."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from study_table import STUDY, demo_table, study_table

from evalwatt.errors import UserError
from evalwatt.glmm import DEFAULT_ENERGY_COLUMN, ess, hdi, main, prepare, r_hat

HAS_NUMPYRO = importlib.util.find_spec("numpyro") is not None
needs_numpyro = pytest.mark.skipif(
    not HAS_NUMPYRO,
    reason="numpyro is not importable: install the glmm extra (pip install 'evalwatt[glmm]')",
)
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
    from evalwatt.glmm import load_table

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


@needs_numpyro
def test_diagnostics_agree_with_numpyro():
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    rng = np.random.default_rng(1)
    x = np.zeros((4, 1000))
    noise = rng.normal(size=(4, 1000))
    for t in range(1, 1000):
        x[:, t] = 0.8 * x[:, t - 1] + noise[:, t]
    assert r_hat(x) == pytest.approx(float(split_gelman_rubin(x)), rel=1e-6)
    assert ess(x) == pytest.approx(float(effective_sample_size(x)), rel=0.05)


@pytest.fixture(scope="module")
def fitted():
    from evalwatt.glmm import fit

    return fit(prepare(study_table(seed=3)), draws=300, chains=2, seed=1)


@needs_numpyro
def test_parameter_recovery(fitted):
    """Data simulated from the study's coefficients: every true value inside its 95% HDI."""
    from evalwatt.glmm import summarize

    result, data = fitted, fitted.data
    terms = {t.term: t for t in summarize(result)}
    truth = {
        "alpha": STUDY.alpha,
        "beta_quantized": STUDY.beta_quantized,
        "beta_reasoning": STUDY.beta_reasoning,
        "beta_moe": STUDY.beta_moe,
    }
    for name, value in truth.items():
        t = terms[name]
        assert t.hdi_low <= value <= t.hdi_high, (name, value, t)
        assert t.r_hat is not None and t.r_hat < 1.05, (name, t.r_hat)
    # α and δ share the benchmark level: α + δ_b is what the data pin down. Six more checks
    # at 95% would fail a sound fit about one time in four: the levels are checked at 99%.
    for i, bench in enumerate(data.benchmarks):
        level = result.samples["alpha"] + result.samples["delta"][..., i]
        low, high = hdi(level, 0.99)
        assert low <= STUDY.alpha + STUDY.delta[bench] <= high, bench
    assert terms["beta_quantized"].effect_pct == pytest.approx(
        100 * math.expm1(terms["beta_quantized"].mean)
    )
    assert 0 < terms["r2"].mean < 1


@needs_numpyro
def test_the_cli_prints_the_terms_as_json(tmp_path, capsys):
    path = tmp_path / "table.csv"
    pacsv.write_csv(study_table(), path)
    assert main([str(path), "--draws", "30", "--chains", "1", "--json"]) == 0
    terms = json.loads(capsys.readouterr().out)
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


@needs_numpyro
def test_the_text_report_reads_like_the_studys_table(fitted):
    from evalwatt.glmm import format_report, summarize

    text = format_report(fitted, summarize(fitted))
    assert "E/P in mWh per billion parameters per question" in text
    assert "87 rows, 22 models, 6 benchmarks; 2 chains x 300 draws" in text
    assert "reasoning effect per benchmark (β1 + γ_b): healthbench" in text
    line = next(x for x in text.splitlines() if x.startswith("beta_moe"))
    assert "%" in line and "[" in line
    assert "note: no reasoning model ran zerobench" in text
