# The background run of command.sh step 11 (started by call 11 with setsid, so that it outlives
# the call; call 12 waits for it): `bash bg11.sh RUN_S`, in /tmp/ew, PYTHONPATH and
# CUDA_VISIBLE_DEVICES set by command.sh. Each part is one benchmarks/gpu_modes.py, started only
# if the time it took on the H100 of 2026-12-05 (plus a margin) is left before RUN_S; its
# --budget-s and `timeout` end it by then. The parts, most decisive first:
#   twin-pm: one model job of the same cell three times (synth_t64, _2, _3: the same 64
#            prompts of ~250 words, 64 tokens, 64 connections), 2 repeats: a fresh server, one
#            that has served that cell once, twice. Does the speed-up of a model job's later
#            cells come from the server having served (then it stops after the first copy) or
#            from the cell's place in the job (then it goes on)?
#   twin-mem: one twin model job with the KV cache at 60 % of the free memory (the first
#            serving of the 80 % default grew the card's memory to its limit: twin/);
#   half:    steps 8-9's four cells, per-model without cooldown then with it (repeat 1): the
#            cooldown's effect at this power, on one machine;
#   twin-pc: the three copies of the cell in per-cell mode, once: three fresh servers (and
#            the baseline), the fresh-server spread;
#   real:    the demo's real weights (SmolLM2-135M-Instruct, from the GGUF that call 12
#            carries in its second part), HumanEval 32 questions, both modes once;
#   half-b:  repeat 2 of half, the modes in the other order.
set -o pipefail
RUN_S=${1:?RUN_S}
END=$((SECONDS + RUN_S))
PACK="--reference-idle-s 5 --cooldown-max-s 20 --cooldown-margin-w 10"
TWIN3="--shape llama-8b --tokens 64,64,64 --max-connections 64 --samples 64 --prompt-words 250"
HALF="--shape llama-8b --tokens 32,64 --max-connections 32,64 --samples 64 --prompt-words 250"
part() {  # label, seconds it needs, gpu_modes.py arguments...
  local label=$1 need=$2 left=$((END - SECONDS)); shift 2
  if [ $left -lt "$need" ]; then echo "$label: not started, $left s left (needs ~$need)"; return; fi
  echo "$label: started at $SECONDS s"
  timeout $left python3 benchmarks/gpu_modes.py --out /tmp/gpm-$label --label $label \
    --models /tmp/models --budget-s $((left - 20)) "$@" > /tmp/bg11-$label.log 2>&1
  echo "$label: rc $? at $SECONDS s"
  # a server left by a part stopped at its time: stopped, and gone before the next part loads
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill "$pid"; done
  while [ -n "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader)" ] \
    && [ $SECONDS -lt $END ]; do sleep 1; done
}
if [ "$RUN_S" -ge 215 ]; then
  part twin-pm 200 $TWIN3 $PACK --repeats 2 --modes per-model
else  # the least that decides: one model job of the three copies (~115 s with the weights)
  part twin-pm 110 $TWIN3 $PACK --repeats 1 --modes per-model
fi
# the twin job again with a smaller KV share (60 % of the memory left after the weights, not
# 80 %): does the first serving stay clear of the card's limit, and lose its extra cost?
part twin-mem 110 $TWIN3 $PACK --repeats 1 --modes per-model \
  --server-arg=--cb-max-memory-percent --server-arg=0.6
part half 185 $HALF $PACK --repeats 1 --modes per-model-nocool,per-model
part twin-pc 175 $TWIN3 $PACK --repeats 1 --modes per-cell
while [ ! -f /tmp/smollm2.part-b ] && [ $SECONDS -lt $((END - 300)) ]; do sleep 2; done
GGUF=/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # the demo's file
if [ -f /tmp/smollm2.part-a ] && [ -f /tmp/smollm2.part-b ]; then
  mkdir -p /tmp/smollm2 && cat /tmp/smollm2.part-a /tmp/smollm2.part-b > $GGUF
fi
if [ -f $GGUF ] && ! echo "$SHA  $GGUF" | sha256sum -c -; then rm $GGUF; fi
if [ -f $GGUF ]; then
  part real 300 --weights $GGUF --tokens 64,128 \
    --max-connections 16,32 --limit 32 $PACK --repeats 1 --modes per-model,per-cell
fi
part half-b 190 $HALF $PACK --first-repeat 2 --repeats 1 --modes per-model,per-model-nocool
echo "done at $SECONDS s"
