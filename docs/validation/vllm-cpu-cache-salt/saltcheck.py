"""Does a cell's cache_salt keep vLLM's prefix cache apart? vLLM's CPU build, the demo model.

    .venv-vllm/bin/python docs/validation/vllm-cpu-cache-salt/saltcheck.py MODEL_FOLDER VLLM

(MODEL_FOLDER: the demo model bootstrap.py converts, under ~/.cache/evalwatt/models/<hash>/;
VLLM: .venv-vllm/bin/vllm). One server; the same prompt (~450 tokens) sent five times with
the salts below; vLLM's own counters (/metrics: prefix_cache_queries, prefix_cache_hits) say
how many prompt tokens it took from its cache. Output: output.txt beside this file.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

MODEL, VLLM = sys.argv[1], sys.argv[2]
URL = "http://127.0.0.1:8765"
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
ARGV = [VLLM, "serve", MODEL, "--served-model-name", "m", "--host", "127.0.0.1"]
ARGV += ["--port", "8765", "--enforce-eager", "--seed", "0", "--max-model-len", "2048"]
SENDS = [
    ("cell A, 1st", "aaaa"),
    ("cell A, 2nd (same salt)", "aaaa"),
    ("cell B (other salt)", "bbbb"),
    ("no salt", None),
    ("no salt again", None),
]


def get(path: str) -> str:
    with urllib.request.urlopen(URL + path, timeout=5) as reply:
        return str(reply.read().decode())


def counter(text: str, name: str) -> float:
    pattern = rf"^vllm:{name}_total\{{[^}}]*\}} ([0-9.e+]+)"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def cache_tokens() -> tuple[float, float]:
    text = get("/metrics")
    return counter(text, "prefix_cache_queries"), counter(text, "prefix_cache_hits")


def ask(salt: str | None) -> None:
    prompt = "Tell me about lighthouses. " * 60
    body = {"model": "m", "max_tokens": 2, "temperature": 0}
    body["messages"] = [{"role": "user", "content": prompt}]
    if salt:
        body["cache_salt"] = salt
    request = urllib.request.Request(
        URL + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=300).read()


def main() -> None:
    with open("/tmp/saltcheck-server.log", "w") as log:
        server = subprocess.Popen(
            ARGV,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV},
            start_new_session=True,
        )
    try:
        while True:
            try:
                get("/v1/models")
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("server died: /tmp/saltcheck-server.log")
                time.sleep(1)
        for label, salt in SENDS:
            queried, hit = cache_tokens()
            ask(salt)
            queried_after, hit_after = cache_tokens()
            print(
                f"{label}: prefix-cache queries +{queried_after - queried:.0f} tokens, "
                f"hits +{hit_after - hit:.0f} tokens",
                flush=True,
            )
    finally:
        os.killpg(server.pid, 15)
        server.wait(60)


main()
