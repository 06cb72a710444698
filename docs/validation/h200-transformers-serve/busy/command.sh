# The hf backend (`transformers serve`, continuous batching) on one H200, the busy regime
# pushed past half the power limit, in one device call: `bash command.sh` from the repository.
# The run of ../command.sh (128 connections) averaged 48.7 % of the limit; its dmon trace shows
# ~690 W while the library prefills and ~300-350 W while it decodes. So:
#   prefill: random Llama-3.1-8B shape, 300-word prompts (~940 tokens), 64-token answers,
#            128 connections, 128 samples (one wave): prompt-heavy, as multiple-choice
#            evaluations are;
#   c256:    the same model, 100-word prompts (~345 tokens), 128-token answers, 256
#            connections, 256 samples: one wave of twice the batch of ../command.sh.
# The random weights are written once (gpu_truth --models) and served by both.
# Carried (ignored by git): .devtmp/site.tgz (../build_site.py: Inspect, HumanEval, fastapi,
# uvicorn, openai, pydantic ... for Python 3.12) and .devtmp/ew.tgz: `git archive 4209f98
# workflow benchmarks` with this change's benchmarks/gpu_truth.py (--models, --job-python,
# --server-arg), so that other work in progress in the tree cannot reach the run.
set -o pipefail
mkdir -p /tmp/site /tmp/ew && tar xzf .devtmp/site.tgz -C /tmp/site && tar xzf .devtmp/ew.tgz -C /tmp/ew || exit 1
D=/tmp/site/evalwatt-0.1.0.dist-info
mkdir -p $D
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > $D/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.runtime.tasks\n' > $D/entry_points.txt
echo evalwatt > $D/top_level.txt
printf '{"url": "file:///tmp/ew", "dir_info": {"editable": true}}' > $D/direct_url.json
export PYTHONPATH=/tmp/site:/tmp/ew/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit,enforced.power.limit --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  command -v transformers python3; nproc; } > $OUT/gpu.txt 2>&1
cat $OUT/gpu.txt
nvidia-smi dmon -s pucm -d 1 -o T > $OUT/dmon.txt 2>&1 &
DMON=$!
truth() {  # label, timeout (s), gpu_truth arguments...
  local label=$1 limit=$2; shift 2
  (cd /tmp/ew && timeout $limit python3 benchmarks/gpu_truth.py --out /tmp/$label --label $label \
    --skip-sampler-cost --models /tmp/models --shape llama-8b --windows 40 --expect-busy \
    "$@") > $OUT/$label.log 2>&1
  echo "$label rc=$? at $SECONDS s"
  (cd /tmp/$label && tar czf $OUT/truth-$label.tgz --exclude='*.eval' \
    report.json results/*/baselines results/*/cells results/*/*.jsonl results/*/logs 2>/dev/null)
  python3 - /tmp/$label/report.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["label"], r["power"])
for c in r["cells"]:
    keep = ("cell", "window_s", "generation_s", "average_power_w", "peak_power_w", "tokens_per_s",
            "j_per_token", "j_per_sample", "phase_vs_counter_pct", "ceems_10s_inference_err_pct")
    print({k: c.get(k) for k in keep}, {k: m["gap_pct"] for k, m in c["methods"].items()})
print("failures", r["failures"])
PY
}
truth prefill 200 --samples 128 --tokens 64 --prompt-words 300 --max-connections 128
truth c256 $((405 - SECONDS)) --samples 256 --tokens 128 --prompt-words 100 --max-connections 256
kill $DMON
