"""The transformers backend (evalwatt.runtime.hf_server) on the CPU with a tiny random Llama.

Needs torch and transformers, which the project's environment does not carry (the GPU
validation machines do). Run it in a separate environment::

    python3 -m venv .venv-hf
    .venv-hf/bin/pip install torch==2.13.0 transformers pytest
    PYTHONPATH=workflow .venv-hf/bin/python -m pytest tests/unit/test_hf_server.py -q \
        -p no:cacheprovider --noconftest
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not importable: the hf backend needs it")
pytest.importorskip(
    "transformers", reason="transformers is not importable: the hf backend needs it"
)

from evalwatt.runtime import hf_server
from evalwatt.runtime.hf_server import ByteTokenizer, Settings

NAME = "tiny-llama"


def _call(url: str, body: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def server():
    settings = Settings(
        served_name=NAME,
        preset="tiny",
        device="cpu",
        max_batch_size=4,
        batch_wait_ms=300.0,
        max_new_tokens=8,
        ignore_eos=True,
    )
    httpd, engine = hf_server.serve(settings, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", engine
    httpd.shutdown()
    httpd.server_close()
    engine.stop()
    thread.join()


def _chat(max_tokens: int | None = None, **extra: object) -> dict:
    body: dict = {"model": NAME, "messages": [{"role": "user", "content": "2 + 2 ?"}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    ids = tok.encode("énergie ⚡")
    assert ids[0] == tok.bos_id and all(3 <= i <= 258 for i in ids[1:])
    assert tok.decode(ids) == "énergie ⚡"
    assert tok.decode([tok.eos_id, 300]) == chr(300 - 3 - 256)  # any id decodes to a byte


def test_models_lists_the_served_name(server):
    url, engine = server
    code, body = _call(f"{url}/models")
    assert code == 200 and [m["id"] for m in body["data"]] == [NAME]
    assert sum(p.numel() for p in engine.model.parameters()) < 200_000  # 2 layers, hidden 64


def test_chat_completion_honours_max_tokens(server):
    url, _ = server
    code, body = _call(f"{url}/chat/completions", _chat(3, temperature=0))
    assert code == 200, body
    assert body["object"] == "chat.completion" and body["model"] == NAME
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(
        choice["message"]["content"], str
    )
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3
    # capped by --max-new-tokens (8), which is also the default
    assert _call(f"{url}/chat/completions", _chat(100))[1]["usage"]["completion_tokens"] == 8
    assert _call(f"{url}/chat/completions", _chat())[1]["usage"]["completion_tokens"] == 8
    assert (
        _call(f"{url}/chat/completions", {**_chat(), "max_completion_tokens": 2})[1]["usage"][
            "completion_tokens"
        ]
        == 2
    )


def test_greedy_is_deterministic_and_sampling_works(server):
    url, _ = server
    a = _call(f"{url}/chat/completions", _chat(6, temperature=0))[1]
    b = _call(f"{url}/chat/completions", _chat(6, temperature=0))[1]
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    code, c = _call(f"{url}/chat/completions", _chat(6, temperature=0.7, top_p=0.9, top_k=20))
    assert code == 200 and c["usage"]["completion_tokens"] == 6


def test_text_completion(server):
    url, _ = server
    code, body = _call(f"{url}/completions", {"model": NAME, "prompt": "Once", "max_tokens": 4})
    assert code == 200 and body["object"] == "text_completion"
    assert body["usage"]["completion_tokens"] == 4 and isinstance(body["choices"][0]["text"], str)
    code, body = _call(f"{url}/completions", {"model": NAME, "prompt": ["Once"], "max_tokens": 1})
    assert code == 200


def test_concurrent_requests_are_batched_up_to_the_limit(server):
    url, engine = server
    before = len(engine.stats.batches)
    with ThreadPoolExecutor(6) as pool:
        replies = list(
            pool.map(lambda i: _call(f"{url}/chat/completions", _chat(2 + i % 3)), range(6))
        )
    assert all(code == 200 for code, _ in replies)
    assert [r["usage"]["completion_tokens"] for _, r in replies] == [2 + i % 3 for i in range(6)]
    batches = engine.stats.batches[before:]
    assert sum(batches) == 6 and max(batches) == 4, batches  # max_batch_size 4


def test_different_sampling_settings_are_not_batched_together(server):
    url, engine = server
    before = len(engine.stats.batches)
    with ThreadPoolExecutor(4) as pool:
        bodies = [_chat(2, temperature=0), _chat(2, temperature=0.5)] * 2
        replies = list(pool.map(lambda b: _call(f"{url}/chat/completions", b), bodies))
    assert all(code == 200 for code, _ in replies)
    assert all(size <= 2 for size in engine.stats.batches[before:])


@pytest.mark.parametrize(
    ("path", "body", "raw", "code", "text"),
    [
        ("/chat/completions", _chat(2, stream=True), None, 400, "streaming is not supported"),
        ("/chat/completions", _chat(2, n=2), None, 400, "only n=1"),
        ("/chat/completions", _chat(0), None, 400, "max_tokens is 0"),
        ("/chat/completions", _chat(2, temperature="hot"), None, 400, "temperature is 'hot'"),
        ("/chat/completions", {**_chat(2), "model": "other"}, None, 404, "'other' is not served"),
        ("/chat/completions", {"model": NAME, "messages": []}, None, 400, "non-empty list"),
        ("/chat/completions", None, b"{not json", 400, "not JSON"),
        ("/completions", {"model": NAME, "prompt": 5}, None, 400, "prompt must be a string"),
        ("/embeddings", {"model": NAME}, None, 404, "no route POST /v1/embeddings"),
    ],
)
def test_bad_requests_get_an_openai_error(server, path, body, raw, code, text):
    url, _ = server
    got, reply = _call(f"{url}{path}", body, raw)
    assert got == code and text in reply["error"]["message"], reply


def test_the_command_line_serves_and_stops_on_sigterm(tmp_path):
    root = Path(hf_server.__file__).resolve().parents[2]
    port = 18000 + os.getpid() % 1000
    argv = [sys.executable, "-m", "evalwatt.runtime.hf_server", "--preset", "tiny"]
    argv += ["--served-model-name", NAME, "--port", str(port), "--device", "cpu"]
    argv += ["--max-new-tokens", "4", "--max-batch-size", "8"]
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            argv, env={**os.environ, "PYTHONPATH": str(root)}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                code, body = _call(f"http://127.0.0.1:{port}/v1/models")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "not ready after 120 s"
                time.sleep(0.5)
        assert code == 200 and body["data"][0]["id"] == NAME
        code, reply = _call(f"http://127.0.0.1:{port}/v1/chat/completions", _chat(None))
        assert code == 200 and reply["usage"]["completion_tokens"] <= 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = (tmp_path / "server.log").read_text().splitlines()
    assert json.loads(lines[0])["served"] == NAME
    assert any('"batch_start_unix"' in line for line in lines)
