"""A CEEMS token never lands in a run's files (issue 16).

A whole run of the demo's shape (llama.cpp on the CPU, a cell, its load-only baseline, the
energy records, the final table and the audit), reduced to one cell, with the cluster's CEEMS
API collected after each job from a loopback server that requires a bearer token. The token is
given once by a credentials file and once by an environment variable (the config refuses both at
once). The server must have received it; then every file the run left (results, rule logs, job
logs, rendered scripts, specs, accounting files, audit, Snakemake's own logs) is read, bytes and
all, and the token is in none of them, nor in its basic-auth (base64) form.

The server also echoes the Authorization header it got in a field of its reply, as a careless
server might: the kept reply must not carry it either.

SLURM_JOB_ID is set for the run, so that each job records a scheduler id and the collector
looks it up (outside Slurm there is nothing to ask the API for, and the token would never be
read).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_demo_pipeline import REPO, snakemake  # tests/integration is on sys.path

TOKEN = "ew-tok-7c41d9e2b35f"
JOB_ID = "4242"
CLUSTER = "ew-secrets"
TOKEN_ENV = "EW_TEST_CEEMS_TOKEN"

pytestmark = pytest.mark.integration


@dataclass
class _Seen:
    authorizations: list[str | None] = field(default_factory=list)


class _Ceems(BaseHTTPRequestHandler):
    """``GET /api/v1/units`` as ceems_api_server v0.10.2 answers it, behind a bearer token; the
    unit's times are inside the queried window (the collector asks job start - 1 h to end + 1 h)."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        seen: _Seen = self.server.seen  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization")
        seen.authorizations.append(auth)
        if auth != f"Bearer {TOKEN}":
            self._send(401, {"status": "error", "error": f"unauthorized: {auth}"})
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        start_s = float(query["from"][0]) + 3600 - 1
        end_s = float(query["to"][0]) - 3600 + 1
        unit = {
            "cluster_id": CLUSTER,
            "resource_manager": "slurm",
            "uuid": query["uuid"][0],
            "state": "COMPLETED",
            "started_at_ts": int(start_s * 1000),
            "ended_at_ts": int(end_s * 1000),
            "elapsed": "00:00:30",
            "total_time_seconds": {"walltime": end_s - start_s, "alloc_gputime": 0},
            "total_gpu_energy_usage_kwh": {"total": 0.0},
            "total_cpu_energy_usage_kwh": {"total": 0.001},
            "debug_echo": auth,  # a careless server: the credentials in the reply
        }
        self._send(200, {"status": "success", "data": [unit]})

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def ceems() -> Iterator[tuple[str, _Seen]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ceems)
    httpd.seen = _Seen()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.seen  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def _config(url: str, credentials: dict[str, str]) -> dict[str, Any]:
    """The demo's config, one cell (HumanEval, one sample, one temperature), no judge, short
    padding, CEEMS collected with ``credentials``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["run"] = "secrets"
    config["cluster"].update(accounting_window_s=4, pad_margin_s=1)
    config["models"][0]["benchmarks"] = ["humaneval"]
    config["benchmarks"] = {"humaneval": config["benchmarks"]["humaneval"]}
    config["benchmarks"]["humaneval"].update(limit=1, max_tokens=16)
    config["judges"] = {}
    config["sweeps"] = {"temperature": [0.0], "max_connections": [1]}
    config["accounting"] = {
        "sources": ["ceems-api"],
        "cluster_id": CLUSTER,
        "ceems": {"url": url},
        "credentials": {**credentials, "scheme": "bearer"},
        "timeout_s": 5,
        "deadline_s": 10,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 1,
    }
    return config


def _run(workdir: Path, config: dict[str, Any], env: dict[str, str]) -> None:
    """The demo test's Snakemake run, with ``env`` added to the environment."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        done = snakemake(workdir)
    (workdir / "snakemake.out").write_text(done.stdout + done.stderr)  # read like the rest
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


@pytest.fixture(scope="module", params=["file", "env"])
def run(request, ceems, tmp_path_factory) -> tuple[Path, str]:
    """A finished run whose token came from a file or from an environment variable."""
    url, seen = ceems
    workdir = tmp_path_factory.mktemp(f"secrets-{request.param}")
    env = {"SLURM_JOB_ID": JOB_ID}
    if request.param == "file":
        secret = tmp_path_factory.mktemp("creds") / "ceems.token"
        secret.write_text(TOKEN + "\n")
        secret.chmod(0o600)
        credentials = {"file": str(secret)}
    else:
        env[TOKEN_ENV] = TOKEN
        credentials = {"env": TOKEN_ENV}
    before = len(seen.authorizations)
    _run(workdir, _config(url, credentials), env)
    assert f"Bearer {TOKEN}" in seen.authorizations[before:], "the token was never sent"
    return workdir, request.param


def _files(workdir: Path) -> list[Path]:
    return [p for p in workdir.rglob("*") if p.is_file() and not p.is_symlink()]


def test_the_token_is_in_no_file_of_the_run(run):
    workdir, _ = run
    forms = [TOKEN.encode(), base64.b64encode(f"Bearer {TOKEN}".encode())]
    files = _files(workdir)
    kinds = {p.name for p in files}
    # the run left what is to be searched: scripts, specs, the CEEMS replies, audit, table
    assert {"job.sbatch", "spec.json", "ceems-api.json"} <= kinds, sorted(kinds)
    assert any("audit" in str(p) for p in files)
    leaks = [str(p) for p in files for form in forms if form in p.read_bytes()]
    assert leaks == []


def test_the_kept_reply_says_where_the_token_came_from(run):
    workdir, how = run
    (kept,) = [p for p in _files(workdir) if p.name == "ceems-api.json" and "/cells/" in str(p)]
    text = kept.read_text()
    assert "<redacted" in text  # the reply's echo, and the request's header
    origin = "environment variable " + TOKEN_ENV if how == "env" else "file"
    assert f"bearer credentials from {origin}" in text
