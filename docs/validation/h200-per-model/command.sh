# Issue 17 on one H200: per-model against per-cell execution of the same 4 cells, the workflow's
# rendered jobs with the hf backend (`transformers serve`), benchmarks/gpu_modes.py, in two device
# calls on the same machine: `bash docs/validation/h200-per-model/command.sh 1`, then `... 2`.
#   1: random weights of TinyLlama-1.1B's shape, 64 synthetic prompts of ~60 words, answers of
#      exactly 32 and 64 tokens, max_connections 16 and 32; per-cell and per-model (reference
#      idle 5 s, cooldown up to 20 s) interleaved, repeats 1 and 2;
#   2: real weights, SmolLM2-135M-Instruct from the demo's GGUF, HumanEval (32 questions, at most
#      64 and 128 tokens, max_connections 16 and 32), both modes once; then repeat 3 of call 1's
#      cells, both modes and per-model without cooldown, its preview calibrated on repeats 1-2.
# Carried (ignored by git): .devtmp/site.tgz (../h200-transformers-serve/build_site.py: Inspect,
# HumanEval, fastapi, uvicorn, openai, pydantic, gguf ... for Python 3.12), .devtmp/gpm-ew.tgz
# (`tar czf .devtmp/gpm-ew.tgz --exclude=__pycache__ workflow benchmarks config pyproject.toml`:
# the tree as tested on the CPU just before, so that other work in progress cannot reach the
# run) and the GGUF in two parts (call 1: .devtmp/smollm2.part-a, its first 42,000,000 bytes;
# call 2: .devtmp/smollm2.part-b, the rest; sha256 b179c952...db53, printed by call 2).
# Each call's work stops by LIMIT seconds: gpu_modes.py --budget-s starts no run it expects to
# end later, and `timeout` stops it at LIMIT.
# Ran as `command.sh 1 480` and `command.sh 2 290` (the session's device time left no more):
# call 1 made per-cell repeat 1 and per-model repeats 1 and 2, and skipped per-cell repeat 2
# (--budget-s); call 2 made the real weights' per-cell run and skipped their per-model run (the
# budget rule of then took a mode's first run as long as the last run of any mode: fixed since,
# a mode's first run is started), and random-b was stopped by `timeout` in its baseline.
# report-*.json: each call's report (also in gpm-*.tgz); docs/validation.md reads them.
# Step 3 (a later session, 765 s of device time in all, a fresh machine): repeat 3 of call 1's
# cells, per-model without cooldown first, then per-model, then per-cell while the budget
# lasts, the preview calibrated on repeats 1-2 (calibration-random-a.json, as call 2 meant
# to). gpm-ew.tgz was then `git archive b18b1f9 workflow benchmarks config pyproject.toml`:
# the code that made repeats 1-2 but for the watchdog and the docs of that commit.
# Ran as `command.sh 3 380`.
# Steps 4 and 5 (planned, not run yet: no device machine was lent in the session that wrote
# them): the same comparison in the regime that matters. Repeats 1-3 ran at 133-150 W, where
# `transformers serve` is bound by its Python scheduler and its throughput moved by up to 25 %
# from run to run (docs/validation.md: the energy followed the generation time, at the same
# power); issue 18's busy runs drew 64-68 % of the limit with an 8B shape, long prompts and
# 128+ connections. 4: repeats 1 and 2 of both modes on a fresh machine; 5 (same machine,
# next call): repeat 3, then all three analysed together (--merge). Carry .devtmp/site.tgz
# and .devtmp/gpm-ew.tgz (`git archive HEAD workflow benchmarks config pyproject.toml`).
# Run as `command.sh 4 560`, then `command.sh 5 560`.
# Steps 6 and 7 (what ran instead of 4 and 5, on 2026-12-05, 1,800 s of device time): the
# busy regime halved so that three repeats of both modes fit (64 prompts of ~250 words,
# answers of 32 and 64 tokens, 32 and 64 connections), with the warm-up request the job now
# sends before `ready` (transformers serve builds its batching on its first request: in
# repeats 1-3 that build fell inside the first cell's generation window, per-cell mode's
# every cell). The three repeats run in one process started in the background by call 6
# (setsid, so that it outlives the call), which call 7 waits for: no gap in the runs between
# the two calls. Carry .devtmp/site.tgz and .devtmp/gpm-ew.tgz (`tar czf .devtmp/gpm-ew.tgz
# --exclude=__pycache__ workflow benchmarks config pyproject.toml`, the tree as committed).
# The modes alternate per-model, per-cell / per-cell, per-model / per-model, per-cell: if the
# budget leaves a run out, it is the last, a per-cell one (the longer mode).
# Run as `command.sh 6 585 [RUN_S]`, then `command.sh 7 585` (RUN_S: the background run's
# --budget-s, 1080 by default).
# Steps 8 and 9 (planned, not run yet: no device machine was lent in the session that wrote
# them): steps 6 and 7 again with the hf server evalwatt runs since (runtime/hf_serve.py:
# `transformers serve` with its prefix cache's block sharing off), which is what 6-7's later
# cells missed by (33-61 %, the cache); per-model without cooldown is the third mode, so that
# the cooldown's effect on spread and temperature is measured at this power. Carry the same
# .devtmp/site.tgz and a new .devtmp/gpm-ew.tgz of the tree as committed. Outputs: busy2.
# Without the cache, per-model runs last longer than in 6-7, and the third mode adds three:
# about 1,100 s in all, so --budget-s leaves out the last run of repeat 3 (gpu_modes.py starts
# no run it expects to end later). Run as `command.sh 8 585 1040`, then `command.sh 9 585`
# (RUN_S, the background run's --budget-s: 1040, as steps 6-7 ran; its timeout, RUN_S + 70,
# must end inside the two calls' waits).
# `command.sh 8 585 RUN_S MODES` takes the modes too (the device time left decides).
# Ran (2026-12-05, third session, on an H100: the pool started no H200) as `command.sh 8 585
# 750 per-model,per-cell`, then `command.sh 9 215`: thirteen refused or failed starts had left
# 914 s of device time, so no run without cooldown, and --budget-s left out per-cell repeat 3.
# Step 10 (planned, never run: replaced by 11-12, which hold its twin cells; branch gone): what
# 8-9 left undecided, whether a model job's later cells are cheaper because the server has
# served before (its first-use costs) or because of their place. One cell twice in each model
# job (`--tokens 64,64`: synth_t64 and synth_t64_2, the same 64 questions of ~250 words, 64
# tokens, 64 connections): per-model runs it on a fresh server then on a warm one, per-cell on
# two fresh ones; 3 repeats of both modes in one call on a fresh machine (about 500 s). Carry
# .devtmp/site.tgz and a .devtmp/gpm-ew.tgz of the tree as committed. Run as
# `command.sh 10 585`.
# Steps 11 and 12 (2026-12-05, fourth session; what replaced 10): transformers 5.17 serves these
# runs with paged sdpa attention (no flash attention on the device machines), for which its
# batching turns CUDA graphs off, so 10's candidate cause (graphs captured lazily) cannot be
# it; the server log now records that decision (runtime/hf_serve.py, batching logger at INFO).
# One background run over two calls, bg11.sh (read it for the parts): the same cell three
# times in a model job (is the speed-up the served server's or the cell's place?), the
# cooldown's effect at this power, and the demo's real weights in both modes. Carry
# .devtmp/site.tgz, a .devtmp/gpm-ew.tgz of the tree as committed and, in call 11,
# .devtmp/smollm2.part-a (the GGUF's first 42,000,000 bytes), in call 12 .devtmp/smollm2.part-b
# (the rest). Run as `command.sh 11 585 RUN_S` (RUN_S 1050 by default), then
# `command.sh 12 585`. With less device time, one call: `command.sh 11 585 530` and no
# GGUF carried (bg11.sh's parts before `real` that fit in RUN_S).
# Ran (2026-12-05, fourth session; gpm-ew.tgz of 3e7cda6) as `command.sh 11 190 150` on an H100:
# the refused and failed starts before it had spent 1,411 of the session's 1,800 s, so
# bg11.sh ran its least part, one model job of the twin cells (1 repeat, 116 s); files in
# twin/ (gpm-twin-pm.tgz, bg11.log, dmon-bg11.txt, gpu-11.txt, as the call returned them then;
# windows.txt by windows.py). Since, the logs come back in one bg11-logs.tgz.
# Steps 13 and 14 (2026-12-05, fifth session): the same two-call shape as 11-12 for the code
# that sends every job's server a warm-up wave once it serves (runtime/serving.py,
# contracts.spec.WarmUpSpec), bg13.sh (read it for the parts): steps 8-9's four cells in both
# modes, three repeats, then the real weights in both modes, then the twin job. Carry
# .devtmp/site.tgz, a .devtmp/gpm-ew.tgz of the tree as committed (`git archive HEAD workflow
# benchmarks config pyproject.toml | gzip`) and .devtmp/smollm2.part-a in call 13,
# .devtmp/smollm2.part-b in call 14. Run as `command.sh 13 585 RUN_S` (RUN_S 1100 by default),
# then `command.sh 14 585`.
# Ran (2026-12-05, fifth session, on an H200; gpm-ew.tgz of c345dbc) as `command.sh 13 585 800`
# without the GGUF, then `command.sh 14 118`: refused and failed starts had spent 1,001 of the
# session's 1,800 s, so repeats 1 and 2 of both modes ran (half) and repeat 3's model job was
# cut when the device time ran out; files in wave/ (gpm-half.tgz, bg13-logs.tgz as call 14
# returned them; summary.txt, the run's printed summary; windows.txt by windows.py).
# Steps 15 and 16 (2026-12-05, sixth session): what makes a model job's first cell 4.6 % dearer
# than the same cell in its own job (steps 13-14). bg15.sh (read it for the parts) with every
# server logging each scheduling step (runtime/hf_serve.py, EVALWATT_HF_BATCHING_LOG=DEBUG).
# One call: `command.sh 15 585 RUN_S PARTS` (RUN_S <= 540, e.g. 530 diag,noref,twin); two
# calls: `command.sh 15 585 RUN_S PARTS` carrying .devtmp/smollm2.part-a, then `command.sh 16
# 585` carrying .devtmp/smollm2.part-b (PARTS with real). Carry .devtmp/site.tgz and a
# .devtmp/gpm-ew.tgz of the tree as committed in both.
# Ran (2026-12-05, sixth session, two H100s; docs/validation.md): `command.sh 15 585 530
# diag,noref,twin` (gpm-ew.tgz of 950420b; twin not started, its time was spent), then on a
# second machine `command.sh 15 585 1000 kv60,diag,real` carrying part-a (8ea5175), `command.sh
# 16 550` carrying part-b only (site.tgz is on the machine: both would pass the 64 MiB), which
# left `real` unstarted (140 s of its 150), so at once, on the same machine:
#   export PYTHONPATH=/tmp/site:/tmp/ew/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0 \
#     EVALWATT_HF_BATCHING_LOG=DEBUG; cd /tmp/ew && timeout 215 python3 benchmarks/gpu_modes.py \
#     --out /tmp/gpm-real --label real --models /tmp/models --budget-s 195 \
#     --weights /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --tokens 64,128 \
#     --max-connections 16,32 --limit 32 $PACK --repeats 1 --modes per-model,per-cell
# (its model job ran in full, its per-cell run was stopped by `timeout` in its second cell).
# Files in diag/ (the first call's as gpm-diag-a.tgz and bg15-logs-a.tgz, the second
# machine's as gpm-diag-b.tgz and bg15-logs-b.tgz; windows.txt by windows.py).
# Ran (2026-12-05, seventh session, one H100, GPU-d8cdbb21..., gpm-ew.tgz of 0f4ebfe):
# `command.sh 15 585 1120 three,twin` then `command.sh 16 585`: the three repeats of both modes
# ran in 1,119 s (twin not started); then at once, on the same machine, the twin job and one
# more model job of the four cells (`rev`; gpu_modes.py orders the cells itself, so not
# reversed):
#   export PYTHONPATH=/tmp/site:/tmp/ew/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0 \
#     EVALWATT_HF_BATCHING_LOG=DEBUG; cd /tmp/ew && P="--models /tmp/models $PACK --repeats 1 \
#     --modes per-model --shape llama-8b --samples 64 --prompt-words 250"
#   timeout 170 python3 benchmarks/gpu_modes.py --out /tmp/gpm-twin --label twin \
#     --budget-s 150 $P --tokens 64,64,64 --max-connections 64
#   timeout 190 python3 benchmarks/gpu_modes.py --out /tmp/gpm-rev --label rev \
#     --budget-s 170 $P --tokens 64,32 --max-connections 32,64
# Files in three/. The twin's second cell decoded at 102 ms a step against 163 ms for its
# first, over the same key lengths.
# Step 17 (one call on a fresh machine): is that a cost per new attention shape, and does it
# go with cuDNN attention off? sdpa_shapes.py times the call paged SDPA makes, twice over the
# same key lengths, per kernel; then the twin job of two cells with the server's cuDNN
# attention off (EVALWATT_HF_CUDNN_ATTENTION=off, runtime/hf_serve.py). Carry .devtmp/site.tgz
# and a .devtmp/gpm-ew.tgz of the tree as committed. Run as `command.sh 17 LIMIT`.
# Ran (2026-12-05, seventh session, a second H100, GPU-a237c392..., gpm-ew.tgz of 231431a, where
# the switch was on unless set) as `command.sh 17 150`, the 279 s of device time left; files
# in cudnn/. The hf server runs with cuDNN attention off by default since, through its
# command's --cudnn-attention=off from the config's hf.cudnn_attention (the variable is gone;
# the bg scripts need nothing for it). The three repeats of both modes with it ran
# (2026-12-05, eighth session, a third H100, GPU-b1cae4fe..., gpm-ew.tgz of 4e1930e) as
# `command.sh 15 585 1400 three`, `command.sh 16 585` and `command.sh 16 340` on one machine
# (1,384 s), then three-off/cudnn-on.sh; files in three-off/.
set -o pipefail
STEP=${1:?1 to 9, 11 to 17}
LIMIT=${2:-500}
CAL=$PWD/docs/validation/h200-per-model/calibration-random-a.json
if [ "$STEP" = 1 ] || [ "$STEP" = 3 ] || [ "$STEP" = 4 ] || [ "$STEP" = 6 ] || [ "$STEP" = 8 ] \
  || [ "$STEP" = 11 ] || [ "$STEP" = 13 ] || [ "$STEP" = 15 ] || [ "$STEP" = 17 ]; then
  mkdir -p /tmp/site /tmp/ew && tar xzf .devtmp/site.tgz -C /tmp/site \
    && tar xzf .devtmp/gpm-ew.tgz -C /tmp/ew || exit 1
  [ "$STEP" != 1 ] || cp .devtmp/smollm2.part-a /tmp/ || exit 1
  # step 11: the GGUF's first part when carried (one call only, RUN_S <= 560: not needed)
  { [ "$STEP" != 11 ] && [ "$STEP" != 13 ] && [ "$STEP" != 15 ]; } || [ ! -f .devtmp/smollm2.part-a ] \
    || cp .devtmp/smollm2.part-a /tmp/ || exit 1
fi
[ -d /tmp/ew/workflow ] || { echo "no /tmp/ew: not the machine of call 1"; exit 3; }
D=/tmp/site/evalwatt-0.1.0.dist-info
mkdir -p $D
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > $D/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.runtime.tasks\n' > $D/entry_points.txt
echo evalwatt > $D/top_level.txt
printf '{"url": "file:///tmp/ew", "dir_info": {"editable": true}}' > $D/direct_url.json
export PYTHONPATH=/tmp/site:/tmp/ew/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
gpu_free() {  # a server left by a run stopped at its time limit
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill $pid; done
}
modes() {  # label, gpu_modes.py arguments...
  local label=$1 left=$((LIMIT - SECONDS)); shift
  (cd /tmp/ew && timeout $left python3 benchmarks/gpu_modes.py --out /tmp/gpm-$label \
    --label $label --models /tmp/models --budget-s $((left - 30)) "$@") > $OUT/$label.log 2>&1
  echo "$label rc=$? at $SECONDS s"
  gpu_free
  tar czf $OUT/gpm-$label.tgz -C / --exclude='model-*' --exclude=bin tmp/gpm-$label
  sed -n '/^cell \/ mode/,$p' $OUT/$label.log | cut -c1-220
}
HALF="--shape llama-8b --tokens 32,64 --max-connections 32,64 --samples 64 --prompt-words 250"
BUSY="--shape llama-8b --tokens 64,128 --max-connections 64,128 --samples 128 --prompt-words 250"
SYNTH="--shape llama-1b --tokens 32,64 --max-connections 16,32 --samples 64 --prompt-words 50"
PACK="--reference-idle-s 5 --cooldown-max-s 20 --cooldown-margin-w 10"
BG=busy MODES=per-model,per-cell  # the background run of steps 6-7; 8-9: busy2, three modes
if [ "$STEP" = 8 ] || [ "$STEP" = 9 ]; then BG=busy2 MODES=${4:-per-model,per-cell,per-model-nocool}; fi
wait_busy() {  # until the background run of step 6 (8) ends, or LIMIT is near; then its files
  while [ ! -f /tmp/$BG.rc ] && [ $SECONDS -lt $((LIMIT - 25)) ]; do sleep 2; done
  echo "$BG: rc $(cat /tmp/$BG.rc 2>/dev/null || echo '(still running)') at $SECONDS s"
  cp /tmp/$BG.log /tmp/dmon-$BG.txt $OUT/
  tar czf $OUT/gpm-$BG.tgz -C / --exclude='model-*' --exclude=bin tmp/gpm-$BG
  sed -n '/^cell \/ mode/,$p' /tmp/$BG.log | cut -c1-220
}
BGN=11 LABELS="twin-pm twin-mem twin-pc half real half-b"  # steps 11-12; 13-14: bg13.sh
if [ "$STEP" = 13 ] || [ "$STEP" = 14 ]; then BGN=13 LABELS="half half-c half-all real twin"; fi
if [ "$STEP" = 15 ] || [ "$STEP" = 16 ]; then BGN=15 LABELS="diag kv60 noref three real twin"; fi
bg_files() {  # what bg$BGN.sh has made so far, into $OUT (at most 8 files come back: the
  # logs, the GPU's description and dmon in one file, each part's folder in one)
  (cd /tmp && tar czf $OUT/bg$BGN-logs.tgz bg$BGN.log gpu-$BGN.txt dmon-bg$BGN.txt \
    $(ls bg$BGN-*.log 2>/dev/null))
  for label in $LABELS; do
    [ -d /tmp/gpm-$label ] || continue
    tar czf $OUT/gpm-$label.tgz -C / --exclude='model-*' --exclude=bin tmp/gpm-$label
  done
  sed -n '/^cell \/ mode/,/^mode:/p' /tmp/bg$BGN-*.log | cut -c1-220
}
if [ "$STEP" = 17 ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  } > $OUT/gpu-17.txt 2>&1
  cat $OUT/gpu-17.txt
  python3 docs/validation/h200-per-model/sdpa_shapes.py --out $OUT/sdpa-shapes.json 2>&1 | tail -8
  echo "sdpa_shapes done at $SECONDS s"
  export EVALWATT_HF_BATCHING_LOG=DEBUG EVALWATT_HF_CUDNN_ATTENTION=off
  modes twin-nocudnn --shape llama-8b --samples 64 --prompt-words 250 --tokens 64,64 \
    --max-connections 64 $PACK --repeats 1 --modes per-model
  grep -h "attention kernels allowed" /tmp/gpm-twin-nocudnn/results/*/models/*/server.log | head -2
  exit 0
fi
if [ "$STEP" = 11 ] || [ "$STEP" = 13 ] || [ "$STEP" = 15 ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  } > /tmp/gpu-$BGN.txt 2>&1
  cat /tmp/gpu-$BGN.txt
  setsid nvidia-smi dmon -s pucm -d 1 -o T > /tmp/dmon-bg$BGN.txt 2>&1 < /dev/null &
  echo $! > /tmp/dmon.pid
  # not read from a tree that call 12 (14) replaces
  cp docs/validation/h200-per-model/bg$BGN.sh /tmp/bg$BGN.sh
  DEFAULT_S=1050; [ "$BGN" = 11 ] || DEFAULT_S=1100
  setsid bash -c "cd /tmp/ew && bash /tmp/bg$BGN.sh ${3:-$DEFAULT_S} ${4:-} \
    > /tmp/bg$BGN.log 2>&1; echo \$? > /tmp/bg$BGN.rc" < /dev/null > /dev/null 2>&1 &
  while [ ! -f /tmp/bg$BGN.rc ] && [ $SECONDS -lt $((LIMIT - 25)) ]; do sleep 2; done
  [ -f /tmp/bg$BGN.rc ] && kill "$(cat /tmp/dmon.pid)"  # a run that fitted in this one call
  cat /tmp/bg$BGN.log; bg_files
  exit 0
elif [ "$STEP" = 12 ] || [ "$STEP" = 14 ] || [ "$STEP" = 16 ]; then
  [ -f /tmp/bg$BGN.log ] || { echo "no /tmp/bg$BGN.log: not the machine of step $((STEP - 1))"; exit 3; }
  cp .devtmp/smollm2.part-b /tmp/smollm2.part-b.tmp && mv /tmp/smollm2.part-b.tmp /tmp/smollm2.part-b
  while [ ! -f /tmp/bg$BGN.rc ] && [ $SECONDS -lt $((LIMIT - 25)) ]; do sleep 2; done
  [ -f /tmp/bg$BGN.rc ] && kill "$(cat /tmp/dmon.pid)"
  cat /tmp/bg$BGN.log; bg_files
  exit 0
fi
if [ "$STEP" = 6 ] || [ "$STEP" = 8 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit --format=csv > $OUT/gpu-$STEP.txt 2>&1
  cat $OUT/gpu-$STEP.txt
  [ "$STEP" = 6 ] || python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a $OUT/gpu-$STEP.txt
  setsid nvidia-smi dmon -s pucm -d 1 -o T > /tmp/dmon-$BG.txt 2>&1 < /dev/null &
  echo $! > /tmp/dmon.pid
  RUN_S=${3:-1080}  # the three repeats' budget over both calls (--budget-s)
  setsid bash -c "cd /tmp/ew && timeout $((RUN_S + 70)) python3 benchmarks/gpu_modes.py \
    --out /tmp/gpm-$BG --label $BG --models /tmp/models --budget-s $RUN_S $HALF $PACK \
    --repeats 3 --modes $MODES > /tmp/$BG.log 2>&1; echo \$? > /tmp/$BG.rc" \
    < /dev/null > /dev/null 2>&1 &
  wait_busy
  exit 0
elif [ "$STEP" = 7 ] || [ "$STEP" = 9 ]; then
  [ -f /tmp/$BG.log ] || { echo "no /tmp/$BG.log: not the machine of step $((STEP - 1))"; exit 3; }
  wait_busy
  [ -f /tmp/$BG.rc ] && kill "$(cat /tmp/dmon.pid)"
  exit 0
fi
nvidia-smi dmon -s pucm -d 1 -o T > $OUT/dmon-$STEP.txt 2>&1 &
DMON=$!
if [ "$STEP" = 1 ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total,uuid,power.limit,enforced.power.limit --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    command -v transformers python3; nproc; } > $OUT/gpu.txt 2>&1
  cat $OUT/gpu.txt
  modes random-a $SYNTH $PACK --repeats 2
elif [ "$STEP" = 4 ]; then
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv > $OUT/gpu-4.txt 2>&1
  modes busy-a $BUSY $PACK --repeats 2 --modes per-cell,per-model
elif [ "$STEP" = 5 ]; then
  modes busy-b $BUSY $PACK --first-repeat 3 --repeats 1 --modes per-model,per-cell \
    --calibration /tmp/gpm-busy-a/calibration.json
  (cd /tmp/ew && python3 benchmarks/gpu_modes.py --out /tmp/gpm-busy-merged --label busy-1-3 \
    --merge /tmp/gpm-busy-a /tmp/gpm-busy-b) > $OUT/busy-merged.log 2>&1
  sed -n '/^cell \/ mode/,$p' $OUT/busy-merged.log | cut -c1-220
elif [ "$STEP" = 3 ]; then
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv > $OUT/gpu-3.txt 2>&1
  modes random-c $SYNTH $PACK --first-repeat 3 --repeats 1 \
    --modes per-model-nocool,per-model,per-cell --calibration $CAL
else
  gpu_free
  mkdir -p /tmp/smollm2
  cat /tmp/smollm2.part-a .devtmp/smollm2.part-b > /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  sha256sum /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  modes real --weights /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --tokens 64,128 \
    --max-connections 16,32 --limit 32 $PACK --repeats 1
  modes random-b $SYNTH $PACK --first-repeat 3 --repeats 1 \
    --modes per-cell,per-model,per-model-nocool --calibration /tmp/gpm-random-a/calibration.json
fi
kill $DMON
