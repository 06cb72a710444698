# One prompt of ~1,100 byte tokens, sent twice to the server at URL (argv 1) pinned to MODEL
# (argv 2): the seconds and usage of each answer (docs/validation/hf-block-sharing/check.sh).
import json, sys, time, urllib.request

url, model = sys.argv[1], sys.argv[2]
prompt = " ".join(f"word{i}" for i in range(150))  # ~1,100 byte tokens with the template: 34 blocks of 32
for i in range(2):
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=120) as r:
        rep = json.load(r)
    print(i, round(time.monotonic() - t, 3), rep["usage"])
