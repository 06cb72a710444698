"""The inference server of a job: started once, ready, stopped; and the job's padding.

A cell job, a baseline, a model job and a judge pass all serve their model the same way:
``load_start`` when the server starts, ``ready`` when it answers (a server that builds its
batching on its first request has answered a one-token warm-up by then: that build is
loading, not the first cell's generation), then, for a server that does not warm itself, one
wave of concurrent requests between ``warm_up_start`` and ``warm_up_end`` (the same in every
job of a model configuration: contracts.spec.WarmUpSpec), ``exit`` once it has stopped
(whatever happened in between), everything it writes in the job's folder or the run's cache
(backends.ServerPaths).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from evalwatt.base.layout import SERVER_LOG, JobFiles
from evalwatt.base.model_path import resolve_model_path
from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.result import ServerRun
from evalwatt.contracts.spec import JobSpec, PadSpec
from evalwatt.runtime.backends import Backend, ServerPaths, backend
from evalwatt.runtime.server import Server, free_port, server_temp
from evalwatt.runtime.timeline import Timeline

# Seconds into the pad after which the GPUs are at cold idle: after the server exits, an H100's
# power decays for a few seconds (88-92 W over the first 5 s, 74 W after: docs/validation.md),
# so the cold-idle power is measured from ``pad_settled`` on.
PAD_SETTLE_S = 3.0


def server_argv(spec: JobSpec, port: int, path: str) -> list[str]:
    argv = [w.replace("{port}", str(port)).replace("{model_path}", path) for w in spec.server.argv]
    # The executable may name a variable (vllm.executable: $VENV/bin/vllm), as weights may.
    executable = os.path.expandvars(argv[0])
    if shutil.which(executable) is None:  # at once, with its name, not a bare traceback
        raise FileNotFoundError(
            f"{spec.server.argv[0]}: no server executable at {executable!r} on this node"
            + (" (vllm.executable in the config)" if spec.server.settings.executable else "")
        )
    return [executable, *argv[1:]]


@dataclass
class Serving:
    """A job's running server, and what its result records of it."""

    spec: JobSpec
    """The job's spec, its model as the server's clients name it on this node (hf pins it)."""
    engine: Backend
    server: Server
    argv: list[str]
    env: dict[str, str | None]
    port: int
    exit_code: int | None = None
    """Set once the server has stopped."""

    @property
    def url(self) -> str:
        return self.server.url

    def record(self) -> ServerRun:
        """The server as the job's result (or a packed cell's, while it runs) records it."""
        return ServerRun(
            argv=tuple(self.argv),
            env=self.env,
            port=self.port,
            exit_code=self.exit_code,
            log_file=SERVER_LOG,
        )


@contextmanager
def served(spec: JobSpec, files: JobFiles, timeline: Timeline) -> Iterator[Serving]:
    """Start the job's server (``load_start``), wait until it serves (``ready``), send a
    server that does not warm itself its warm-up wave (``warm_up_*``), and stop it when the
    block ends, however it ends (``exit``)."""
    port = free_port()
    engine = backend(spec.model.backend)
    # a server pinned to its weights (hf) is named by their id, by its command and clients
    model, weights = engine.on_node(spec.model, resolve_model_path(spec.model.path))
    spec = spec.model_copy(update={"model": model})
    argv = server_argv(spec, port, weights)
    with server_temp(files.server_tmp) as tmp:
        env = engine.server_env(spec.server.settings, ServerPaths(tmp=tmp, cache=files.run_cache))
        timeline.mark(Mark.LOAD_START)
        server = Server.start(argv, "127.0.0.1", port, files.server_log, env=env)
        serving = Serving(spec, engine, server, argv, env, port)
        try:
            deadline = time.monotonic() + spec.ready_timeout_s

            def left_s() -> float:  # what is left of ready_timeout_s for the next step
                return max(deadline - time.monotonic(), 1.0)

            sampling = spec.first_request_sampling()
            ready = server.wait_ready(
                spec.ready_timeout_s, spec.model.served_name, listed=engine.lists_model
            )
            if engine.keeps_first_sampling:
                server.warm_up(spec.model.served_name, sampling, left_s())
                ready = time.time()
            timeline.mark(Mark.READY, ready)
            if spec.warm_up is not None:
                timeline.mark(Mark.WARM_UP_START)
                server.warm_up_wave(spec.model.served_name, sampling, spec.warm_up, left_s())
                timeline.mark(Mark.WARM_UP_END)
            yield serving
        finally:
            serving.exit_code = server.stop()
            timeline.mark(Mark.EXIT)


def pad(rule: PadSpec, timeline: Timeline) -> float:
    """Sleep what the job still needs to outlast the accounting window, between ``pad_start``
    and ``pad_end`` (``pad_settled`` ``PAD_SETTLE_S`` in); return the sleep asked for."""
    sleep_s = rule.sleep_s(time.time() - timeline.marks[Mark.JOB_START])
    timeline.mark(Mark.PAD_START)
    settle = min(sleep_s, PAD_SETTLE_S)
    time.sleep(settle)
    if sleep_s > settle:
        timeline.mark(Mark.PAD_SETTLED)
        time.sleep(sleep_s - settle)
    timeline.mark(Mark.PAD_END)
    return sleep_s
