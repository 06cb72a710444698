"""``transformers serve`` with its prefix cache's block sharing off and its attention without
cuDNN: the hf backend's server.

    python -m evalwatt.runtime.hf_serve --cudnn-attention=off serve MODEL --continuous-batching ...

takes the arguments of the ``transformers`` command (after its own flag) and runs the library's
own CLI and server, with two changes. First, the continuous batching it builds does not share
KV blocks between requests (``ContinuousBatchingConfig.allow_block_sharing``, the library's
setting, on by default, which ``transformers serve`` has no flag for).

Why: with sharing on, the blocks of a finished request stay cached, and a later request whose
prompt starts with the same tokens skips their prefill. In a model job, a cell that sends the
prompts an earlier cell of the job sent (the same benchmark at another answer length or
concurrency, or a judge scoring the same questions) then costs less than it does in its own job:
on an H200, a model job's later cells drew 33-61 % less generation energy than the same cells
run per cell (docs/validation.md, "Per-model against per-cell, busy"). vLLM keeps its cache per
cell with a salt (``EvaluationSpec.cache_salt``); this library has no salt and no reset, so
the only way for a cell's energy not to depend on the job's other cells is to share nothing,
in both execution modes. The cost: prompts of one cell that share a long prefix (few-shot
examples) are prefilled in full, as they are for every cell.

How: every ``ContinuousBatchingConfig`` of the server's process, the one the CLI builds from its
``--cb-*`` flags as the default one the library builds without them, gets the setting off when
it is made (its dataclass's ``__post_init__``); a release without that setting or that hook
fails at start, naming its version, rather than serve with sharing on.

Second, with ``--cudnn-attention=off`` (the job's command has it unless the run's
``hf.cudnn_attention`` is true), PyTorch's attention runs without cuDNN in this process
(``choose_cudnn_attention``), for the same reason: cuDNN's plan per attention shape made a
served server step faster than a fresh one.

It also lowers the library's batching logger to INFO (``log_batching_decisions``), so that
the server log records, with their times, what decides its speed: whether CUDA graphs are
used on each path (on an H100 with paged SDPA: neither), each graph it captures, the cache's
size. ``EVALWATT_HF_BATCHING_LOG=DEBUG`` in the job's environment lowers it to DEBUG: the log
then also has one line per scheduling step (requests scheduled, waiting and active, query
tokens), the record of when the server took each cell's requests in and how long each step
took, and once a second, when they moved, the CUDA caching allocator's counters
(``log_allocator``): whether a step waited on ``cudaMalloc``/``cudaFree`` near the card's limit
(inside the cells of the H100 runs of 2026-12-05 none did: docs/validation.md).

The job's Python runs it (the job's environment has evalwatt and, for this backend,
transformers' serving packages: ``pip install .[hf]``). It imports nothing of evalwatt, so that
a Python that only has ``workflow/`` on its path runs it too (.venv-vllm in the tests and
benchmarks/gpu_modes.py), and transformers only in ``main``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

SHARING_SETTING = "allow_block_sharing"
BATCHING_LOGGER = "ContinuousBatchingLogger"
"""The library's continuous-batching logger (5.17 to 5.19): its INFO lines are set-up and
batching decisions, but for two modules' (``PER_STEP_MODULES``)."""
LEVEL_VARIABLE = "EVALWATT_HF_BATCHING_LOG"
"""The batching logger's level: INFO (unset) or DEBUG (also every scheduling step)."""
LEVELS = ("INFO", "DEBUG")
PER_STEP_MODULES = frozenset({"scheduler", "offloading_manager"})
"""Modules whose INFO lines can come at every scheduling step under load (5.17's scheduler:
"Breaking mid-loop for request ... because the cache is full"; offloading: one per request
moved): kept out of the log, which they would flood."""


class UnsupportedTransformers(SystemExit):
    """This Python's transformers cannot serve with block sharing off."""


def turn_off_block_sharing(config_class: Any, version: str) -> None:
    """Make every ``config_class`` made from now on have sharing off, and check that it does.
    The dataclass's generated ``__init__`` calls the ``__post_init__`` the class had when it
    was made, looked up on the instance: wrapping the class's attribute reaches every call."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    original = getattr(config_class, "__post_init__", None)
    if SHARING_SETTING not in fields or original is None:
        missing = SHARING_SETTING if SHARING_SETTING not in fields else "__post_init__"
        raise UnsupportedTransformers(
            f"evalwatt.runtime.hf_serve: transformers {version}: ContinuousBatchingConfig has "
            f"no {missing}, through which evalwatt turns block sharing off (written for 5.17 "
            "to 5.19; docs/vllm.md)"
        )

    def __post_init__(self: Any) -> None:
        original(self)
        setattr(self, SHARING_SETTING, False)
        print(
            f"evalwatt.runtime.hf_serve: transformers {version}, continuous batching with "
            f"{SHARING_SETTING}={getattr(self, SHARING_SETTING)}",
            file=sys.stderr,
            flush=True,
        )

    config_class.__post_init__ = __post_init__
    if getattr(config_class(), SHARING_SETTING) is not False:
        raise UnsupportedTransformers(
            f"evalwatt.runtime.hf_serve: transformers {version}: a ContinuousBatchingConfig "
            f"still has {SHARING_SETTING} on after evalwatt's hook (docs/vllm.md)"
        )


def log_batching_decisions(level_name: str | None = None) -> str:
    """Let the batching logger's INFO lines through (it prints WARNING and above by default):
    a cell runs 23-26 % faster on a server that has served it once than on a fresh one
    (docs/validation.md), and whether graphs are used, or one is captured inside a cell's
    window, is what an auditor looks for first. ``level_name`` (``LEVEL_VARIABLE``'s value)
    DEBUG adds the library's line per scheduling step. A lower level set before (a test's
    DEBUG) is kept; the per-step INFO lines (cache full) stay out at either level. Returns
    the level asked for (INFO or DEBUG)."""
    name = (level_name or "INFO").upper()
    if name not in LEVELS:
        raise SystemExit(
            f"evalwatt.runtime.hf_serve: {LEVEL_VARIABLE}={level_name!r}: allowed "
            f"{', '.join(LEVELS)} (unset: INFO)"
        )
    level = logging.getLevelName(name)
    logger = logging.getLogger(BATCHING_LOGGER)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addFilter(
        lambda record: record.levelno != logging.INFO or record.module not in PER_STEP_MODULES
    )
    return name


ALLOCATOR_COUNTERS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_ooms")
"""``torch.cuda.memory_stats`` counters: segments the allocator asked CUDA for and gave back,
the times it freed its cache to retry an allocation, allocations that failed."""
UNUSED = (0,) * len(ALLOCATOR_COUNTERS)
"""The counters of a GPU the server has not allocated on: nothing logged for it."""


def allocator_line(stats: Mapping[str, int], device: int) -> str:
    """One log line of a GPU's allocator counters and its reserved and allocated memory; a
    figure this torch does not report is ``n/a``, never 0."""

    def mib(key: str) -> str:
        value = stats.get(key)
        return "n/a" if value is None else f"{value // 2**20} MiB"

    counters = ", ".join(f"{name} {stats.get(name, 'n/a')}" for name in ALLOCATOR_COUNTERS)
    reserved, allocated = mib("reserved_bytes.all.current"), mib("allocated_bytes.all.current")
    return f"allocator cuda:{device}: {counters}, reserved {reserved}, allocated {allocated}"


def allocator_moves(
    read: Callable[[int], Mapping[str, int]],
    devices: int,
    last: dict[int, tuple[int | None, ...]],
) -> list[str]:
    """The lines of the GPUs whose counters moved since ``last`` (kept up to date), read by
    ``read(device)`` (``torch.cuda.memory_stats``)."""
    lines = []
    for device in range(devices):
        stats = read(device)
        counters = tuple(stats.get(name) for name in ALLOCATOR_COUNTERS)
        if counters != last.get(device, UNUSED):
            last[device] = counters
            lines.append(allocator_line(stats, device))
    return lines


def log_allocator(period_s: float = 1.0) -> threading.Thread:
    """Log each GPU's allocator counters every ``period_s`` when they moved, from a daemon
    thread (reading them takes the allocator's lock, and neither synchronises the GPU nor
    makes a CUDA context), once the library has made its own; nothing without CUDA."""
    import torch  # transformers' own dependency, loaded by then

    def watch() -> None:
        logger = logging.getLogger(BATCHING_LOGGER)
        last: dict[int, tuple[int | None, ...]] = {}
        while True:
            time.sleep(period_s)
            if torch.cuda.is_initialized():  # a flag: asking for devices would start CUDA
                for line in allocator_moves(
                    torch.cuda.memory_stats, torch.cuda.device_count(), last
                ):
                    logger.debug(line)

    thread = threading.Thread(target=watch, name="evalwatt-allocator", daemon=True)
    thread.start()
    return thread


CUDNN_FLAG = "--cudnn-attention"
"""This script's own flag, before the library's arguments: ``--cudnn-attention=off`` (also
without it) or ``=on`` (PyTorch's default); the job's command carries the run's
``hf.cudnn_attention`` (runtime/backends.py), so that the job's spec records it."""
CUDNN_CHOICES = ("off", "on")


def own_arguments(args: list[str]) -> tuple[str | None, list[str]]:
    """(the value of this script's flag if it comes first, the library's arguments)."""
    if args and args[0].startswith(f"{CUDNN_FLAG}="):
        return args[0].split("=", 1)[1], args[1:]
    return None, args


def choose_cudnn_attention(value: str | None, backends: Any) -> str:
    """Let PyTorch's attention use cuDNN or not (``backends``: ``torch.backends.cuda``; the
    flag is process-wide, so the batching thread sees it), and say in the server log which
    attention kernels are allowed. Returns the choice (off unless ``value`` says on).

    Why off: paged SDPA calls attention with a key length that grows at every decode step,
    and PyTorch's kernel for that call on an H100 (torch 2.11) is cuDNN's, which builds a
    plan for each new shape and caches it: 36 ms the first time a shape comes, 1.4 ms after
    (``docs/validation/h200-per-model/sdpa_shapes.py``). A fresh server then meets a new shape
    at every step, and a server that served the same lengths before (a model job's later
    cells) does not: the same cell, run three times in one model job, decoded at 163, then
    102 and 101 ms a step and cost 11 % less after the first. With cuDNN out, PyTorch takes
    its memory-efficient kernel (2.5 ms either time): the same cell twice cost the same within
    0.7 %, on a GPU 89 % busy instead of 55 %, for more energy per cell (docs/validation.md,
    seventh session). The same reason as block sharing's: a cell's energy must not depend on
    the cells its server ran before."""
    name = (value or "off").lower()
    if name not in CUDNN_CHOICES:
        raise SystemExit(
            f"evalwatt.runtime.hf_serve: {CUDNN_FLAG}={value}: allowed "
            f"{', '.join(CUDNN_CHOICES)} (without it: off)"
        )
    backends.enable_cudnn_sdp(name == "on")
    allowed = {
        "flash": backends.flash_sdp_enabled(),
        "mem-efficient": backends.mem_efficient_sdp_enabled(),
        "math": backends.math_sdp_enabled(),
        "cudnn": backends.cudnn_sdp_enabled(),
    }
    print(
        f"evalwatt.runtime.hf_serve: attention kernels allowed: "
        f"{', '.join(kernel for kernel, on in allowed.items() if on)} ({CUDNN_FLAG}={name})",
        file=sys.stderr,
        flush=True,
    )
    return name


def main(argv: list[str] | None = None) -> None:
    try:
        import torch  # transformers' own dependency
        import transformers
        from transformers import ContinuousBatchingConfig
        from transformers.cli import transformers as cli
    except ImportError as exc:
        raise SystemExit(
            f"evalwatt.runtime.hf_serve: {sys.executable} cannot import transformers' server "
            f"({exc}): the hf backend serves with the job's Python (job.python), which needs "
            "`pip install .[hf]` (docs/vllm.md)"
        ) from exc
    cudnn, library_args = own_arguments(sys.argv[1:] if argv is None else argv)
    turn_off_block_sharing(ContinuousBatchingConfig, transformers.__version__)
    choose_cudnn_attention(cudnn, torch.backends.cuda)
    if log_batching_decisions(os.environ.get(LEVEL_VARIABLE)) == "DEBUG":
        log_allocator()
    sys.argv = ["transformers", *library_args]
    cli.main()


if __name__ == "__main__":
    main()
