"""HTTP for the cluster sources that have a server (the CEEMS API, Prometheus): a small GET
client with timeouts, TLS verification, a User-Agent and credentials, whose every exchange is
kept in the collection's log.

The secret is read at the moment of the request, from a file that others cannot read or from
an environment variable of the login node, and never kept: a kept request shows
``Authorization: <redacted ...>`` and says where the secret came from. TLS certificates are
verified unless ``accounting.tls_verify`` is false (a test server).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalwatt import __version__
from evalwatt.config.accounting import Credentials
from evalwatt.contracts.accounting import Exchange
from evalwatt.energy.cluster.collection import AccountingError, AuthError, Transient
from evalwatt.energy.cluster.settings import Settings, secret_origin

USER_AGENT = f"evalwatt/{__version__} (energy accounting collector)"


def read_secret(creds: Credentials, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret (``user:password`` or a token), or None when none is configured.

    A file that others can read (or write) is refused: the secret is then everyone's."""
    if creds.file:
        path = Path(creds.file).expanduser()
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
    elif creds.env:
        env = os.environ if environ is None else environ
        name = creds.env
        if name not in env:
            raise AccountingError(
                f"accounting.credentials.env = {name!r}: the variable is not set where the "
                "workflow runs"
            )
        secret = env[name].strip()
    else:
        return None
    if not secret:
        raise AccountingError(f"{secret_origin(creds)}: empty")
    return secret


def auth_header(creds: Credentials, secret: str | None) -> str | None:
    """The Authorization header of ``secret`` in the configured scheme, or None without one."""
    if secret is None:
        return None
    if creds.scheme == "bearer":
        return f"Bearer {secret}"
    if ":" not in secret:
        raise AccountingError(f"{secret_origin(creds)}: basic credentials must read user:password")
    return "Basic " + base64.b64encode(secret.encode()).decode()


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
        secret = read_secret(creds)
        authorization = auth_header(creds, secret)
        if authorization:
            sent["Authorization"] = authorization
            shown["Authorization"] = f"<redacted: {secret_origin(creds)}>"
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
                body = _redacted(reply.read().decode("utf-8", errors="replace"), secret)
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = _redacted(exc.read().decode("utf-8", errors="replace"), secret)
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
                f"({secret_origin(creds) or 'none configured'})"
            )
        if status >= 500 or status == 429:
            raise Transient(f"GET {url}: HTTP {status}: {_excerpt(body)}")
        return decode_json(body, f"GET {url} (HTTP {status})")


def _redacted(body: str, secret: str | None) -> str:
    """A reply without the secret in it, as sent or in its basic-auth form: a server that echoes
    the request's credentials (an error message, a debug field) would otherwise put them in the
    kept exchange and the job's accounting file."""
    if not secret:
        return body
    for form in (secret, base64.b64encode(secret.encode()).decode()):
        body = body.replace(form, "<redacted>")
    return body


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
