# The background run of command.sh steps 13-14 (started by call 13 with setsid, so that it
# outlives the call; call 14 waits for it): `bash bg13.sh RUN_S`, in /tmp/ew, PYTHONPATH and
# CUDA_VISIBLE_DEVICES set by command.sh. The code under test sends every job's server a warm-up
# wave once it serves (contracts.spec.WarmUpSpec: as many requests as the largest swept
# max_connections, 256 words and 16 tokens each, the baseline's and each cell job's the same as
# the model job's), so that both modes start their cells in the same server state: in step 11
# a fresh server served a cell 6-7 % dearer than it served the same cell next (twin/). The
# parts, each one benchmarks/gpu_modes.py started only if its time (from steps 8-9 and 11 on
# the H100, plus a margin) is left before RUN_S; its --budget-s and `timeout` end it by then:
#   half:   steps 8-9's four cells (llama-8b random, 64 prompts of ~250 words, 32/64 tokens,
#           32/64 connections), per-model and per-cell, repeats 1 and 2 (the modes alternate);
#   half-c: repeat 3, merged with half into one report (--merge) at the end; started with
#           time for its per-model run (~90 s) at least, its per-cell run ended by `timeout`
#           where the time is short (the report keeps the runs that ended);
#   real:   the demo's real weights (SmolLM2-135M-Instruct from the GGUF call 14 carries in its
#           second part), HumanEval 32 questions, 64/128 tokens, 16/32 connections, both modes
#           once (per-model first);
#   twin:   one model job of the same cell three times (step 11's twin-pm): with the wave, its
#           first copy should cost what the later ones do.
set -o pipefail
RUN_S=${1:?RUN_S}
END=$((SECONDS + RUN_S))
PACK="--reference-idle-s 5 --cooldown-max-s 20 --cooldown-margin-w 10"
HALF="--shape llama-8b --tokens 32,64 --max-connections 32,64 --samples 64 --prompt-words 250"
TWIN3="--shape llama-8b --tokens 64,64,64 --max-connections 64 --samples 64 --prompt-words 250"
part() {  # label, seconds it needs, gpu_modes.py arguments...
  local label=$1 need=$2 left=$((END - SECONDS)); shift 2
  if [ $left -lt "$need" ]; then echo "$label: not started, $left s left (needs ~$need)"; return; fi
  echo "$label: started at $SECONDS s"
  timeout $left python3 benchmarks/gpu_modes.py --out /tmp/gpm-$label --label $label \
    --models /tmp/models --budget-s $((left - 20)) "$@" > /tmp/bg13-$label.log 2>&1
  echo "$label: rc $? at $SECONDS s"
  # a server left by a part stopped at its time: stopped, and gone before the next part loads
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill "$pid"; done
  while [ -n "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader)" ] \
    && [ $SECONDS -lt $END ]; do sleep 1; done
}
part half 300 $HALF $PACK --repeats 2 --modes per-model,per-cell
part half-c 100 $HALF $PACK --first-repeat 3 --repeats 1 --modes per-model,per-cell
if [ -f /tmp/gpm-half/report.json ] && [ -f /tmp/gpm-half-c/report.json ]; then
  python3 benchmarks/gpu_modes.py --out /tmp/gpm-half-all --label half-all \
    --merge /tmp/gpm-half /tmp/gpm-half-c > /tmp/bg13-half-all.log 2>&1
  echo "half-all (merged): rc $? at $SECONDS s"
fi
GGUF=/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # the demo's file
if [ -f /tmp/smollm2.part-a ] && [ -f /tmp/smollm2.part-b ]; then
  mkdir -p /tmp/smollm2 && cat /tmp/smollm2.part-a /tmp/smollm2.part-b > $GGUF
fi
if [ -f $GGUF ] && ! echo "$SHA  $GGUF" | sha256sum -c -; then rm $GGUF; fi
if [ -f $GGUF ]; then
  part real 90 --weights $GGUF --tokens 64,128 \
    --max-connections 16,32 --limit 32 $PACK --repeats 1 --modes per-model,per-cell
fi
part twin 110 $TWIN3 $PACK --repeats 1 --modes per-model
echo "done at $SECONDS s"
