"""What the cluster sources share: their settings, credentials, HTTP, waiting, and raw files.

Collection runs on the login node once a job has ended (``evalwatt.energy.cluster.collect``). Every
query it makes and every raw reply it gets is kept, with timestamps, in one file per source
under the job's folder (``accounting/<source>.json``, an ``AccountingFile``). The energy step
and the audit read only these files: rebuilding the table needs no network, and an admin can
recompute every figure from what the server said.

Secrets: the credentials come from a file that others cannot read, or from an environment
variable of the login node, at the moment of the request. They are never written: a kept
request shows ``Authorization: <redacted ...>`` and says where the secret came from. URLs
with credentials in them are refused by the config's schema.

TLS certificates are verified unless ``accounting.tls_verify`` is false (a test server).
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from evalwatt import __version__
from evalwatt.base.errors import UserError
from evalwatt.base.layout import JobFiles
from evalwatt.contracts.contract import Contract, Record, read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.sampling.probes import parse_visible_devices

SourceName = Literal["ceems-api", "prometheus", "sacct"]
CLUSTER_SOURCES: tuple[SourceName, ...] = ("ceems-api", "prometheus", "sacct")
USER_AGENT = f"evalwatt/{__version__} (energy accounting collector)"
J_PER_KWH = 3.6e6
T = TypeVar("T")


class AccountingError(UserError):
    """A source that could not answer for a job: the message says why and what to change."""


class AuthError(AccountingError):
    """The server refused who we are (401, 403): never retried."""


class Transient(AccountingError):
    """A failure worth another try (a timeout, a 5xx, a unit not there yet)."""


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The config's ``accounting`` section and the cutoff the padding aims at."""

    sources: tuple[str, ...]
    headline_order: tuple[str, ...]
    pue: float | None
    cluster_id: str | None
    gap_flag_pct: float
    ceems: Mapping[str, Any]
    prometheus: Mapping[str, Any]
    sacct_command: str
    credentials: Mapping[str, Any]
    tls_verify: bool
    ca_file: str | None
    timeout_s: float
    deadline_s: float
    backoff_initial_s: float
    backoff_max_s: float
    cutoff_s: float
    """``cluster.accounting_window_s``: the shortest job the accounting keeps, padded past."""
    pad_margin_s: float

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Settings:
        """From a validated config's raw mapping (``Config.raw``)."""
        acc, cluster = raw["accounting"], raw["cluster"]
        return cls(
            sources=tuple(acc["sources"]),
            headline_order=tuple(acc["headline_order"]),
            pue=acc["pue"],
            cluster_id=acc["cluster_id"],
            gap_flag_pct=float(acc["gap_flag_pct"]),
            ceems=dict(acc["ceems"]),
            prometheus=dict(acc["prometheus"]),
            sacct_command=acc["sacct"]["command"],
            credentials=dict(acc["credentials"]),
            tls_verify=bool(acc["tls_verify"]),
            ca_file=acc["ca_file"],
            timeout_s=float(acc["timeout_s"]),
            deadline_s=float(acc["deadline_s"]),
            backoff_initial_s=float(acc["backoff_initial_s"]),
            backoff_max_s=float(acc["backoff_max_s"]),
            cutoff_s=float(cluster["accounting_window_s"]),
            pad_margin_s=float(cluster["pad_margin_s"]),
        )

    def padding_hint(self) -> str:
        return (
            f"the padding settings: cluster.accounting_window_s = {self.cutoff_s:g} s and "
            f"cluster.pad_margin_s = {self.pad_margin_s:g} s; set accounting_window_s to the "
            "site's cutoff_duration"
        )

    def public(self) -> dict[str, Any]:
        """What is kept in a raw file: everything but secrets (only where they come from)."""
        creds = self.credentials
        return {
            "cluster_id": self.cluster_id,
            "pue": self.pue,
            "ceems": dict(self.ceems),
            "prometheus": dict(self.prometheus),
            "sacct_command": self.sacct_command,
            "credentials_from": _secret_origin(creds),
            "tls_verify": self.tls_verify,
            "ca_file": self.ca_file,
            "timeout_s": self.timeout_s,
            "deadline_s": self.deadline_s,
            "backoff_initial_s": self.backoff_initial_s,
            "backoff_max_s": self.backoff_max_s,
            "cutoff_s": self.cutoff_s,
        }


def login_name() -> str:
    """The account running the workflow (from the OS, not from an environment variable)."""
    return pwd.getpwuid(os.getuid()).pw_name


# --- credentials ------------------------------------------------------------------------------


def _secret_origin(creds: Mapping[str, Any]) -> str | None:
    scheme = creds.get("scheme", "basic")
    if creds.get("file"):
        return f"{scheme} credentials from file {creds['file']}"
    if creds.get("env"):
        return f"{scheme} credentials from environment variable {creds['env']}"
    return None


def read_secret(creds: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str | None:
    """The secret (``user:password`` or a token), or None when none is configured.

    A file that others can read (or write) is refused: the secret is then everyone's."""
    if creds.get("file"):
        path = Path(str(creds["file"])).expanduser()
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise AccountingError(
                f"accounting.credentials.file = {str(path)!r}: cannot read it ({exc.strerror})"
            ) from None
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            raise AccountingError(
                f"accounting.credentials.file = {str(path)!r}: mode {stat.filemode(mode)} lets "
                f"every user read it; allowed: chmod 600 {path} (or 640)"
            )
        secret = path.read_text(encoding="utf-8").strip()
    elif creds.get("env"):
        env = os.environ if environ is None else environ
        name = str(creds["env"])
        if name not in env:
            raise AccountingError(
                f"accounting.credentials.env = {name!r}: the variable is not set where the "
                "workflow runs"
            )
        secret = env[name].strip()
    else:
        return None
    if not secret:
        raise AccountingError(f"{_secret_origin(creds)}: empty")
    return secret


def auth_header(creds: Mapping[str, Any], secret: str | None) -> str | None:
    if secret is None:
        return None
    if creds.get("scheme", "basic") == "bearer":
        return f"Bearer {secret}"
    if ":" not in secret:
        raise AccountingError(f"{_secret_origin(creds)}: basic credentials must read user:password")
    return "Basic " + base64.b64encode(secret.encode()).decode()


# --- raw files --------------------------------------------------------------------------------


class Exchange(Record):
    """One request and its raw reply, as it happened. No secret is ever kept."""

    at_unix: float = Field(description="when the request was sent")
    request: str = Field(description="method and URL with its query, or the command line")
    headers: dict[str, str] = Field(description="request headers; Authorization redacted")
    status: int | None = Field(description="HTTP status or exit code; null: no reply")
    elapsed_s: float | None
    body: str | None = Field(description="the raw reply (or stdout), verbatim")
    error: str | None = Field(description="what went wrong (or stderr)")


class AccountingFile(Contract):
    """Everything one cluster source said about one job, and what evalwatt concluded."""

    FILE: ClassVar[str] = "accounting record (accounting/<source>.json)"

    schema_version: Literal[1] = 1
    source: SourceName
    job_dir: str
    scheduler_job_id: str | None
    host: str
    marks: dict[str, float] = Field(description="the job's timeline, unix seconds")
    settings: dict[str, Any] = Field(description="the settings used; never secrets")
    started_unix: float
    finished_unix: float
    exchanges: tuple[Exchange, ...]
    status: Literal["ok", "unavailable", "error"] = Field(
        description="ok: an answer; unavailable: a definitive null (reason in detail); "
        "error: no answer by the deadline or a refusal (reason in detail)"
    )
    detail: str | None
    context: dict[str, Any] = Field(
        default_factory=dict, description="facts of the job used to read the replies"
    )


def write_accounting(path: Path, record: AccountingFile) -> None:
    write_contract(path, record)


def read_accounting(path: Path) -> AccountingFile:
    return read_contract(AccountingFile, path)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class Http:
    """A small GET client: timeouts, TLS verification, User-Agent, credentials; every
    exchange appended to ``log``."""

    settings: Settings
    log: list[Exchange] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def _context(self) -> ssl.SSLContext:
        if not self.settings.tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def get_json(
        self, base: str, path: str, params: list[tuple[str, str]], headers: Mapping[str, str]
    ) -> Any:
        """GET ``base + path`` with ``params``; the decoded JSON reply. Raises AuthError
        (401, 403), Transient (timeout, connection, 5xx, 429) or AccountingError."""
        url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
        shown = {"User-Agent": USER_AGENT, "Accept": "application/json", **headers}
        sent = dict(shown)
        creds = self.settings.credentials
        authorization = auth_header(creds, read_secret(creds))
        if authorization:
            sent["Authorization"] = authorization
            shown["Authorization"] = f"<redacted: {_secret_origin(creds)}>"
        request = urllib.request.Request(url, headers=sent, method="GET")
        at = self.clock()
        t0 = time.monotonic()
        status: int | None = None
        body: str | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(
                request, timeout=self.settings.timeout_s, context=self._context()
            ) as reply:
                status = reply.status
                body = reply.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = exc.read().decode("utf-8", errors="replace")
            error = f"HTTP {exc.code} {exc.reason}"
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}"
        finally:
            self.log.append(
                Exchange(
                    at_unix=at,
                    request=f"GET {url}",
                    headers=shown,
                    status=status,
                    elapsed_s=round(time.monotonic() - t0, 6),
                    body=body,
                    error=error,
                )
            )
        if status is None:
            raise Transient(f"GET {url}: no reply within {self.settings.timeout_s:g} s ({error})")
        if status in (401, 403):
            raise AuthError(
                f"GET {url}: HTTP {status}: the server refused the request; check "
                "accounting.ceems.user / user_header and accounting.credentials "
                f"({_secret_origin(creds) or 'none configured'})"
            )
        if status >= 500 or status == 429:
            raise Transient(f"GET {url}: HTTP {status}: {_excerpt(body)}")
        return decode_json(body, f"GET {url} (HTTP {status})")


def decode_json(body: str | None, what: str) -> Any:
    try:
        return json.loads(body or "")
    except json.JSONDecodeError as exc:
        raise AccountingError(
            f"{what}: the reply is not JSON ({exc.msg} at offset {exc.pos}): {_excerpt(body)}; "
            "is the URL the right server?"
        ) from None


def _excerpt(text: str | None, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --- waiting ----------------------------------------------------------------------------------


def wait_for(
    attempt: Callable[[], T], settings: Settings, sleep: Callable[[float], None] = time.sleep
) -> tuple[T, int]:
    """Call ``attempt`` until it returns, retrying ``Transient`` failures with exponential
    backoff (``backoff_initial_s`` doubling up to ``backoff_max_s``) and never sleeping past
    ``deadline_s`` from the first try; the last failure is raised as it is. Returns the value
    and the number of tries. (tenacity: a well-kept retry library, already pinned.)"""
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_before_delay(settings.deadline_s),
        wait=tenacity.wait_exponential(
            multiplier=settings.backoff_initial_s,
            min=settings.backoff_initial_s,
            max=settings.backoff_max_s,
        ),
        retry=tenacity.retry_if_exception_type(Transient),
        sleep=sleep,
        reraise=True,
    )
    value = retrying(attempt)
    return value, int(retrying.statistics.get("attempt_number", 1))


# --- the job, as the sources need it ----------------------------------------------------------


@dataclass(frozen=True)
class JobFacts:
    """What the cluster sources need to know about one finished job (from its result.json)."""

    job_dir: Path
    scheduler_job_id: str | None
    host: str
    marks: Mapping[str, float]
    gpu_uuids: tuple[str, ...] | None
    """The GPUs the sampler opened (NVML), or None when it recorded none."""
    gpus_allocated: int | None
    """GPUs the job was given (CUDA_VISIBLE_DEVICES), or None when unknown."""

    @classmethod
    def of(cls, job_dir: Path) -> JobFacts:
        result = read_contract(JobResult, JobFiles(job_dir).result)
        nvml = result.sampler.traces.get("nvml")
        uuids = tuple(d.uuid for d in nvml.devices) if nvml and nvml.devices else None
        visible = parse_visible_devices(result.cuda_visible_devices)
        return cls(
            job_dir=Path(job_dir),
            scheduler_job_id=result.scheduler_job_id,
            host=result.host,
            marks={str(k): v for k, v in result.marks.items()},
            gpu_uuids=uuids,
            gpus_allocated=len(visible) if visible is not None else None,
        )

    @property
    def span(self) -> tuple[float, float]:
        return self.marks["job_start"], self.marks["job_end"]

    @property
    def elapsed_s(self) -> float:
        start, end = self.span
        return end - start

    def record(
        self,
        source: SourceName,
        settings: Settings,
        started: float,
        exchanges: list[Exchange],
        status: Literal["ok", "unavailable", "error"],
        detail: str | None,
        context: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AccountingFile:
        return AccountingFile(
            source=source,
            job_dir=str(self.job_dir),
            scheduler_job_id=self.scheduler_job_id,
            host=self.host,
            marks=dict(self.marks),
            settings=settings.public(),
            started_unix=started,
            finished_unix=clock(),
            exchanges=tuple(exchanges),
            status=status,
            detail=detail,
            context=dict(context or {}),
        )
