# The fix's cost on one machine: the four cells of `three` in one model job with PyTorch's
# default attention kernels (cuDNN allowed: gpu_modes.py --hf-cudnn-attention, the config's
# hf.cudnn_attention: true), on the H100 that had just run `command.sh 15 585 1400 three` and
# `command.sh 16 ...` (its /tmp/site, /tmp/ew and /tmp/models), as the next device call:
# 2026-12-05, eighth session, 113 s. Output: cudnn-on.log, gpm-cudnn-on.tgz.
export PYTHONPATH=/tmp/site:/tmp/ew/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0 EVALWATT_HF_BATCHING_LOG=DEBUG
cd /tmp/ew && timeout 245 python3 benchmarks/gpu_modes.py --out /tmp/gpm-cudnn-on --label cudnn-on \
  --models /tmp/models --budget-s 225 --shape llama-8b --tokens 32,64 --max-connections 32,64 \
  --samples 64 --prompt-words 250 --reference-idle-s 5 --cooldown-max-s 20 --cooldown-margin-w 10 \
  --repeats 1 --modes per-model --hf-cudnn-attention > $OUT/cudnn-on.log 2>&1
echo rc=$?
for p in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill $p; done
tar czf $OUT/gpm-cudnn-on.tgz -C / --exclude='model-*' --exclude=bin tmp/gpm-cudnn-on
sed -n '/^cell \/ mode/,$p' $OUT/cudnn-on.log | cut -c1-220
