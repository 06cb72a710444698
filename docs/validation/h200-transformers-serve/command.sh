# The hf backend (`transformers serve`, continuous batching) on one H200, in two device calls
# (the demo's 98 MB GGUF and the carried packages exceed one call's 64 MiB, so the GGUF
# travels in two parts): `bash command.sh 1`, then `bash command.sh 2` on the same machine.
#   1: the low-power regime (random TinyLlama-1.1B shape, 4 connections), then the
#      high-power one (random Llama-3.1-8B shape, 128 connections, 256-token answers);
#   2: real weights: SmolLM2-135M-Instruct from the demo's GGUF, HumanEval (164 questions).
# Carried (ignored by git): .devtmp/site.tgz (build_site.py: inspect-ai, HumanEval, fastapi,
# uvicorn, openai, pydantic, gguf ... for Python 3.12: what the GPU image lacks) and
# .devtmp/smollm2.part-a (call 1: the GGUF's first 42,000,000 bytes, `head -c`) and
# .devtmp/smollm2.part-b (call 2: the rest, `tail -c +42000001`); the whole file's sha256 is
# b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 (printed by call 2).
set -o pipefail
STEP=${1:?1 or 2}
if [ "$STEP" = 1 ]; then
  mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
  cp .devtmp/smollm2.part-a /tmp/smollm2.part-a || exit 1
fi
[ -d /tmp/site/inspect_ai ] || { echo "no /tmp/site: not the machine of call 1"; exit 3; }
D=/tmp/site/evalwatt-0.1.0.dist-info
mkdir -p $D
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > $D/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.runtime.tasks\n' > $D/entry_points.txt
echo evalwatt > $D/top_level.txt
printf '{"url": "file://%s", "dir_info": {"editable": true}}' "$PWD" > $D/direct_url.json
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
truth() {  # label, timeout (s), gpu_truth arguments...
  local label=$1 limit=$2; shift 2
  timeout $limit python3 benchmarks/gpu_truth.py --out /tmp/$label --label $label \
    --skip-sampler-cost "$@" > $OUT/$label.log 2>&1
  echo "$label rc=$? after $((SECONDS)) s"
  (cd /tmp/$label && tar czf $OUT/truth-$label.tgz --exclude='*.eval' --exclude='model-*' \
    report.json results/*/baselines results/*/cells results/*/*.jsonl results/*/logs 2>/dev/null)
  python3 - /tmp/$label/report.json <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["label"], r["power"])
for c in r["cells"]:
    keep = ("cell", "window_s", "generation_s", "average_power_w", "peak_power_w", "tokens_per_s",
            "j_per_token", "j_per_sample", "score", "phase_vs_counter_pct", "ceems_10s_inference_err_pct")
    print({k: c.get(k) for k in keep}, {k: m["gap_pct"] for k, m in c["methods"].items()})
print("failures", r["failures"])
EOF
}
if [ "$STEP" = 1 ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit,enforced.power.limit --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    command -v transformers; } > $OUT/gpu.txt 2>&1
  cat $OUT/gpu.txt
  truth low 170 --shape llama-1b --tokens 128 --windows 35 --samples 16 --max-connections 4
  [ -f /tmp/low/report.json ] || { tail -40 $OUT/low.log; exit 1; }
  nvidia-smi dmon -s pucm -d 1 > $OUT/dmon-high.txt 2>&1 &
  DMON=$!
  truth high 330 --shape llama-8b --tokens 256 --windows 110 --samples 256 --prompt-words 100 \
    --max-connections 128 --expect-busy
  kill $DMON
  [ -f /tmp/high/report.json ] || tail -40 $OUT/high.log
else
  [ -f /tmp/smollm2.part-a ] || { echo "no GGUF part a: not the machine of call 1"; exit 3; }
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill $pid; done
  mkdir -p /tmp/smollm2
  cat /tmp/smollm2.part-a .devtmp/smollm2.part-b > /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  sha256sum /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  truth real 300 --weights /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --tokens 256 \
    --windows 60 --max-connections 64
  [ -f /tmp/real/report.json ] || tail -40 $OUT/real.log
fi
