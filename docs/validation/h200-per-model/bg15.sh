# The background run of command.sh steps 15-16 (started by call 15 with setsid, so that it
# outlives the call; call 16, if any, waits for it): `bash bg15.sh RUN_S PARTS`, in /tmp/ew,
# PYTHONPATH and CUDA_VISIBLE_DEVICES set by command.sh. PARTS: a comma list, run in its order,
# each started only if its time (from steps 13-14 on the H200, plus a margin) is left before
# RUN_S; its --budget-s and `timeout` end it by then. Every server logs each scheduling step
# (EVALWATT_HF_BATCHING_LOG=DEBUG, runtime/hf_serve.py): requests scheduled, waiting and
# active, with its time, and the CUDA allocator's counters when they move), so that a window
# longer in one mode than in the other can be read from the server's steps. (Call 15 of
# 16:52 UTC, an H100, ran diag and noref: the two modes ran the same steps, and a decode step
# of the same batch took 94-118 ms from one server process to the next.)
#   diag:   steps 13-14's four cells (llama-8b random, 64 prompts of ~250 words, 32/64 tokens,
#           32/64 connections), per-model then per-cell, one repeat;
#   kv60:   diag with the KV cache at 60 % of the memory left after the weights (the library's
#           default 80 % left the H100 1 GB short of full: `--cb-max-memory-percent 0.6`);
#   noref:  the same model job with no reference idle (--reference-idle-s 0): its first cell
#           then follows the wave after the gap a cell job's does (~4 s against ~9 s);
#   three:  the four cells, three repeats of both modes (the modes alternate; ~1,090 s on an
#           H100: diag's 362 s three times, so it starts with 700 s left and its --budget-s
#           leaves out the runs that would end after RUN_S);
#   real:   the demo's real weights (SmolLM2-135M-Instruct from the GGUF in two parts),
#           HumanEval 32 questions, 64/128 tokens, 16/32 connections, both modes once;
#   twin:   one model job of one cell three times (64 tokens, 64 connections).
set -o pipefail
RUN_S=${1:?RUN_S}
PARTS=${2:-diag,noref,twin}
END=$((SECONDS + RUN_S))
export EVALWATT_HF_BATCHING_LOG=DEBUG
PACK="--reference-idle-s 5 --cooldown-max-s 20 --cooldown-margin-w 10"
NOREF="--reference-idle-s 0 --cooldown-max-s 20 --cooldown-margin-w 10"
HALF="--shape llama-8b --tokens 32,64 --max-connections 32,64 --samples 64 --prompt-words 250"
TWIN3="--shape llama-8b --tokens 64,64,64 --max-connections 64 --samples 64 --prompt-words 250"
part() {  # label, seconds it needs, gpu_modes.py arguments...
  local label=$1 need=$2 left=$((END - SECONDS)); shift 2
  if [ $left -lt "$need" ]; then echo "$label: not started, $left s left (needs ~$need)"; return; fi
  echo "$label: started at $SECONDS s"
  timeout $left python3 benchmarks/gpu_modes.py --out /tmp/gpm-$label --label $label \
    --models /tmp/models --budget-s $((left - 20)) "$@" > /tmp/bg15-$label.log 2>&1
  echo "$label: rc $? at $SECONDS s"
  # a server left by a part stopped at its time: stopped, and gone before the next part loads
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill "$pid"; done
  while [ -n "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader)" ] \
    && [ $SECONDS -lt $END ]; do sleep 1; done
}
GGUF=/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # the demo's file
gguf() {  # the GGUF from its two parts, once both are here (part b comes with call 16)
  while [ ! -f /tmp/smollm2.part-b ] && [ $SECONDS -lt $((END - 90)) ]; do sleep 2; done
  if [ -f /tmp/smollm2.part-a ] && [ -f /tmp/smollm2.part-b ] && [ ! -f $GGUF ]; then
    mkdir -p /tmp/smollm2 && cat /tmp/smollm2.part-a /tmp/smollm2.part-b > $GGUF
    echo "$SHA  $GGUF" | sha256sum -c - || rm $GGUF
  fi
}
for p in ${PARTS//,/ }; do
  case $p in
    diag) part diag 400 $HALF $PACK --repeats 1 --modes per-model,per-cell ;;
    kv60) part kv60 400 $HALF $PACK --repeats 1 --modes per-model,per-cell \
      --server-arg=--cb-max-memory-percent --server-arg=0.6 ;;
    noref) part noref 100 $HALF $NOREF --repeats 1 --modes per-model ;;
    three) part three 700 $HALF $PACK --repeats 3 --modes per-model,per-cell ;;
    real) gguf; [ -f $GGUF ] && part real 150 --weights $GGUF --tokens 64,128 \
      --max-connections 16,32 --limit 32 $PACK --repeats 1 --modes per-model,per-cell ;;
    twin) part twin 110 $TWIN3 $PACK --repeats 1 --modes per-model ;;
    *) echo "unknown part $p" ;;
  esac
done
echo "done at $SECONDS s"
