mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=name,driver_version,uuid --format=csv | tee $OUT/gpu.txt
echo "== counter every round" | tee $OUT/sampler_cost.txt
python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --interval 0.02 --json $OUT/every_round.json 2>&1 | tee -a $OUT/sampler_cost.txt
echo "== counter once a second, power every round" | tee -a $OUT/sampler_cost.txt
python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --interval 0.02 --counter-period-s 1 --json $OUT/counter_1s.json 2>&1 | tee -a $OUT/sampler_cost.txt
