set -o pipefail
mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
mkdir -p /tmp/site/evalwatt-0.1.0.dist-info
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > /tmp/site/evalwatt-0.1.0.dist-info/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.tasks\n' > /tmp/site/evalwatt-0.1.0.dist-info/entry_points.txt
echo evalwatt > /tmp/site/evalwatt-0.1.0.dist-info/top_level.txt
printf '{"url": "file://%s", "dir_info": {"editable": true}}' "$PWD" > /tmp/site/evalwatt-0.1.0.dist-info/direct_url.json
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
W=${1:-45}
nvidia-smi --query-gpu=name,driver_version,memory.total,uuid --format=csv > $OUT/gpu.txt
if [ "$W" = 75 ]; then
  echo "== while a job evaluates: counter every 0.2 s" >> $OUT/sampler_cost.txt
  python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --counter-period-s 0.2 --json $OUT/sampler_cost_dense.json 2>&1 | tee -a $OUT/sampler_cost.txt
fi
if [ "$W" = 45 ]; then
  echo "== defaults (outside evaluation): counter every 2 s" > $OUT/sampler_cost.txt
  python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --json $OUT/sampler_cost.json 2>&1 | tee -a $OUT/sampler_cost.txt
  echo "== while a job evaluates: counter every 0.5 s" >> $OUT/sampler_cost.txt
  python3 benchmarks/sampler_cost.py --seconds 30 --interval 0.1 --counter-period-s 0.5 --json $OUT/sampler_cost_dense.json 2>&1 | tee -a $OUT/sampler_cost.txt
fi
timeout 450 python3 benchmarks/gpu_truth.py --out /tmp/truth --tokens 16,64,192 --windows $W --samples 64 --max-connections 32 --skip-sampler-cost 2>&1 | tail -150 | tee $OUT/truth.log
cd /tmp/truth && tar czf $OUT/truth-w$W.tgz --exclude='*.eval' report.json results/*/baselines results/*/cells results/*/*.jsonl 2>/dev/null; ls -la $OUT
