"""The contract files: each refuses a schema_version it does not know, a key it does not
have and a number JSON cannot hold, with a message naming the file; the docs list them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evalwatt.base.errors import UserError
from evalwatt.base.vocabulary import Domain, Family, Mark
from evalwatt.contracts.contract import (
    ContractError,
    SchemaVersionError,
    parse_contract,
    read_contract,
    write_contract,
)
from evalwatt.contracts.describe import CONTRACTS, describe_contracts
from evalwatt.contracts.plan import PlanFile
from evalwatt.contracts.record import TermRecord
from evalwatt.contracts.timeline import TimelineFile

REPO = Path(__file__).resolve().parents[2]
VERSIONED = (*CONTRACTS, PlanFile)


@pytest.mark.parametrize("model", VERSIONED, ids=[m.__name__ for m in VERSIONED])
@pytest.mark.parametrize("version", ["other", None])
def test_an_unknown_schema_version_is_refused_with_a_message(tmp_path, model, version):
    known = model.known_version()
    data = {} if version is None else {"schema_version": known + 1}
    path = tmp_path / "file.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError) as caught:
        read_contract(model, path)
    shown = "None" if version is None else str(known + 1)
    assert str(caught.value).startswith(f"{path}: {model.FILE} has schema_version {shown}")
    older = ", ".join(map(str, model.OLDER_VERSIONS))  # still read: fields added since default
    readable = f"{older} and {known}" if older else f"{known} only"
    assert f"reads version {readable}." in str(caught.value)
    assert isinstance(caught.value, UserError)  # one short message from the CLI, exit 2


def test_an_unknown_key_is_refused_not_ignored(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps({"schema_version": 1, "marks": {}, "env": {"X": "1"}}))
    with pytest.raises(ContractError, match=r"(?s)timeline\.json: not a valid job timeline.*env"):
        read_contract(TimelineFile, path)


def test_an_unknown_mark_is_refused():
    with pytest.raises(ContractError, match="inference_begin"):
        parse_contract(TimelineFile, {"schema_version": 1, "marks": {"inference_begin": 1.0}}, "x")


def test_nan_is_refused_never_written_as_null():
    fields = {"formula": "f", "null_reason": None, "window": None, "per_device_j": {}}
    fields |= {"extrapolated_s": 0.0, "power_integral_j": None}
    with pytest.raises(ValueError, match="finite"):
        TermRecord(energy_j=math.nan, **fields)
    assert TermRecord(energy_j=None, **fields).energy_j is None


def test_a_file_that_is_not_json_or_absent_is_a_contract_error(tmp_path):
    bad = tmp_path / "timeline.json"
    bad.write_text("{")
    with pytest.raises(ContractError, match="is not JSON"):
        read_contract(TimelineFile, bad)
    with pytest.raises(ContractError, match="cannot read"):
        read_contract(TimelineFile, tmp_path / "missing.json")


def test_write_then_read_round_trips(tmp_path):
    timeline = TimelineFile(marks={Mark.JOB_START: 1.5, Mark.JUDGING_START: 2.0})
    write_contract(tmp_path / "t.json", timeline)
    assert read_contract(TimelineFile, tmp_path / "t.json") == timeline
    assert json.loads((tmp_path / "t.json").read_text())["marks"]["judging_start"] == 2.0


def test_family_is_a_domain_measured_or_estimated():
    assert Family.of(Domain.GPU, False) is Family.GPU
    assert Family.of(Domain.CPU, True) is Family.CPU_EST
    assert [f.value for f in Family] == ["gpu", "cpu", "cpu_est"]


def test_architecture_doc_lists_the_contracts():
    """docs/architecture.md embeds `python -m evalwatt.contracts`: a contract change must
    update the doc."""
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert describe_contracts() in doc
