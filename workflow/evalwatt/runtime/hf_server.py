"""A small OpenAI-compatible server for a causal LM built with transformers, with batching.

For GPU machines where vLLM cannot be installed (the validation machines: torch and
transformers, no network). It serves what the cell job and Inspect's OpenAI-compatible
providers need: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(non-streaming, ``n`` = 1), and ``GET /health``. It uses only the standard library's
``http.server`` besides torch and transformers.

The model is a local folder (``--model-dir``: ``from_pretrained``, never a download), a
``config.json`` (``--config``) or a built-in preset (``--preset``: ``llama-1b``, a
TinyLlama-shaped 1.1B Llama, the model of the shared H100 traces; ``tiny``, for tests), built
with random weights (``from_config``): random weights draw the same power per token as trained
ones of that shape, which is all an energy measurement needs. Without a tokenizer in the
folder, a byte-level tokenizer built here is used (one token per UTF-8 byte; no download).

Batching: requests wait in one queue; a single worker takes the first, waits up to
``--batch-wait-ms`` for more with the same sampling settings, up to ``--max-batch-size``, and
generates them together (left-padded, one ``generate`` call: static batching, so a batch
lasts as long as its longest answer). So ``max_connections`` changes the batch size, and the
energy, as it does on vLLM (which batches continuously). Each request's ``max_tokens`` (or
``max_completion_tokens``) is honoured, capped by ``--max-new-tokens``, which is also the
default. ``--ignore-eos`` makes every answer exactly that long (random weights rarely stop).

Each batch is logged to stderr with its unix start and end, size and token counts: the
server's own record of the first request and the last answer.

Run: ``python -m evalwatt.runtime.hf_server --preset llama-1b --served-model-name llama-1b
--host 127.0.0.1 --port 8000 --max-batch-size 64 --max-new-tokens 192``.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # TinyLlama-1.1B's shape (the shared H100 traces' model): 1.10e9 parameters
    "llama-1b": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    },
    # for tests on a CPU
    "tiny": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    },
}


class RequestError(Exception):
    """A request the server refuses; the message goes back as an OpenAI-style error (400)."""


# --- tokenizers --------------------------------------------------------------------------------


class ByteTokenizer:
    """One token per UTF-8 byte: ids 0 pad, 1 bos, 2 eos, 3..258 the bytes. Any id a
    random model emits above 258 decodes to a byte too (id - 3 modulo 256)."""

    pad_id, bos_id, eos_id, offset = 0, 1, 2, 3

    def encode(self, text: str) -> list[int]:
        return [self.bos_id, *(b + self.offset for b in text.encode("utf-8"))]

    def decode(self, ids: list[int]) -> str:
        data = bytes((i - self.offset) % 256 for i in ids if i >= self.offset)
        return data.decode("utf-8", errors="replace")

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        lines = [f"{m.get('role', 'user')}: {_content_text(m.get('content'))}" for m in messages]
        return "\n".join([*lines, "assistant: "])


class HFTokenizer:
    """A tokenizer found in the model folder (``AutoTokenizer``, local files only)."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.eos_id = self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=True))

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        plain = [
            {"role": m.get("role", "user"), "content": _content_text(m.get("content"))}
            for m in messages
        ]
        if getattr(self.tok, "chat_template", None):
            return str(
                self.tok.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
            )
        return ByteTokenizer.chat_prompt(ByteTokenizer(), plain)


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{key} is {value!r}, expected a number")
    return float(value)


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                raise RequestError(f"content part of type {part.get('type')!r} is not supported")
        return "".join(parts)
    raise RequestError(f"message content is {type(content).__name__}, expected text")


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How the server was started (every knob that changes energy is here)."""

    served_name: str
    model_dir: Path | None = None
    config: Path | None = None
    preset: str | None = None
    device: str | None = None
    dtype: str | None = None
    max_batch_size: int = 64
    batch_wait_ms: float = 5.0
    max_new_tokens: int = 256
    max_model_len: int | None = None
    ignore_eos: bool = False
    seed: int = 0


def load_model(settings: Settings) -> tuple[Any, Any, str, int]:
    """(model, tokenizer, device, context length) as the settings ask."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = settings.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(settings.seed)
    tokenizer: Any
    if settings.model_dir is not None:
        model = AutoModelForCausalLM.from_pretrained(
            str(settings.model_dir), local_files_only=True, dtype=dtype
        )
        has_tokenizer = any(
            (settings.model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")
        )
        tokenizer = HFTokenizer(settings.model_dir) if has_tokenizer else ByteTokenizer()
    else:
        if settings.config is not None:
            values = json.loads(settings.config.read_text(encoding="utf-8"))
        else:
            values = dict(PRESETS[settings.preset or "tiny"])
        kind = values.pop("model_type", "llama")
        config = AutoConfig.for_model(kind, **values)
        with torch.device(device):  # random init directly on the device
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        tokenizer = ByteTokenizer()
    model = model.to(device=device, dtype=dtype).eval()
    if isinstance(tokenizer, ByteTokenizer) and model.config.vocab_size < 259:
        raise ValueError(f"vocab_size {model.config.vocab_size} < 259: too small for bytes")
    context = settings.max_model_len or int(getattr(model.config, "max_position_embeddings", 2048))
    return model, tokenizer, device, context


# --- requests and batches ----------------------------------------------------------------------


@dataclass
class Job:
    """One request waiting for its batch."""

    prompt_ids: list[int]
    max_new: int
    sampling: tuple[float, float, int]  # temperature, top_p, top_k (0: off)
    stop: tuple[str, ...]
    future: Future[dict[str, Any]] = field(default_factory=Future)


@dataclass
class Stats:
    """What the worker did (for tests and the log)."""

    batches: list[int] = field(default_factory=list)
    requests: int = 0


class Engine:
    """The queue and the worker thread that batches and generates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model, self.tokenizer, self.device, self.context = load_model(settings)
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.stats = Stats()
        self._held: list[Job] = []
        self.worker = threading.Thread(target=self._run, name="generate", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> dict[str, Any]:
        self.queue.put(job)
        return job.future.result()

    def stop(self) -> None:
        self.queue.put(None)
        self.worker.join(timeout=60)

    def _next_batch(self) -> list[Job] | None:
        first = self._held.pop(0) if self._held else self.queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_ms / 1000.0
        while len(batch) < self.settings.max_batch_size:
            timeout = deadline - time.monotonic()
            try:
                job = (
                    self.queue.get(timeout=max(timeout, 0.0))
                    if timeout > 0
                    else (self.queue.get_nowait())
                )
            except queue.Empty:
                break
            if job is None:
                self.queue.put(None)
                break
            if job.sampling == first.sampling:
                batch.append(job)
            else:
                self._held.append(job)  # next batch: one sampling setting per generate call
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                results = self.generate(batch)
            except Exception as exc:  # every waiting request gets an answer
                for job in batch:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)

    def generate(self, batch: list[Job]) -> list[dict[str, Any]]:
        import torch

        started = time.time()
        tok = self.tokenizer
        width = max(len(j.prompt_ids) for j in batch)
        ids = [[tok.pad_id] * (width - len(j.prompt_ids)) + j.prompt_ids for j in batch]
        mask = [[0] * (width - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in batch]
        max_new = max(j.max_new for j in batch)
        temperature, top_p, top_k = batch[0].sampling
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": tok.pad_id,
            "eos_token_id": tok.eos_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
        if self.settings.ignore_eos:
            kwargs["min_new_tokens"] = max_new
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=torch.tensor(ids, device=self.device),
                attention_mask=torch.tensor(mask, device=self.device),
                **kwargs,
            )
        new = out[:, width:].tolist()
        results = []
        for job, row in zip(batch, new, strict=True):
            row = row[: job.max_new]
            finish = "length"
            if not self.settings.ignore_eos and tok.eos_id in row:
                row = row[: row.index(tok.eos_id)]
                finish = "stop"
            text = tok.decode(row)
            for stop in job.stop:
                if stop and stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            results.append(
                {
                    "text": text,
                    "finish_reason": finish,
                    "prompt_tokens": len(job.prompt_ids),
                    "completion_tokens": len(row),
                }
            )
        self.stats.batches.append(len(batch))
        self.stats.requests += len(batch)
        print(
            json.dumps(
                {
                    "batch_start_unix": started,
                    "batch_end_unix": time.time(),
                    "size": len(batch),
                    "prompt_tokens": sum(r["prompt_tokens"] for r in results),
                    "completion_tokens": sum(r["completion_tokens"] for r in results),
                }
            ),
            file=sys.stderr,
            flush=True,
        )
        return results

    # --- OpenAI request bodies --------------------------------------------------------------

    def job(self, body: dict[str, Any], prompt: str) -> Job:
        if body.get("stream"):
            raise RequestError("streaming is not supported by this server; send stream=false")
        if int(body.get("n") or 1) != 1:
            raise RequestError("only n=1 is supported")
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        cap = self.settings.max_new_tokens
        if asked is None:
            max_new = cap
        elif isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
            raise RequestError(f"max_tokens is {asked!r}, expected a whole number >= 1")
        else:
            max_new = min(asked, cap)
        ids = self.tokenizer.encode(prompt)
        room = self.context - max_new
        if room < 1:
            raise RequestError(f"max_tokens {max_new} leaves no room in {self.context} tokens")
        ids = ids[-room:]  # keep the end of an over-long prompt
        temperature = _number(body, "temperature", 1.0)
        top_p = _number(body, "top_p", 1.0)
        top_k = int(body.get("top_k") or 0)
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop)
        return Job(ids, max_new, (temperature, top_p, top_k), stop)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages must be a non-empty list")
        result = self.submit(self.job(body, self.tokenizer.chat_prompt(messages)))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result["text"]},
            "finish_reason": result["finish_reason"],
            "logprobs": None,
        }
        return self._reply("chat.completion", choice, result)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("prompt must be a string (or a list of one string)")
        result = self.submit(self.job(body, prompt))
        choice = {
            "index": 0,
            "text": result["text"],
            "finish_reason": result["finish_reason"],
            "logprobs": None,
        }
        return self._reply("text_completion", choice, result)

    def _reply(self, kind: str, choice: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.settings.served_name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": result["prompt_tokens"],
                "completion_tokens": result["completion_tokens"],
                "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
            },
        }

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.settings.served_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "evalwatt",
                    "max_model_len": self.context,
                }
            ],
        }


# --- HTTP --------------------------------------------------------------------------------------


def make_handler(engine: Engine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per batch is logged instead

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(code, {"error": {"message": message, "type": kind, "code": code}})

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/models":
                self._send(200, engine.models())
            elif path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route GET {path}", "not_found")

        def do_POST(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            routes = {"/v1/chat/completions": engine.chat, "/v1/completions": engine.completion}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path not in routes:
                self._error(404, f"no route POST {path}", "not_found")
                return
            try:
                body = json.loads(raw or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._error(400, f"body is not JSON: {exc}")
                return
            if not isinstance(body, dict):
                self._error(400, "body must be a JSON object")
                return
            model = body.get("model")
            if model is not None and model != engine.settings.served_name:
                self._error(404, f"model {model!r} is not served here", "not_found")
                return
            try:
                self._send(200, routes[path](body))
            except (RequestError, ValueError, TypeError) as exc:
                self._error(400, str(exc))
            except Exception as exc:  # the client gets the reason, not a hang
                self._error(500, f"{type(exc).__name__}: {exc}", "server_error")

    return Handler


def serve(settings: Settings, host: str, port: int) -> tuple[ThreadingHTTPServer, Engine]:
    """Load the model, then bind (so /v1/models answers only once the model is ready)."""
    engine = Engine(settings)
    httpd = ThreadingHTTPServer((host, port), make_handler(engine))
    httpd.daemon_threads = True
    return httpd, engine


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> tuple[Settings, str, int]:
    parser = argparse.ArgumentParser(
        prog="python -m evalwatt.runtime.hf_server", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", type=Path, help="local model folder (from_pretrained)")
    source.add_argument("--config", type=Path, help="config.json: random weights of that shape")
    source.add_argument("--preset", choices=sorted(PRESETS), help="built-in config (default tiny)")
    source.add_argument(
        "--model", type=Path, help="a folder (as --model-dir) or a .json file (as --config)"
    )
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--max-batch-size", type=_positive_int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-new-tokens", type=_positive_int, default=256)
    parser.add_argument("--max-model-len", type=_positive_int)
    parser.add_argument("--ignore-eos", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.model is not None:  # what the rendered job passes: the model's one path
        if not args.model.exists():
            parser.error(f"--model {args.model}: no such file or folder")
        if args.model.is_dir():
            args.model_dir = args.model
        else:
            args.config = args.model
    settings = Settings(
        served_name=args.served_model_name,
        model_dir=args.model_dir,
        config=args.config,
        preset=args.preset,
        device=args.device,
        dtype=args.dtype,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_new_tokens=args.max_new_tokens,
        max_model_len=args.max_model_len,
        ignore_eos=args.ignore_eos,
        seed=args.seed,
    )
    return settings, args.host, args.port


def main(argv: list[str] | None = None) -> int:
    settings, host, port = parse_args(argv)
    httpd, engine = serve(settings, host, port)

    def _stop(signum: int, frame: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    params = sum(p.numel() for p in engine.model.parameters())
    print(
        json.dumps(
            {
                "ready_unix": time.time(),
                "served": settings.served_name,
                "parameters": params,
                "device": engine.device,
                "dtype": str(next(engine.model.parameters()).dtype),
                "listen": f"http://{host}:{httpd.server_address[1]}/v1",
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
