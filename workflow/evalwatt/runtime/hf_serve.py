"""``transformers serve`` with its prefix cache's block sharing off: the hf backend's server.

    python -m evalwatt.runtime.hf_serve serve MODEL --continuous-batching ...

takes the arguments of the ``transformers`` command and runs the library's own CLI and server,
with one change: the continuous batching it builds does not share KV blocks between requests
(``ContinuousBatchingConfig.allow_block_sharing``, the library's setting, on by default, which
``transformers serve`` has no flag for).

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

This module must not import evalwatt (it runs in the server's Python, beside the job's) and
imports transformers only in ``main``: importing it costs nothing elsewhere.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

SHARING_SETTING = "allow_block_sharing"


class UnsupportedTransformers(SystemExit):
    """This transformers has no way to turn block sharing off through its CLI's state."""


def _checked(utils: Any, config_class: Any, version: str) -> None:
    """Fail at start, naming the version, rather than serve with sharing on."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    state = getattr(utils, "GenerationState", None)
    if SHARING_SETTING not in fields:
        raise UnsupportedTransformers(
            f"evalwatt.runtime.hf_serve: transformers {version}: ContinuousBatchingConfig has "
            f"no {SHARING_SETTING}; evalwatt needs transformers >= 5.17 (docs/vllm.md)"
        )
    if state is None or "cb_config" not in inspect.signature(state).parameters:
        raise UnsupportedTransformers(
            f"evalwatt.runtime.hf_serve: transformers {version}: its serving CLI has no "
            "GenerationState(cb_config=...), through which evalwatt turns block sharing off "
            "(written for 5.17 to 5.19; docs/vllm.md)"
        )


def without_block_sharing(utils: Any, config_class: Any, version: str) -> type:
    """The CLI's generation state, whose continuous batching config has sharing off: the one
    the CLI built from its ``--cb-*`` flags, or the library's default one. It says so in the
    server's log (the job's server.log)."""

    class GenerationState(utils.GenerationState):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            config = kwargs.get("cb_config") or config_class()
            setattr(config, SHARING_SETTING, False)
            kwargs["cb_config"] = config
            super().__init__(*args, **kwargs)
            print(
                f"evalwatt.runtime.hf_serve: transformers {version}, "
                f"{SHARING_SETTING}={getattr(config, SHARING_SETTING)}",
                file=sys.stderr,
                flush=True,
            )

    return GenerationState


def main(argv: list[str] | None = None) -> None:
    import transformers
    from transformers import ContinuousBatchingConfig
    from transformers.cli import transformers as cli
    from transformers.cli.serving import utils

    version = transformers.__version__
    _checked(utils, ContinuousBatchingConfig, version)
    # Serve.__init__ imports GenerationState from this module when it runs: it gets this one.
    utils.GenerationState = without_block_sharing(utils, ContinuousBatchingConfig, version)
    sys.argv = ["transformers", *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
