"""The energy step on a model job the real runtime wrote (test_packed_runtime.py's: a fake
chat server, real Inspect evaluations, the real sampler's CPU-time model in trace parts): each
cell's terms from its own windows, and the model's overhead shared without a joule lost."""

from __future__ import annotations

import pytest
from test_packed_runtime import CELLS, CHAT_SERVER, _model_spec

from evalwatt.base.vocabulary import Family, JobStatus
from evalwatt.contracts.record import FamilyEnergy
from evalwatt.energy.readings import cell_energy
from evalwatt.runtime.runner import run_job


def test_each_cell_of_a_real_model_job_has_its_energy_and_its_share(tmp_path):
    server = tmp_path / "chat_server.py"
    server.write_text(CHAT_SERVER)
    job = run_job(_model_spec(tmp_path, server))
    assert job.status == JobStatus.OK
    families = {}
    for cell_id in CELLS:
        family = cell_energy(tmp_path / "cells" / cell_id, None, None, 6, 12)[Family.CPU_EST]
        assert isinstance(family, FamilyEnergy), family
        families[cell_id] = family
        terms = family.terms
        assert terms["inference"].energy_j > 0 and terms["evaluation"].energy_j > 0
        assert terms["evaluation"].energy_j >= terms["inference"].energy_j
        assert terms["reference_idle"].energy_j > 0
        assert terms["cooldown"].energy_j is not None  # ended at once: no GPU power here
        assert terms["net"].energy_j is None and "one job for 3 cells" in terms["net"].null_reason
    overhead = {f.terms["model_overhead"].energy_j for f in families.values()}
    assert len(overhead) == 1 and overhead.pop() > 0
    shares = [f.terms["shared_overhead"].energy_j for f in families.values()]
    total = families[CELLS[0]].terms["model_overhead"].energy_j
    assert sum(shares) == pytest.approx(total, rel=1e-9)
