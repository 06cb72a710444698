mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=name,driver_version,uuid --format=csv | tee $OUT/gpu.txt
nproc | tee -a $OUT/gpu.txt
echo "== defaults: power every round, counter every 2 s (and at marks; none here)" | tee $OUT/sampler_cost.txt
python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --interval 0.02 --json $OUT/default.json 2>&1 | tee -a $OUT/sampler_cost.txt
echo "== profile, 20 s at 10 Hz" | tee $OUT/profile.txt
mkdir -p /tmp/prof && (sleep 600 & echo $! > /tmp/prof/pid)
timeout -s INT 20 python3 -m cProfile -s tottime -m evalwatt.sampling --out-dir /tmp/prof --pid $(cat /tmp/prof/pid) --interval-s 0.1 2>&1 | head -45 | tee -a $OUT/profile.txt
