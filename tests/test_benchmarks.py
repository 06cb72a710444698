"""The benchmark scripts run, in their short modes, so that none of them can break silently
(issue 15: plan_scale.py's bare workflow fell behind the Snakefile and nothing noticed).

* ``plan_scale.py --short``: a 300-cell matrix, evalwatt's dry run and the bare workflow's,
  whose DAGs must have the same jobs per rule (the script exits 1 otherwise). The ratio is
  printed, not judged: the full 1,800-cell figure is in docs/performance.md.
* ``sampler_cost.py`` for 5 s at 10 Hz: the sampler as a job runs it, on whatever this machine
  has (the CPU model at least), against its own expectations (CPU share, samples present).
* ``glmm_fit.py`` with few draws, in the GLMM's environment (.venv-glmm, as tests/unit/
  test_glmm.py finds it; skipped where there is none, outside CI).

Not here: nvml_check.py, gpu_truth.py and nvml_visible_devices_check.py need an NVIDIA GPU.
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
    # records, and for each a render and a run of every job (cells, baselines, judge jobs)
    assert per_rule["cell_energy"] == (300, 300)
    assert per_rule["run_job"] == per_rule["render_job"]
    assert per_rule["run_job"][0] > 300
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
