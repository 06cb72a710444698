"""Does PyTorch's attention cost more the first time it meets a shape? The call paged SDPA makes.

    python3 sdpa_shapes.py [--steps 24] [--out FILE.json]

Why: in a model job of `transformers serve` (paged SDPA, torch 2.11, an H100), a cell run a
second time with the same prompts decoded at 102 ms a step against 163 ms the first time, every
step alike (docs/validation.md, seventh session). A decode step's attention has a key length
that grows by one token per request at every step, so a fresh server meets a new shape at every
step and a served one meets shapes it has met. This times the call that
``sdpa_attention_paged_forward`` makes (llama-8b's 32 heads of 128, the keys of all the batch's
requests, a bf16 additive mask, not causal) at 64 queries and the key lengths of the decode
steps of that cell (51,076 + 64 per step), twice over the same lengths, for each kernel PyTorch
may choose (its default, cuDNN, memory-efficient, math): the first pass meets each shape for the
first time, the second has met them all. One call per layer is what a step makes 32 times.
Prints one JSON line per kernel: median ms of a call in the first and second pass, and the
first pass's extra time per new shape.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, HEAD_DIM, QUERIES = 32, 128, 64
FIRST_KV, KV_STEP = 51_076, 64
KERNELS = {
    "default": None,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "mem-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


class Tensors:
    """The call's tensors at the longest key length, made once: a call at a shorter length
    takes a contiguous prefix of each, so that no input is allocated in the timed part (the
    first pass would then pay the allocator's growth). The call itself allocates its output,
    and the memory-efficient kernel a padded copy of the mask, from the caching allocator, as
    in the server. The kernels forced after the first are timed at key lengths 7, 14 and 21
    tokens off the server's (so that none meets a shape another met): another alignment."""

    def __init__(self, longest_kv: int) -> None:
        device, dtype = "cuda", torch.bfloat16
        self.query = torch.randn(1, HEADS, QUERIES, HEAD_DIM, device=device, dtype=dtype)
        self.key = torch.randn(HEADS * longest_kv * HEAD_DIM, device=device, dtype=dtype)
        self.value = torch.randn(HEADS * longest_kv * HEAD_DIM, device=device, dtype=dtype)
        self.mask = torch.zeros(QUERIES * longest_kv, device=device, dtype=dtype)

    def call_ms(self, kv: int) -> float:
        """One attention call at this key length, timed to its end on the GPU."""
        key = self.key[: HEADS * kv * HEAD_DIM].view(1, HEADS, kv, HEAD_DIM)
        value = self.value[: HEADS * kv * HEAD_DIM].view(1, HEADS, kv, HEAD_DIM)
        mask = self.mask[: QUERIES * kv].view(1, 1, QUERIES, kv)
        torch.cuda.synchronize()
        start = time.perf_counter()
        torch.nn.functional.scaled_dot_product_attention(self.query, key, value, attn_mask=mask)
        torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - start)


def kernel_figures(tensors: Tensors, name: str, steps: int, offset: int) -> dict[str, object]:
    """Two passes over the same key lengths with one kernel (or PyTorch's choice); ``offset``
    shifts the lengths so that each kernel meets shapes no kernel met before it."""
    lengths = [FIRST_KV + offset + KV_STEP * step for step in range(steps)]
    backend = KERNELS[name]
    try:
        with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
            first = [tensors.call_ms(kv) for kv in lengths]
            second = [tensors.call_ms(kv) for kv in lengths]
    except RuntimeError as exc:  # a kernel that cannot take this call says why
        return {"kernel": name, "error": str(exc).splitlines()[0]}
    first_ms, second_ms = statistics.median(first), statistics.median(second)
    return {
        "kernel": name,
        "first_pass_ms": round(first_ms, 3),
        "second_pass_ms": round(second_ms, 3),
        "new_shape_extra_ms": round(first_ms - second_ms, 3),
        "calls": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    tensors = Tensors(FIRST_KV + 7 * len(KERNELS) + KV_STEP * args.steps)
    tensors.call_ms(1024)  # the context and the library's set-up, once, at a length not timed
    rows = [
        kernel_figures(tensors, name, args.steps, offset=7 * index)
        for index, name in enumerate(KERNELS)
    ]
    header = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}
    header["gpu"] = torch.cuda.get_device_name()
    lines = [json.dumps(header), *(json.dumps(row) for row in rows)]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
