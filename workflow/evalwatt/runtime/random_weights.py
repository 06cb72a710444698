"""A model folder with random weights of a known shape, for energy checks without real weights.

The validation machines have no network, and an energy measurement needs the compute of a
model, not its knowledge: random weights of a shape cost what trained weights of that shape
cost per token. This writes a folder that ``transformers serve`` (the ``hf`` backend) loads like
any checkpoint: ``config.json``, ``generation_config.json``, safetensors and a tokenizer.

Two choices make the answers repeatable:

* **No end-of-sequence token.** The config and the generation config name none, so the
  library's continuous batching disables the end-of-sequence check (``eos_token_id`` -1) and
  every answer runs to the request's ``max_tokens``: the answer length, hence the energy,
  is set by the benchmark, not by where a random model happens to emit a stop token. This is
  the model's own configuration, read through the server's supported API, not a patched server.
* **A byte-level tokenizer built here** (one token per UTF-8 byte, 256 tokens and three
  specials, a plain chat template): nothing to download. The model's vocabulary keeps the
  shape's real size (the output layer's cost); generated ids above the tokenizer's are
  decoded as nothing, so answers are short strings, while ``usage`` counts every token.

    python -m evalwatt.runtime.random_weights --shape llama-8b --out models/llama-8b-random
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# Shapes of real models (their config.json values): what the energy depends on.
SHAPES: dict[str, dict[str, Any]] = {
    # TinyLlama-1.1B (the shared H100 traces' model): 1.10e9 parameters
    "llama-1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
    },
    # Llama-3.1-8B: 8.03e9 parameters
    "llama-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
    },
    # for tests on a CPU: loads and generates in a second or two
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
    },
}

WRITTEN = "random_weights.json"
"""What was written (shape, parameters, seed, seconds), in the model folder."""
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "unk_token": "<unk>"}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def model_config(shape: str) -> dict[str, Any]:
    """The ``config.json`` of ``shape``: a Llama with no end-of-sequence token."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **SHAPES[shape],
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": None,
    }


def write_tokenizer(folder: Path) -> None:
    """A byte-level tokenizer (ids 0-2 the specials, then one per byte) and its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    vocab = {token: i for i, token in enumerate(specials)}
    for char in pre_tokenizers.ByteLevel.alphabet():
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))


def write_random_model(
    folder: Path, shape: str, *, device: str = "cpu", dtype: str = "bfloat16", seed: int = 0
) -> dict[str, Any]:
    """Write a random-weight model of ``shape`` to ``folder``; return what was written.

    The weights are drawn on ``device`` (a GPU draws an 8B model in seconds) with the model's
    own initialisation, from ``seed``, so two folders of the same arguments are the same."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**{k: v for k, v in model_config(shape).items() if k != "model_type"})
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config = GenerationConfig(  # sampled, as instruct models ship theirs:
        do_sample=True,  # a request's temperature decides (0: greedy, the server's rule)
        bos_token_id=config.bos_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=None,
    )
    model.save_pretrained(str(folder))
    write_tokenizer(folder)
    summary = {
        "shape": shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": dtype,
        "seed": seed,
        "written_s": round(time.monotonic() - started, 1),
        "folder": str(folder),
    }
    (folder / WRITTEN).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evalwatt.runtime.random_weights", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--device", default="cpu", help="where to draw the weights (cuda, cpu)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = write_random_model(
        args.out, args.shape, device=args.device, dtype=args.dtype, seed=args.seed
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
