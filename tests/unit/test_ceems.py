"""The CEEMS API client against a local server (loopback only) that follows the API's schema.

Real CEEMS was not run: it cannot be built here. The server below answers as
ceems_api_server v0.10.2 does (``GET /api/v1/units``, ``cluster_id``, ``uuid``, ``from``,
``to``; the user in ``X-Grafana-User``; ``{"status": "success", "data": [unit...]}``), and
misbehaves on request: a unit that appears late or never (a job under the cutoff), 401/403,
500, a reply that is not JSON, a slow reply, ``from``/``to`` in seconds or milliseconds.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from evalwatt.config.load import ConfigError, from_dict
from evalwatt.contracts.accounting import AccountingFile
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.energy.cluster.ceems import CeemsSource, CeemsUnit, to_unix_s
from evalwatt.energy.cluster.collect import collect_source
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.energy.sources import Unavailable

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "4242"
CLUSTER = "jz-h100"
START, END = 1_795_302_769.1, 1_795_303_100.5  # the job's marks (unix s)
SECRET = "alice:s3cr3t-do-not-leak"


@dataclass
class Behaviour:
    """What the fake CEEMS does; ``requests`` records what it was asked."""

    appear_after: int | None = 0  # requests before the unit shows; None: never (under cutoff)
    status: int = 200
    body: str | None = None  # a raw body instead of the JSON reply
    delay_s: float = 0.0
    time_mode: str = "skip"  # skip (uuid given: v0.10.2), s, or ms: how from/to are applied
    gpu_kwh: float = 0.012
    ts_in_ms: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)

    def unit(self) -> dict[str, Any]:
        scale = 1000 if self.ts_in_ms else 1
        return {
            "cluster_id": CLUSTER,
            "resource_manager": "slurm",
            "uuid": JOB_ID,
            "name": "ew-cell-x",
            "project": "abc",
            "username": "alice",
            "state": "COMPLETED",
            "started_at_ts": int((START - 2) * scale),
            "ended_at_ts": int((END + 3) * scale),
            "elapsed": "00:05:36",
            "total_time_seconds": {"walltime": END - START + 5, "alloc_gputime": END - START},
            "total_gpu_energy_usage_kwh": {"total": self.gpu_kwh},
            "total_cpu_energy_usage_kwh": {"total": 0.004},
            "total_gpu_emissions_gms": {"emaps_total": 1.2},
        }


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        b.requests.append({"path": url.path, "query": query, "headers": dict(self.headers)})
        if b.delay_s:
            time.sleep(b.delay_s)
        if b.status != 200:
            self._send(b.status, {"status": "error", "errorType": "x", "error": "refused"})
            return
        if b.body is not None:
            self._send_raw(200, b.body)
            return
        seen = len(b.requests)
        data = []
        if b.appear_after is not None and seen > b.appear_after:
            unit = b.unit()
            if query.get("uuid", [""])[0] == unit["uuid"] and self._in_window(b, query, unit):
                data.append(unit)
        self._send(200, {"status": "success", "data": data})

    @staticmethod
    def _in_window(b: Behaviour, query: dict[str, list[str]], unit: dict[str, Any]) -> bool:
        if b.time_mode == "skip":
            return True
        scale = 1000 if b.time_mode == "ms" else 1  # the server's reading of from/to
        lo, hi = int(query["from"][0]) / scale, int(query["to"][0]) / scale
        start = unit["started_at_ts"] / (1000 if b.ts_in_ms else 1)
        return lo <= start <= hi

    def _send(self, status: int, payload: Any) -> None:
        self._send_raw(status, json.dumps(payload))

    def _send_raw(self, status: int, text: str) -> None:
        body = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out first
            pass


@pytest.fixture
def server():
    """A fake CEEMS API server on 127.0.0.1; yields (url, behaviour)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.behaviour = Behaviour()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.behaviour  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def settings(url: str, **accounting: Any) -> Settings:
    from conftest import _SMALL_CONFIG  # type: ignore[import-not-found]

    raw = copy.deepcopy(_SMALL_CONFIG)
    ceems_cfg = {"url": url, **accounting.pop("ceems", {})}
    raw["accounting"] = {
        "sources": ["ceems-api"],
        "cluster_id": CLUSTER,
        "ceems": ceems_cfg,
        "pue": 1.2,
        "timeout_s": 2,
        "deadline_s": 3,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.05,
        **accounting,
    }
    return Settings.of(from_dict(raw, REPO))


def job(tmp_path: Path) -> JobFacts:
    marks = {"job_start": START, "job_end": END}
    return JobFacts(tmp_path, JOB_ID, "jzxh042", marks, ("GPU-1",), 1)


def collect(s: Settings, facts: JobFacts) -> AccountingFile:
    """The CEEMS API's record of the job, as the collection rule writes it."""
    return collect_source("ceems-api", s, facts)


def test_unit_missing_at_first_then_there(server, tmp_path):
    url, b = server
    b.appear_after = 2
    record = collect(settings(url), job(tmp_path))
    assert record.status == "ok", record.detail
    assert len(record.exchanges) == 3 and record.context["tries"] == 3
    assert [x.status for x in record.exchanges] == [200, 200, 200]
    unit = CeemsUnit.of(record, 1.2, CLUSTER)
    assert unit.gpu_reported_j == pytest.approx(0.012 * 3.6e6)
    assert CeemsSource(unit).job().energy_j == pytest.approx(0.012 * 3.6e6 / 1.2)
    assert unit.start == pytest.approx(START - 2) and unit.time_read_as == "milliseconds"
    # the query: job id, cluster id, the user header, a User-Agent
    sent = b.requests[-1]
    assert sent["path"] == "/api/v1/units"
    assert sent["query"]["uuid"] == [JOB_ID] and sent["query"]["cluster_id"] == [CLUSTER]
    assert sent["headers"]["X-Grafana-User"]
    assert sent["headers"]["User-Agent"].startswith("evalwatt/")


def test_a_running_unit_is_waited_for(server, tmp_path):
    url, b = server
    original = b.unit
    calls = {"n": 0}

    def unit() -> dict[str, Any]:
        calls["n"] += 1
        u = original()
        if calls["n"] == 1:
            u["state"], u["ended_at_ts"] = "RUNNING", 0
        return u

    b.unit = unit  # type: ignore[method-assign]
    record = collect(settings(url), job(tmp_path))
    assert record.status == "ok" and len(record.exchanges) == 2


def test_a_job_under_the_cutoff_never_appears_and_points_at_the_padding(server, tmp_path):
    url, b = server
    b.appear_after = None
    started = time.monotonic()
    record = collect(settings(url, deadline_s=0.5), job(tmp_path))
    assert time.monotonic() - started < 5
    assert record.status == "error"
    assert len(record.exchanges) >= 2  # it waited and asked again
    detail = record.detail or ""
    assert "cutoff_duration" in detail and "cluster.accounting_window_s = 300 s" in detail
    assert f"ran {END - START:.0f} s" in detail
    with pytest.raises(Unavailable, match="cutoff_duration"):
        CeemsUnit.of(record, 1.2, CLUSTER)


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_are_not_retried(server, tmp_path, status):
    url, b = server
    b.status = status
    record = collect(settings(url), job(tmp_path))
    assert record.status == "error" and len(record.exchanges) == 1
    assert f"HTTP {status}" in (record.detail or "")
    assert "accounting.credentials" in (record.detail or "")


def test_server_error_is_retried_until_the_deadline(server, tmp_path):
    url, b = server
    b.status = 500
    # a deadline of several requests even on a loaded machine (one request took 0.5 s)
    record = collect(settings(url, deadline_s=1.5), job(tmp_path))
    assert record.status == "error" and len(record.exchanges) >= 2
    assert "HTTP 500" in (record.detail or "")
    assert all(x.status == 500 for x in record.exchanges)


def test_malformed_json_is_an_error_with_an_excerpt(server, tmp_path):
    url, b = server
    b.body = "<html>Bad gateway</html>"
    record = collect(settings(url), job(tmp_path))
    assert record.status == "error" and len(record.exchanges) == 1
    assert "not JSON" in (record.detail or "") and "Bad gateway" in (record.detail or "")
    assert record.exchanges[0].body == "<html>Bad gateway</html>"  # kept verbatim


def test_a_slow_server_times_out_and_is_retried(server, tmp_path):
    url, b = server
    b.delay_s = 1.0
    record = collect(settings(url, timeout_s=0.2, deadline_s=0.5), job(tmp_path))
    assert record.status == "error"
    assert all(x.status is None for x in record.exchanges)
    assert "no reply within 0.2 s" in (record.detail or "")


@pytest.mark.parametrize(("server_reads", "client_sends", "found"), [
    ("s", "s", True), ("ms", "ms", True), ("s", "ms", False), ("ms", "s", False),
    ("skip", "s", True), ("skip", "ms", True),
])  # fmt: skip
def test_from_and_to_in_seconds_or_milliseconds(
    server, tmp_path, server_reads, client_sends, found
):
    url, b = server
    b.time_mode = server_reads
    s = settings(url, ceems={"time_unit": client_sends}, deadline_s=0.2)
    record = collect(s, job(tmp_path))
    sent = b.requests[0]["query"]
    scale = 1000 if client_sends == "ms" else 1
    assert int(sent["from"][0]) == pytest.approx((START - 3600) * scale, abs=scale)
    assert int(sent["to"][0]) == pytest.approx((END + 3600) * scale, abs=scale)
    assert (record.status == "ok") is found
    if not found:
        assert "accounting.ceems.time_unit" in (record.detail or "")


@pytest.mark.parametrize("in_ms", [True, False])
def test_unit_timestamps_in_ms_or_s(server, tmp_path, in_ms):
    url, b = server
    b.ts_in_ms = in_ms
    unit = CeemsUnit.of(collect(settings(url), job(tmp_path)), 1.2, CLUSTER)
    assert unit.start == pytest.approx(START - 2, abs=1)
    assert unit.end == pytest.approx(END + 3, abs=1)
    assert unit.time_read_as == ("milliseconds" if in_ms else "seconds")
    assert to_unix_s(0) == (None, "0: not set")


def test_user_header_is_configurable_and_admin_path(server, tmp_path):
    url, b = server
    s = settings(url, ceems={"user_header": "X-Ceems-User", "user": "bob", "admin": True})
    assert collect(s, job(tmp_path)).status == "ok"
    sent = b.requests[-1]
    assert sent["path"] == "/api/v1/units/admin"
    assert sent["headers"]["X-Ceems-User"] == "bob" and "X-Grafana-User" not in sent["headers"]


def test_credentials_from_a_private_file_are_sent_and_never_kept(server, tmp_path):
    url, b = server
    secret = tmp_path / "ceems.cred"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    s = settings(url, credentials={"file": str(secret)})
    record = collect(s, job(tmp_path))
    assert record.status == "ok"
    assert b.requests[-1]["headers"]["Authorization"].startswith("Basic ")
    out = tmp_path / "ceems-api.json"
    write_contract(out, record)
    text = out.read_text()
    assert "s3cr3t" not in text and "YWxpY2U6czNjcjN0" not in text  # nor its base64
    assert "<redacted: basic credentials from file" in text
    assert read_contract(AccountingFile, out) == record


def test_a_world_readable_credentials_file_is_refused(server, tmp_path):
    url, b = server
    secret = tmp_path / "ceems.cred"
    secret.write_text(SECRET)
    secret.chmod(0o644)
    record = collect(settings(url, credentials={"file": str(secret)}), job(tmp_path))
    assert record.status == "error" and "chmod 600" in (record.detail or "")
    assert b.requests == []  # nothing was sent
    assert "s3cr3t" not in record.model_dump_json()


def test_credentials_from_an_environment_variable(server, tmp_path, monkeypatch):
    url, b = server
    monkeypatch.setenv("EW_TEST_CEEMS_TOKEN", "tok-123")
    s = settings(url, credentials={"env": "EW_TEST_CEEMS_TOKEN", "scheme": "bearer"})
    record = collect(s, job(tmp_path))
    assert b.requests[-1]["headers"]["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in record.model_dump_json()


@pytest.mark.parametrize("echoed", ["tok-123", "Bearer tok-123"])
def test_a_server_that_echoes_the_credentials_leaves_them_in_no_kept_reply(
    server, tmp_path, monkeypatch, echoed
):
    url, b = server
    b.body = json.dumps({"status": "error", "error": f"invalid credentials {echoed}"})
    monkeypatch.setenv("EW_TEST_CEEMS_TOKEN", "tok-123")
    s = settings(url, credentials={"env": "EW_TEST_CEEMS_TOKEN", "scheme": "bearer"})
    record = collect(s, job(tmp_path))
    assert record.status == "error"
    assert "invalid credentials" in record.model_dump_json()  # the reply is kept, redacted
    assert "tok-123" not in record.model_dump_json()


def test_unknown_pue_keeps_the_figure_but_no_gpu_energy(server, tmp_path):
    url, _ = server
    record = collect(settings(url, pue=None), job(tmp_path))
    unit = CeemsUnit.of(record, None, CLUSTER)
    assert unit.gpu_reported_j == pytest.approx(43200.0)
    with pytest.raises(Unavailable, match="includes the site's PUE"):
        CeemsSource(unit).job()
    with pytest.raises(Unavailable, match="job totals only"):
        CeemsSource(unit).window(START, END)


def test_tls_verification_is_on_by_default(tmp_path):
    s = settings("https://ceems.example.org")
    assert s.tls_verify is True


@pytest.mark.parametrize(
    ("accounting", "message"),
    [
        ({"sources": ["ceems-api"]}, "field accounting.ceems.url = None"),
        ({"sources": ["ceems-api"], "ceems": {"url": "https://c"}}, "accounting.cluster_id"),
        ({"headline_order": ["nvml", "prometheus"]}, "field accounting.headline_order.1"),
        ({"ceems": {"url": "https://u:p@c"}}, "field accounting.ceems.url"),
        (
            {"credentials": {"file": "/a", "env": "B"}},
            "field accounting.credentials = file '/a' and env 'B'",
        ),
        (
            {"credentials": {"env": "B"}, "prometheus": {"url": "http://prom.example.org"}},
            "clear text",
        ),
        ({"headline_order": ["sacct"]}, "field accounting.headline_order.0 = 'sacct'"),
    ],
)
def test_config_errors_name_the_field(accounting, message):
    from conftest import _SMALL_CONFIG  # type: ignore[import-not-found]

    raw = copy.deepcopy(_SMALL_CONFIG)
    raw["accounting"] = accounting
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_dict(raw, REPO)
