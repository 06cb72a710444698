"""vLLM's own Prometheus counters, read at the inference marks and kept raw.

The job reads ``/metrics`` just before ``inference_start`` and just after ``inference_end``,
writes each reply as it came (``JobFiles.server_metrics``) and records the differences of a
few counters in the result (``contracts.result.ServerMetrics``): the server's own count of the
requests, prompt tokens and generated tokens of the inference window, which the cell's record
checks against Inspect's (evalwatt.table.cells). A server that publishes no such counters
(llama-cpp, hf) gets nulls with the reason; a reading that fails is a null with its error,
never a failed job.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import JobFiles
from evalwatt.contracts.result import ServerMetrics

SOURCE = "vllm /metrics"
# ServerMetrics field <- Prometheus sample name (vLLM 0.11 to 0.33: v1 engine metrics).
COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "e2e_latency_s_sum": "vllm:e2e_request_latency_seconds_sum",
    "ttft_s_sum": "vllm:time_to_first_token_seconds_sum",
}
_INTEGER = ("requests", "prompt_tokens", "generation_tokens")
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class MetricsError(RuntimeError):
    """The server's /metrics could not be read or holds none of the counters."""


def root_url(server_url: str) -> str:
    """``http://host:port`` of an OpenAI base URL ``http://host:port/v1``."""
    return server_url.removesuffix("/").removesuffix("/v1")


def fetch(server_url: str, path: str, timeout_s: float = 10.0) -> str:
    try:
        with urllib.request.urlopen(f"{root_url(server_url)}{path}", timeout=timeout_s) as reply:
            return str(reply.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        raise MetricsError(f"GET {path}: {exc}") from exc


def server_version(server_url: str) -> str | None:
    """vLLM's ``/version``; None if it does not answer (the job records what it can)."""
    try:
        return str(json.loads(fetch(server_url, "/version"))["version"])
    except (MetricsError, ValueError, KeyError, TypeError):
        return None


def parse(text: str, served_name: str) -> dict[str, float]:
    """Sum of each counter of ``COUNTERS`` over its series (engines, finish reasons) of the
    served model; a counter absent from the text is absent from the result."""
    wanted = {name: field for field, name in COUNTERS.items()}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if match is None or match.group(1) not in wanted:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        if labels.get("model_name", served_name) != served_name:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        field = wanted[match.group(1)]
        totals[field] = totals.get(field, 0.0) + value
    return totals


def read(server_url: str, path: Path) -> str:
    """Read /metrics once and keep the raw text at ``path``."""
    text = fetch(server_url, "/metrics")
    write_text(path, text)
    return text


def window(
    before: Mapping[str, float],
    after: Mapping[str, float],
    files: tuple[str, ...],
    version: str | None,
) -> ServerMetrics:
    """The counters' increase between two readings."""
    values: dict[str, int | float | None] = {}
    missing = []
    for field in COUNTERS:
        if field in before and field in after:
            delta = after[field] - before[field]
            values[field] = round(delta) if field in _INTEGER else delta
        else:
            values[field] = None
            missing.append(COUNTERS[field])
    reason = f"not in the server's /metrics: {', '.join(missing)}" if missing else None
    if not before and not after:
        reason = "the server's /metrics holds none of the counters of the served model"
    return ServerMetrics(
        source=SOURCE,
        files=files,
        server_version=version,
        null_reason=reason,
        **values,  # type: ignore[arg-type]
    )


def unavailable(reason: str, files: tuple[str, ...] = ()) -> ServerMetrics:
    """No counters: the server publishes none, or reading them failed."""
    return ServerMetrics(
        source=None,
        files=files,
        server_version=None,
        requests=None,
        prompt_tokens=None,
        generation_tokens=None,
        e2e_latency_s_sum=None,
        ttft_s_sum=None,
        null_reason=reason,
    )


class WindowCounters:
    """The counters of one inference window: ``read("before")`` just before
    ``inference_start``, ``read("after")`` just after ``inference_end``, then ``result()``."""

    def __init__(
        self, publishes: bool, backend: str, server_url: str, files: JobFiles, served: str
    ) -> None:
        self.publishes = publishes
        self.backend = backend
        self.server_url = server_url
        self.files = files
        self.served = served
        self.readings: dict[str, dict[str, float]] = {}
        self.errors: list[str] = []
        self.version: str | None = None

    def read(self, when: str, settle_s: float = 0.5, max_tries: int = 8) -> None:
        """Keep the raw text and the counters. ``after`` reads until two readings agree: the
        server may count a request a moment after its reply has reached Inspect."""
        if not self.publishes:
            return
        path = self.files.server_metrics(when)
        try:
            if when == "before":
                self.version = server_version(self.server_url)
            counts = parse(read(self.server_url, path), self.served)
            for _ in range(max_tries if when == "after" else 0):
                time.sleep(settle_s)
                again = parse(read(self.server_url, path), self.served)
                if again == counts:
                    break
                counts = again
        except MetricsError as exc:
            self.errors.append(f"{when} inference: {exc}")
            return
        self.readings[when] = counts

    def result(self) -> ServerMetrics:
        if not self.publishes:
            return unavailable(f"the {self.backend} server publishes no Prometheus counters")
        files = tuple(self.files.server_metrics(w).name for w in self.readings)
        if self.errors or set(self.readings) != {"before", "after"}:
            return unavailable("; ".join(self.errors) or "not read at both marks", files)
        return window(self.readings["before"], self.readings["after"], files, self.version)
