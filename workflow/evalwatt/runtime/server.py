"""Start an OpenAI-compatible inference server, wait until it serves, stop it.

Inspect's own ``vllm/`` provider would start a server lazily on a random port and ignore the
Slurm allocation; starting it ourselves gives the job its ``load_start``/``ready``/``exit``
marks and a server log kept beside the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from evalwatt.contracts.spec import WarmUpSpec

LOG_TAIL_LINES = 40
# Seconds between readiness polls. Each poll is one local HTTP request (refused at once while
# the server is not listening, a few ms once it is): at 1 s the ``ready`` mark came up to a
# second late, that second of loaded idle counted as loading.
POLL_S = 0.1


class ServerError(RuntimeError):
    """The server died or never became ready; the message ends with the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


_LIVE_GROUPS: set[int] = set()
"""Process groups of the servers this process started and has not stopped yet."""


def kill_live_servers() -> None:
    """SIGKILL every server this process started and did not stop: the last act of a job
    that must end now (``evalwatt.runtime.runner``'s SIGTERM watchdog)."""
    for pid in list(_LIVE_GROUPS):
        _signal_group(pid, signal.SIGKILL)


@dataclass
class Server:
    """A running inference server process (its own process group)."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    argv: list[str]

    @classmethod
    def start(
        cls,
        argv: list[str],
        host: str,
        port: int,
        log_path: Path,
        env: Mapping[str, str | None] | None = None,
    ) -> Server:
        """Start ``argv`` in its own session (so that stopping it stops its workers too), with
        the job's environment changed by ``env`` (None removes a variable), its output
        appended to ``log_path``."""
        variables = {**os.environ, **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={k: v for k, v in variables.items() if v is not None},
            )
        _LIVE_GROUPS.add(process.pid)
        return cls(process=process, url=f"http://{host}:{port}/v1", log_path=log_path, argv=argv)

    def _fail(self, what: str) -> ServerError:
        return ServerError(
            f"{what}\n--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def models(self) -> list[str] | None:
        """Model ids served at /v1/models, or None if the server does not answer yet."""
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=5) as reply:
                data = json.load(reply)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return [m.get("id", "") for m in data.get("data", [])]

    def healthy(self) -> bool:
        """Whether /health answers 200 (transformers serve: it listens only once loaded)."""
        root = self.url.removesuffix("/v1")
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=5) as reply:
                return int(reply.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(
        self, timeout_s: float, served_name: str, poll_s: float = POLL_S, *, listed: bool = True
    ) -> float:
        """Block until the server lists ``served_name`` at /v1/models (``listed``) or answers
        /health; return the unix time it did (at most ``poll_s`` and one request after it
        did): the ``ready`` mark, where loading ends, unless the server still needs its
        warm-up (``warm_up``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise self._fail(f"server exited with code {code} before it was ready")
            if not listed and self.healthy():
                return time.time()
            models = self.models() if listed else None
            if models is not None:
                if served_name not in models:
                    raise self._fail(f"server is up but serves {models}, not {served_name!r}")
                return time.time()
            if time.monotonic() > deadline:
                raise self._fail(f"server not ready after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def warm_up(self, served_name: str, sampling: Mapping[str, float], timeout_s: float) -> None:
        """Send one chat request of one answer token with ``sampling`` and wait for its answer:
        a server that builds its batching on its first request (``transformers serve``) does
        it here, before ``ready``, not inside the first cell's generation window, and keeps
        these sampling settings (``config.model_entry.SAMPLING_AT_FIRST_REQUEST``)."""
        body = _chat_body(served_name, "Hello", 1, sampling)
        self._answer(body, timeout_s, "warm-up request")

    def warm_up_wave(
        self, served_name: str, sampling: Mapping[str, float], wave: WarmUpSpec, timeout_s: float
    ) -> None:
        """Send ``wave.requests`` chat requests at once, each its own prompt of
        ``wave.prompt_words`` words and at most ``wave.max_tokens`` answer tokens, with the
        job's ``sampling``, and wait for every answer (``contracts.spec.WarmUpSpec``: why)."""
        deadline = time.monotonic() + timeout_s
        bodies = [
            _chat_body(served_name, warm_up_prompt(i, wave.prompt_words), wave.max_tokens, sampling)
            for i in range(wave.requests)
        ]

        def send(index: int) -> None:
            left_s = max(deadline - time.monotonic(), 1.0)
            self._answer(bodies[index], left_s, f"warm-up wave request {index + 1}/{wave.requests}")

        pool = ThreadPoolExecutor(max_workers=wave.requests)
        futures = [pool.submit(send, i) for i in range(wave.requests)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        # the first failure at once, with the server log's tail: requests still in flight end
        # when the job stops its server, not after their own timeouts
        pool.shutdown(wait=False, cancel_futures=True)
        for future in done:
            future.result()

    def _answer(self, body: Mapping[str, object], timeout_s: float, what: str) -> None:
        """POST one chat request and read its answer; a refusal or no answer within
        ``timeout_s`` (what was left of ``job.ready_timeout_s``) is a ServerError."""
        request = urllib.request.Request(
            f"{self.url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                json.load(reply)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise self._fail(f"{what} refused: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise self._fail(
                f"{what} failed after up to {timeout_s:.0f} s (what was left of "
                f"job.ready_timeout_s): {exc}"
            ) from exc

    def stop(self, grace_s: float = 60.0) -> int:
        """SIGTERM the server's process group, SIGKILL it after ``grace_s``; return the code."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _signal_group(self.process.pid, signal.SIGKILL)  # stragglers (vLLM workers)
        _LIVE_GROUPS.discard(self.process.pid)
        return int(self.process.returncode)


# Plain words, cycled: a prompt of any length from them, different per request.
_TEXT = (
    "the energy of each answer depends on the model the batch the cluster and the length of "
    "what it writes so we measure every window of power on the card while the server decodes"
)


def warm_up_prompt(index: int, words: int) -> str:
    """The ``index``-th warm-up request's prompt: ``words`` words, none shared at the start
    with another request's (a prefix cache would serve a shared start only once)."""
    start, vocabulary = f"Request {index}:", _TEXT.split()
    body = (vocabulary[(index + 3 * i) % len(vocabulary)] for i in range(max(words - 2, 0)))
    return " ".join([start, *body])


def _chat_body(
    served_name: str, prompt: str, max_tokens: int, sampling: Mapping[str, float]
) -> dict[str, object]:
    return {
        "model": served_name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        **sampling,
    }


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# A socket's path may not exceed 107 bytes (AF_UNIX), and vLLM puts its ZMQ sockets at
# <VLLM_RPC_BASE_PATH>/<uuid4> (37 more), Python's multiprocessing its listener at
# <TMPDIR>/pymp-<8>/listener-<8>: a job's folder is usually too deep for either.
_LINK_PREFIX = "ew-"


@contextlib.contextmanager
def server_temp(folder: Path) -> Iterator[Path]:
    """The server's temporary folder: ``folder`` (in the job's folder), reached through a short
    link in the job's own temporary folder, so that socket paths stay short; both are removed
    when the block ends, whatever happened, so that a job leaves nothing in /tmp."""
    folder.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.gettempdir())
    while True:
        link = base / f"{_LINK_PREFIX}{secrets.token_hex(4)}"
        try:
            link.symlink_to(folder, target_is_directory=True)
            break
        except FileExistsError:
            continue
    try:
        yield link
    finally:
        with contextlib.suppress(OSError):
            link.unlink()
        shutil.rmtree(folder, ignore_errors=True)
