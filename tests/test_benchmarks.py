"""The benchmark scripts run, in their short modes, so that none of them can break silently
(issue 15: plan_scale.py's bare workflow fell behind the Snakefile and nothing noticed).

* ``plan_scale.py --short``: a 300-cell matrix, evalwatt's dry run and the bare workflow's,
  whose DAGs must have the same jobs per rule (the script exits 1 otherwise). The ratio is
  printed, not judged: the full 1,800-cell figure is in docs/performance.md.
* ``sampler_cost.py`` for 5 s at 10 Hz: the sampler as a job runs it, on whatever this machine
  has (the CPU model at least), against its own expectations (CPU share, samples present).
* ``glmm_fit.py`` with few draws, in the GLMM's environment (.venv-glmm, as tests/unit/
  test_glmm.py finds it; skipped where there is none, outside CI).
* ``overhead.py --short``: the study's cost preview on 4 of its models, both execution modes
  by phase and their job counts, read back from its JSON.
* ``gpu_modes.py --short``: per-cell and per-model execution of the same 4 cells, the real
  rendered jobs (runtime, sampler, Inspect) against a stand-in for ``transformers serve``,
  on the CPU, through the workflow's energy step, the preview check and the calibration.

Not here: nvml_check.py, gpu_truth.py and nvml_visible_devices_check.py need an NVIDIA GPU
(gpu_modes.py's GPU figures: docs/validation.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(REPO / "tests" / "unit"))
sys.path.insert(0, str(BENCHMARKS))

import gpu_modes  # noqa: E402
import test_glmm  # noqa: E402

glmm_python = test_glmm.glmm_python
"""The GLMM environment's Python, found (or failed in CI) as the GLMM's own tests do."""


def run(python: str, script: str, *argv: str, timeout_s: int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [python, str(BENCHMARKS / script), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, f"{script} {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_plan_scale_short_mode_compares_the_same_dag() -> None:
    out = run(sys.executable, "plan_scale.py", "--short", timeout_s=600).stdout
    assert "= 300 cells" in out
    stats = dict(re.findall(r"^  (\w+)\s+(\d+\s+\d+)$", out, flags=re.MULTILINE))
    per_rule = {rule: tuple(int(n) for n in counts.split()) for rule, counts in stats.items()}
    # every rule of the Snakefile ran in both, with the same count: 300 cells, their energy
    # records, and for each a render and a run of every job (cells, baselines, judge passes)
    assert per_rule["cell_energy"] == (300, 300)
    # run_job runs cells and baselines (model jobs in per-model mode), run_judge_pass the
    # judge passes: together, every rendered job
    runs = tuple(
        a + b for a, b in zip(per_rule["run_job"], per_rule["run_judge_pass"], strict=True)
    )
    assert runs == per_rule["render_job"]
    assert per_rule["run_job"][0] > 300 and per_rule["run_judge_pass"][0] >= 1
    for rule in ("plan", "final_table", "figures", "report_pages", "all"):
        assert per_rule[rule] == (1, 1), rule
    ratio = re.search(r"ratio evalwatt / bare: (\d+\.\d+) wall", out)
    assert ratio is not None and float(ratio.group(1)) > 0


def test_sampler_cost_short_mode_meets_its_expectations(tmp_path: Path) -> None:
    figures = tmp_path / "sampler_cost.json"
    argv = ("--seconds", "5", "--interval", "0.1", "--json", str(figures))
    run(sys.executable, "sampler_cost.py", *argv, timeout_s=120)
    (cost,) = json.loads(figures.read_text())
    assert "cpu-model" in cost["probes"]
    assert cost["rounds"] >= 40  # 10 Hz over 5 s


def test_glmm_fit_short_mode_runs_in_the_glmm_environment(glmm_python: str) -> None:
    out = run(glmm_python, "glmm_fit.py", "--draws", "100", "--chains", "2", timeout_s=600).stdout
    assert "first fit (with JAX compilation)" in out and "second fit" in out
    assert re.search(r"divergences \d+; worst R-hat \d+\.\d+; smallest ESS \d+", out)


def test_overhead_short_mode_prints_both_modes_by_phase(tmp_path: Path) -> None:
    """benchmarks/overhead.py --short: the study's preview in both modes, by phase, with the
    per-model share outside generation beside the per-cell one (the full figures:
    docs/performance.md)."""
    figures = tmp_path / "overhead.json"
    out = run(
        sys.executable, "overhead.py", "--short", "--json", str(figures), timeout_s=300
    ).stdout
    assert re.search(r"per-model \d+\.\d % \(goal <= 10 %: (meets|misses) it\), per-cell", out)
    modes = json.loads(figures.read_text())
    per_cell, per_model = modes["per-cell"], modes["per-model"]
    assert per_cell["jobs"]["cell"] == 40 and per_model["jobs"]["cell"] == 0
    assert 0 < per_model["jobs"]["model"] < per_cell["jobs"]["cell"]
    # the same generation in both modes; per-model loads each model once
    generation = per_cell["gpu_hours"]["generation"]
    assert generation > 0 and abs(per_model["gpu_hours"]["generation"] / generation - 1) < 1e-9
    assert per_model["gpu_hours"]["loading"] < per_cell["gpu_hours"]["loading"]
    assert per_model["share_outside_generation"] < per_cell["share_outside_generation"]


def test_gpu_modes_short_mode_runs_both_modes_end_to_end(tmp_path: Path) -> None:
    """benchmarks/gpu_modes.py --short: the 4 cells in per-cell mode (a baseline and 4 cell
    jobs) and in per-model mode (one model job), each cell's generation energy from the
    workflow's energy step in both, the GPU-seconds outside generation, the preview against
    the measured seconds, and the goals that need a GPU reported as not checked."""
    out = tmp_path / "modes"
    printed = run(sys.executable, "gpu_modes.py", "--short", "--out", str(out), timeout_s=600)
    report = json.loads((out / "report.json").read_text())
    runs = {r["mode"]: r for r in report["runs"]}
    assert sorted(runs) == ["per-cell", "per-model"] and not report["skipped"]
    ran = {mode: sorted(j["kind"] for j in r["jobs"]) for mode, r in runs.items()}
    assert ran == {"per-cell": ["baseline", *["cell"] * 4], "per-model": ["model"]}
    assert all(j["rc"] == 0 for r in runs.values() for j in r["jobs"])
    for mode, r in runs.items():
        assert len(r["cells"]) == 4
        for c in r["cells"]:  # the CPU-time model stands in for NVML; 4 or 8 tokens x 4 samples
            assert c["family"] == "cpu_est" and c["generation_j"] > 0, (mode, c)
            assert c["output_tokens"] == 4 * int(c["cell"].split("_t")[1].split("_")[0])
            assert c["counter_j"] is None and c["counter_null_reason"]
        ended = {c["cooldown_ended_by"] for c in r["cells"]}
        assert ended == ({"no_power_reading"} if mode == "per-model" else {None})
        seconds = r["gpu_seconds"]
        assert seconds["jobs"] == (5 if mode == "per-cell" else 1)
        assert 0 < seconds["generation_gpu_s"] < seconds["job_gpu_s"]
        kinds = set(r["preview"]["kinds"])
        assert kinds == ({"baseline", "cell"} if mode == "per-cell" else {"model"})
        calibrated = report["calibrated_preview"]["runs"][r["run"]]["kinds"]
        assert set(calibrated) == kinds
        # every job warmed its server up (a stand-in for transformers serve: hf) once it served
        warm = [p["measured"]["warm_up_s"] for p in r["job_phases"]]
        assert len(warm) == seconds["jobs"] and all(w > 0 for w in warm), warm
    # one model load instead of five: fewer GPU-seconds outside generation
    outside = {m: r["gpu_seconds"]["outside_generation_gpu_s"] for m, r in runs.items()}
    assert outside["per-model"] < outside["per-cell"]
    cells = report["summary"]["cells"]
    assert len(cells) == 4
    assert all(row["per-model"]["vs_per_cell_pct"] is not None for row in cells.values())
    counter = [g for g in report["goals"] if "100 Hz counter" in g["goal"]]
    assert len(counter) == 8 and all(g["passed"] is None for g in counter)
    assert (out / "calibration.json").is_file()
    assert "outside generation GPU-s" in printed.stdout


def test_gpu_modes_repeated_answer_length_runs_the_same_cell_twice_in_a_model_job(
    tmp_path: Path,
) -> None:
    """``--tokens 8,8``: the second 8 is a benchmark of its own over the same questions, so a
    model job runs the same cell on a fresh server and then on one that has served it (what
    tells a fresh server's first-use cost from a cell's position: docs/validation.md)."""
    args = gpu_modes.parse_args(
        ["--out", str(tmp_path), "--tokens", "8,16,8", "--max-connections", "2", "--samples", "4"]
    )
    benchmarks = gpu_modes.benchmarks_of(args)
    assert list(benchmarks) == ["synth_t8", "synth_t16", "synth_t8_2"]
    assert benchmarks["synth_t8_2"] == benchmarks["synth_t8"]  # the same questions and length
    setup = {"model": gpu_modes.fake_model(tmp_path), "benchmarks": benchmarks}
    config = gpu_modes.config_for(args, "per-model", 1, setup, None, checked=False)
    layout = gpu_modes.Layout.of(tmp_path, config.run)
    jobs = gpu_modes.RunJobs(config, gpu_modes.plan_run(config), layout)
    (model_job,) = [jobs.job(kind, job_id) for kind, job_id in jobs.jobs()]
    assert model_job.spec.pack is not None
    ran = [c.evaluation.benchmark for c in model_job.spec.pack.cells]
    assert ran == ["synth_t16", "synth_t8", "synth_t8_2"]  # the repetition right after its twin


def test_gpu_modes_a_phase_cut_in_its_middle_is_unknown_not_zero() -> None:
    """A phase's seconds: from its two marks; 0 for a phase the job did not have (neither
    mark); None for one cut after its start (its length is not known, and is not 0); a sum
    over a run's jobs is None when one job's figure is."""
    marks = {"pad_start": 1.0, "pad_end": 4.5, "cooldown_start": 9.0}
    assert gpu_modes._span(marks, "pad_start", "pad_end") == 3.5
    assert gpu_modes._span(marks, "warm_up_start", "warm_up_end") == 0.0
    assert gpu_modes._span(marks, "cooldown_start", "cooldown_end") is None

    def job(load_s: float | None) -> dict[str, object]:
        measured = {"load_s": load_s, "reference_idle_s": 0.0, "generation_s": 10.0}
        measured |= {"pad_s": 0.0, "inspect_s": 2.0, "cooldown_s": 1.0, "other_s": 3.0}
        return {"kind": "cell", "wall_s": 50.0, "preview": None, "measured": measured}

    measured, _ = gpu_modes.phase_sums([job(20.0), job(15.0)])["cell"]
    assert measured["load_s"] == 35.0 and measured["idle_s"] == 12.0
    measured, _ = gpu_modes.phase_sums([job(20.0), job(None)])["cell"]
    assert measured["load_s"] is None and measured["generation_s"] == 20.0


def test_gpu_modes_can_serve_with_cudnn_attention(tmp_path: Path) -> None:
    """``--hf-cudnn-attention``: the hf server's command and spec say cuDNN on (PyTorch's
    default), so that its cost against evalwatt's default is measured on one machine."""
    for flag, value in (([], "off"), (["--hf-cudnn-attention"], "on")):
        args = gpu_modes.parse_args(["--out", str(tmp_path), "--samples", "4", *flag])
        setup = {
            "model": gpu_modes.fake_model(tmp_path),
            "benchmarks": gpu_modes.benchmarks_of(args),
        }
        config = gpu_modes.config_for(args, "per-model", 1, setup, None, checked=False)
        jobs = gpu_modes.RunJobs(
            config, gpu_modes.plan_run(config), gpu_modes.Layout.of(tmp_path, config.run)
        )
        ((kind, job_id),) = jobs.jobs()
        server = jobs.job(kind, job_id).spec.server
        assert f"--cudnn-attention={value}" in server.argv
        assert server.settings.cudnn_attention is (value == "on")
