"""`evalwatt energy` on bad inputs: one clear line and exit 2, never a traceback or a number.

Every case starts from the real H100 traces (tests/data/traces/h100-hf-llama1b), copies them
into tmp_path and breaks one thing: a trace CSV, a sampler Parquet, a timeline, a number on the
command line. Each runs through the real CLI. The counter reset is the one input that is not an
error: that window's energy is a null with its reason (see evalwatt.ops.cli._energy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import evalwatt
from evalwatt.ops.cli import main as cli_main

NVML_FOOTER = {"source": "nvml", "domain": "gpu", "is_estimate": False, "interval_s": 0.1}


# --- inputs: copies of the real traces, one thing broken ---------------------------------------


def _copy_real(src: Path, tmp: Path) -> None:
    for name in ("cell.csv", "cell.marks.json", "baseline.csv", "baseline.marks.json"):
        shutil.copyfile(src / name, tmp / name)


def _rows(tmp: Path) -> list[list[str]]:
    """The copied cell trace as fields per line; index 0 is the header (file line 1)."""
    return [line.split(",") for line in (tmp / "cell.csv").read_text().splitlines()]


def _write_rows(tmp: Path, rows: list[list[str]], name: str = "cell.csv", end: str = "\n") -> None:
    (tmp / name).write_text("\n".join(",".join(r) for r in rows) + end)


def _set(tmp: Path, line: int, column: str, value: str) -> None:
    """Set one field of the cell trace (file line number, column name)."""
    rows = _rows(tmp)
    rows[line - 1][rows[0].index(column)] = value
    _write_rows(tmp, rows)


def _marks(tmp: Path, name: str = "cell.marks.json") -> dict:
    return json.loads((tmp / name).read_text())


def _set_marks(tmp: Path, name: str = "cell.marks.json", **values: object) -> None:
    marks = _marks(tmp, name)
    marks.update(values)
    (tmp / name).write_text(json.dumps({k: v for k, v in marks.items() if v is not None}))


def _parquet(
    tmp: Path, footer: dict | None = NVML_FOOTER, edit: Callable[[dict], None] | None = None
) -> None:
    """The cell trace as the sampler writes it (trace-gpu.parquet), optionally broken."""
    rows = _rows(tmp)
    head, data = rows[0], rows[1:]
    col = {name: [float(r[head.index(name)]) for r in data] for name in head}
    columns: dict[str, list] = {
        "t_unix": col["t_unix"],
        "device": ["0"] * len(data),
        "energy_mj": col["energy_mj"],
        "power_mw": col["power_mw"],
    }
    if edit is not None:
        edit(columns)
    empty = {"device": pa.string()}  # the types a column without values would lack
    table = pa.table(
        {
            k: pa.array(v) if v else pa.array(v, empty.get(k, pa.float64()))
            for k, v in columns.items()
        }
    )
    writer = pq.ParquetWriter(tmp / "cell.parquet", table.schema)
    writer.write_table(table)
    if footer is not None:
        writer.add_key_value_metadata({"evalwatt.trace": json.dumps(footer)})
    writer.close()


def _raw_footer(tmp: Path, raw: str) -> None:
    _parquet(tmp, footer=None)
    table = pq.read_table(tmp / "cell.parquet")
    writer = pq.ParquetWriter(tmp / "cell.parquet", table.schema)
    writer.write_table(table)
    writer.add_key_value_metadata({"evalwatt.trace": raw})
    writer.close()


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One broken input: how to break the copies in tmp_path, the CLI arguments after
    ``energy`` ({tmp} stands for tmp_path) and what the message must say."""

    name: str
    make: Callable[[Path], object]
    expect: tuple[str, ...]
    trace: str = "cell.csv"
    timeline: str = "cell.marks.json"
    extra: tuple[str, ...] = ()

    def argv(self, tmp: Path) -> list[str]:
        args = ["energy", "--trace", str(tmp / self.trace), "--timeline", str(tmp / self.timeline)]
        return args + [a.format(tmp=tmp) for a in self.extra]


def nothing(tmp: Path) -> None:
    return None


BASELINE = (
    "--baseline-trace",
    "{tmp}/baseline.csv",
    "--baseline-timeline",
    "{tmp}/baseline.marks.json",
)
LAST = 1592  # line number of the last sample of cell.csv

CASES = [
    # trace files
    Bad("missing trace file", nothing, ("absent.csv", "no such trace file"), trace="absent.csv"),
    Bad(
        "trace is a directory",
        lambda t: (t / "dir.csv").mkdir(),
        ("dir.csv", "is a directory"),
        trace="dir.csv",
    ),
    Bad(
        "unknown extension",
        lambda t: shutil.copyfile(t / "cell.csv", t / "cell.txt"),
        ("cell.txt", "unknown trace format", ".csv or .parquet"),
        trace="cell.txt",
    ),
    # trace CSV
    Bad("empty CSV", lambda t: (t / "cell.csv").write_text(""), ("cell.csv", "empty file")),
    Bad(
        "CSV with only its header",
        lambda t: _write_rows(t, _rows(t)[:1]),
        ("cell.csv", "no samples, only a header"),
    ),
    Bad(
        "CSV without the energy_mj column",
        lambda t: _set(t, 1, "energy_mj", "energy"),
        ("cell.csv:1", "no energy_mj column", "t_unix,energy,power_mw"),
    ),
    Bad(
        "CSV cut in the middle of its last line (partial number, fewer fields)",
        lambda t: _write_rows(t, [*_rows(t)[:-1], ["1795302928.363", "2214"]], end=""),
        (f"cell.csv:{LAST}", "no line end", "'1795302928.363,2214'"),
    ),
    Bad(
        "CSV cut inside its last number, all fields there",
        lambda t: _write_rows(t, [*_rows(t)[:-1], [*_rows(t)[-1][:-1], "1"]], end=""),
        (f"cell.csv:{LAST}", "no line end", "cut while being written"),
    ),
    Bad(
        "CSV row with fewer fields than the header",
        lambda t: _write_rows(t, [r[:2] if i == 499 else r for i, r in enumerate(_rows(t))]),
        ("cell.csv:500", "2 fields where the header has 7"),
    ),
    Bad(
        "CSV row with more fields than the header",
        lambda t: _write_rows(t, [[*r, "9"] if i == 599 else r for i, r in enumerate(_rows(t))]),
        ("cell.csv:600", "8 fields where the header has 7"),
    ),
    Bad(
        "CSV header with a column twice",
        lambda t: _set(t, 1, "temp_c", "power_mw"),
        ("cell.csv:1", "column power_mw appears twice"),
    ),
    Bad(
        "CSV of several GPUs with an empty gpu field",
        lambda t: _write_rows(
            t,
            [
                ["gpu", *r] if i == 0 else ["" if i == 700 else "0", *r]
                for i, r in enumerate(_rows(t))
            ],
        ),
        ("cell.csv:701", "gpu (the device of the sample) is empty"),
    ),
    Bad(
        "non-numeric t_unix",
        lambda t: _set(t, 100, "t_unix", "abc"),
        ("cell.csv:100", "t_unix", "'abc'", "not a number"),
    ),
    Bad(
        "non-numeric energy_mj",
        lambda t: _set(t, 200, "energy_mj", "12x4"),
        ("cell.csv:200", "energy_mj", "'12x4'", "not a number"),
    ),
    Bad(
        "NaN energy_mj",
        lambda t: _set(t, 300, "energy_mj", "nan"),
        ("cell.csv:300", "energy_mj", "'nan'", "not a finite number"),
    ),
    Bad(
        "infinite t_unix",
        lambda t: _set(t, 301, "t_unix", "inf"),
        ("cell.csv:301", "t_unix", "'inf'", "not a finite number"),
    ),
    Bad(
        "empty energy_mj",
        lambda t: _set(t, 302, "energy_mj", ""),
        ("cell.csv:302", "energy_mj is empty"),
    ),
    Bad(
        "negative counter",
        lambda t: _set(t, 303, "energy_mj", "-5"),
        ("cell.csv:303", "energy_mj", "'-5'", "never negative"),
    ),
    Bad(
        "negative power",
        lambda t: _set(t, 304, "power_mw", "-71736"),
        ("cell.csv:304", "power_mw", "'-71736'", "never negative"),
    ),
    Bad(
        "NaN power",
        lambda t: _set(t, 305, "power_mw", "NaN"),
        ("cell.csv:305", "power_mw", "'NaN'", "not a finite number"),
    ),
    Bad(
        "duplicate timestamp",
        lambda t: _set(t, 400, "t_unix", _rows(t)[398][0]),
        ("cell.csv:400", "t_unix", "repeats the time of line 399", "device 0"),
    ),
    Bad(
        "binary file named .csv",
        lambda t: (t / "cell.csv").write_bytes(b"PAR1\x15\x04\xff\xfe\x00\x00"),
        ("cell.csv", "not a UTF-8 text CSV trace", "0xff"),
    ),
    # trace Parquet
    Bad(
        "Parquet that is not Parquet",
        lambda t: (t / "cell.parquet").write_text("t_unix,energy_mj\n1,2\n"),
        ("cell.parquet", "not a readable Parquet file"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet cut in half",
        lambda t: (
            _parquet(t),
            (t / "cell.parquet").write_bytes((t / "cell.parquet").read_bytes()[:5000]),
        ),
        ("cell.parquet", "not a readable Parquet file"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet without evalwatt's footer metadata",
        lambda t: _parquet(t, footer=None),
        ("cell.parquet", "no evalwatt.trace metadata", "source, domain, is_estimate"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet footer that is not JSON",
        lambda t: _raw_footer(t, "{nvml"),
        ("cell.parquet", "evalwatt.trace is not JSON"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet footer with is_estimate as a string",
        lambda t: _parquet(t, footer={**NVML_FOOTER, "is_estimate": "false"}),
        ("cell.parquet", "is_estimate is 'false'", "true or false"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet footer with an unknown domain",
        lambda t: _parquet(t, footer={**NVML_FOOTER, "domain": "dram"}),
        ("cell.parquet", "domain is 'dram'", "gpu, cpu"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet without a t_unix column",
        lambda t: _parquet(t, edit=lambda c: c.pop("t_unix")),
        ("cell.parquet", "no t_unix column"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet t_unix as text",
        lambda t: _parquet(t, edit=lambda c: c.update(t_unix=[str(v) for v in c["t_unix"]])),
        ("cell.parquet", "column t_unix holds string", "expected numbers"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet NaN counter",
        lambda t: _parquet(t, edit=lambda c: c["energy_mj"].__setitem__(6, float("nan"))),
        ("cell.parquet: row 7", "energy_mj", "nan", "not a finite number"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet null time",
        lambda t: _parquet(t, edit=lambda c: c["t_unix"].__setitem__(2, None)),
        ("cell.parquet: row 3", "t_unix is empty"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet null device",
        lambda t: _parquet(t, edit=lambda c: c["device"].__setitem__(1, None)),
        ("cell.parquet: row 2", "device", "is empty"),
        trace="cell.parquet",
    ),
    Bad(
        "Parquet without rows",
        lambda t: _parquet(t, edit=lambda c: [v.clear() for v in c.values()]),
        ("cell.parquet", "no rows"),
        trace="cell.parquet",
    ),
    # timelines
    Bad(
        "missing timeline file",
        nothing,
        ("absent.marks.json", "no such timeline file"),
        timeline="absent.marks.json",
    ),
    Bad(
        "timeline is a directory",
        lambda t: (t / "marks").mkdir(),
        ("marks", "is a directory, not a timeline file"),
        timeline="marks",
    ),
    Bad(
        "timeline not JSON",
        lambda t: (t / "cell.marks.json").write_text('{\n "job_start": 1795302769.1,\n'),
        ("cell.marks.json:3", "not JSON"),
    ),
    Bad(
        "timeline is a JSON list",
        lambda t: (t / "cell.marks.json").write_text("[1795302769.1, 1795302928.4]"),
        ("cell.marks.json", "expected a JSON object of marks", "list"),
    ),
    Bad(
        "mark as a string",
        lambda t: _set_marks(t, inference_start="1795302814.4892733"),
        ("cell.marks.json", "mark inference_start", "'1795302814.4892733'", "expected a number"),
    ),
    Bad(
        "mark as a boolean",
        lambda t: _set_marks(t, inference_end=True),
        ("cell.marks.json", "mark inference_end is True", "expected a number"),
    ),
    Bad(
        "mark as NaN",
        lambda t: (t / "cell.marks.json").write_text('{"inference_start": NaN}'),
        ("cell.marks.json", "mark inference_start", "nan", "not a finite number"),
    ),
    Bad(
        "marks under a 'marks' key that is a list",
        lambda t: (t / "cell.marks.json").write_text('{"marks": [1, 2]}'),
        ("cell.marks.json", "marks is [1, 2]", "expected a JSON object"),
    ),
    Bad(
        "mark written twice",
        lambda t: (t / "cell.marks.json").write_text('{"job_end": 1.0, "job_end": 2.0}'),
        ("cell.marks.json", "mark job_end appears twice"),
    ),
    Bad(
        "timeline without inference_start",
        lambda t: _set_marks(t, inference_start=None),
        ("cell.marks.json", "no mark inference_start", "marks present: cold_idle_end"),
    ),
    Bad(
        "inference window ending before it starts",
        lambda t: _set_marks(t, inference_end=_marks(t)["inference_start"] - 10),
        ("cell.marks.json", "mark inference_end=", "10.000 s before inference_start"),
    ),
    Bad(
        "inference window outside the trace",
        lambda t: _set_marks(
            t,
            inference_start=_marks(t)["inference_start"] + 1000,
            inference_end=_marks(t)["inference_end"] + 1000,
        ),
        ("cell.marks.json", "mark inference_start", "cell.csv", "after the last sample"),
    ),
    Bad(
        "pad window outside the trace",
        lambda t: _set_marks(t, pad_end=_marks(t)["pad_end"] + 100),
        ("cell.marks.json", "mark pad_end", "98.", "after the last sample"),
    ),
    Bad(
        "negative output_tokens in the timeline",
        lambda t: _set_marks(t, output_tokens=-5),
        ("cell.marks.json", "output_tokens is -5", "whole number"),
    ),
    Bad(
        "fractional output_tokens in the timeline",
        lambda t: _set_marks(t, output_tokens=1.5),
        ("cell.marks.json", "output_tokens is 1.5", "whole number"),
    ),
    Bad(
        "baseline timeline without pad_start",
        lambda t: _set_marks(t, "baseline.marks.json", pad_start=None),
        ("baseline.marks.json", "no mark pad_start"),
        extra=BASELINE,
    ),
    Bad(
        "baseline trace with only its header",
        lambda t: (t / "baseline.csv").write_text("t_unix,energy_mj,power_mw\n"),
        ("baseline.csv", "no samples"),
        extra=BASELINE,
    ),
    # numbers and options on the command line
    Bad(
        "negative --questions", nothing, ("--questions is -3", ">= 1"), extra=("--questions", "-3")
    ),
    Bad("zero --questions", nothing, ("--questions is 0", ">= 1"), extra=("--questions", "0")),
    Bad(
        "non-numeric --questions",
        nothing,
        ("--questions is 'abc'", "whole number"),
        extra=("--questions", "abc"),
    ),
    Bad(
        "negative --output-tokens",
        nothing,
        ("--output-tokens is -1", ">= 1"),
        extra=("--output-tokens", "-1"),
    ),
    Bad(
        "fractional --output-tokens",
        nothing,
        ("--output-tokens is '1.5'", "whole number"),
        extra=("--output-tokens", "1.5"),
    ),
    Bad(
        "CSV whose times are milliseconds",
        lambda t: _write_rows(
            t, [_rows(t)[0]] + [[str(float(r[0]) * 1000), *r[1:]] for r in _rows(t)[1:]]
        ),
        ("cell.csv:2", "t_unix is '1795302769133.0'", "looks like milliseconds", "unix seconds"),
    ),
    Bad(
        "timeline whose marks are milliseconds",
        lambda t: _set_marks(t, job_start=_marks(t)["job_start"] * 1000),
        ("cell.marks.json", "mark job_start", "looks like milliseconds"),
    ),
    Bad(
        "baseline trace without its timeline",
        nothing,
        ("--baseline-trace and --baseline-timeline go together",),
        extra=("--baseline-trace", "{tmp}/baseline.csv"),
    ),
    Bad(
        "baseline timeline without its trace",
        nothing,
        ("--baseline-trace and --baseline-timeline go together",),
        extra=("--baseline-timeline", "{tmp}/baseline.marks.json"),
    ),
]
BY_NAME = {case.name: case for case in CASES}


def _files(tmp: Path) -> set[Path]:
    return set(tmp.rglob("*"))


def _check_message(err: str, case: Bad, tmp: Path) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("evalwatt energy: error: "), err
    assert len(lines[0]) < 400, err
    for text in case.expect:
        assert text.format(tmp=tmp) in lines[0], (text, lines[0])


def test_the_table_has_enough_distinct_cases():
    assert len(BY_NAME) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, llama1b_dir, capsys):
    _copy_real(llama1b_dir, tmp_path)
    case.make(tmp_path)
    inputs = _files(tmp_path)
    code = cli_main(case.argv(tmp_path))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == ""  # no half-written JSON
    _check_message(err, case, tmp_path)
    assert _files(tmp_path) == inputs  # nothing written next to the inputs


SUBPROCESS_CASES = [
    "CSV cut in the middle of its last line (partial number, fewer fields)",
    "Parquet without evalwatt's footer metadata",
    "timeline is a JSON list",
    "negative --questions",
]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_through_python_m_evalwatt(name, tmp_path, llama1b_dir):
    case = BY_NAME[name]
    _copy_real(llama1b_dir, tmp_path)
    case.make(tmp_path)
    inputs = _files(tmp_path)
    package_root = str(Path(evalwatt.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root}
    proc = subprocess.run(
        [sys.executable, "-m", "evalwatt", *case.argv(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    _check_message(proc.stderr, case, tmp_path)
    assert _files(tmp_path) == inputs


# --- the one fault that is not an error: a counter reset inside a window -----------------------


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _numbers(v)]
    return []


def test_counter_reset_in_the_inference_window_is_a_null_with_its_reason(
    tmp_path, llama1b_dir, capsys
):
    _copy_real(llama1b_dir, tmp_path)
    rows = _rows(tmp_path)
    marks = _marks(tmp_path)
    # the driver reloads 20 s into generation: the counter restarts at 1,000 mJ
    line = next(i for i, r in enumerate(rows[1:], 1) if float(r[0]) > marks["inference_start"] + 20)
    shift = float(rows[line][1]) - 1000.0
    drop = float(rows[line - 1][1]) - 1000.0
    for r in rows[line:]:
        r[1] = f"{float(r[1]) - shift:.0f}"
    _write_rows(tmp_path, rows)
    inputs = _files(tmp_path)

    code = cli_main(
        ["energy", "--trace", str(tmp_path / "cell.csv"), "--timeline"]
        + [str(tmp_path / "cell.marks.json")]
        + [a.format(tmp=tmp_path) for a in BASELINE]
        + ["--questions", "96"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    reason = f"counter of device 0 went backwards by {drop:.0f} mJ at t={float(rows[line][0]):.3f}"
    assert result["inference_energy_j"] is None
    assert reason in result["inference_null_reason"]
    assert str(tmp_path / "cell.csv") in result["inference_null_reason"]
    assert result["check_counter_samples_inside_window_j"] is None
    assert result["check_power_integral_j"] is None
    whole = result["whole_job"]
    assert whole["job"] is None and whole["net"] is None and result["gap_j"] is None
    assert reason in result["terms"]["job"]["null_reason"]
    assert whole["pad"] > 0 and whole["baseline_job"] > 0  # windows away from the reset stand
    assert all(v is None for v in result["per_unit_wh"].values())
    assert all(n >= 0 for n in _numbers(result)), "a negative number in the output"
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"evalwatt energy: note: inference_energy_j is null: {result['inference_null_reason']}"
    ]
    assert _files(tmp_path) == inputs


def test_the_parquet_copy_of_the_real_trace_reads_like_the_csv(tmp_path, llama1b_dir, capsys):
    """The control of the Parquet cases: unbroken, the conversion gives the CSV's numbers."""
    _copy_real(llama1b_dir, tmp_path)
    _parquet(tmp_path)
    results = []
    for trace in ("cell.csv", "cell.parquet"):
        argv = ["energy", "--trace", str(tmp_path / trace)]
        assert cli_main([*argv, "--timeline", str(tmp_path / "cell.marks.json")]) == 0
        results.append(json.loads(capsys.readouterr().out))
    csv_out, parquet_out = results
    assert parquet_out["inference_energy_j"] == pytest.approx(csv_out["inference_energy_j"])
    assert parquet_out["inference_energy_j"] > 0
    assert parquet_out["whole_job"] == pytest.approx(csv_out["whole_job"])
