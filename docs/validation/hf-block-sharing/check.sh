#!/bin/bash
# The hf server's block sharing, on the CPU (2-core dev VM), with the real library: the same
# ~1,100-token prompt sent twice to the library's own `transformers serve` and to evalwatt's
# (`python -m evalwatt.runtime.hf_serve serve ...`), for transformers 5.19 (.venv-vllm) and
# 5.17 (the H200 machine's version; `pip install --no-deps --target $TF517 transformers==5.17.0
# "huggingface-hub>=1.5,<2"`, ahead of .venv-vllm's on PYTHONPATH). The library's batching log
# is set to DEBUG by a sitecustomize (it says "Found ... prefix match" when a request reuses
# cached blocks). Run from the repository: bash docs/validation/hf-block-sharing/check.sh
# (needs .venv-vllm, and TF517 for the 5.17 rows; writes under $WORK, default /tmp/hfbs).
set -u
REPO=$PWD PY=$PWD/.venv-vllm/bin/python WORK=${WORK:-/tmp/hfbs} TF517=${TF517:-/tmp/tf517}
HERE=$REPO/docs/validation/hf-block-sharing
mkdir -p $WORK/site
echo 'import logging; logging.getLogger("ContinuousBatchingLogger").setLevel("DEBUG")' > $WORK/site/sitecustomize.py
[ -d $WORK/tiny ] || PYTHONPATH=$REPO/workflow $PY -m evalwatt.runtime.random_weights --shape tiny --out $WORK/tiny > /dev/null 2>&1
one() {  # version label, extra path, server kind (library|evalwatt), port
  local label=$1 extra=$2 kind=$3 port=$4 log=$WORK/$1-$3.log
  local argv=(-c 'import sys; sys.argv[0] = "transformers"; from transformers.cli.transformers import main; main()')
  [ $kind = evalwatt ] && argv=(-m evalwatt.runtime.hf_serve)
  PYTHONPATH=$WORK/site:$REPO/workflow$extra HF_HUB_DISABLE_UPDATE_CHECK=1 HF_HUB_OFFLINE=1 \
    setsid $PY "${argv[@]}" serve $WORK/tiny --continuous-batching --host 127.0.0.1 --port $port \
    --device cpu --cb-num-blocks 64 --cb-block-size 32 --cb-max-batch-tokens 256 > $log 2>&1 &
  local pid=$!
  for _ in $(seq 120); do curl -s 127.0.0.1:$port/health > /dev/null && break; sleep 0.5; done
  echo "== transformers $label, $kind server"
  $PY $HERE/probe.py http://127.0.0.1:$port $WORK/tiny
  kill $pid; wait $pid
  grep -h "hf_serve:" $log
  echo "prefix matches in its log: $(grep -c 'prefix match' $log)"
  grep -h "prefix match" $log | sed 's/ for request .*//; s/^.* - DEBUG - /  /'
}
one 5.19 "" library 18451
one 5.19 "" evalwatt 18452
one 5.17 ":$TF517" library 18453
one 5.17 ":$TF517" evalwatt 18454
