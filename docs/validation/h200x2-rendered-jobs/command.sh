set -o pipefail
mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
mkdir -p /tmp/site/evalwatt-0.1.0.dist-info
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > /tmp/site/evalwatt-0.1.0.dist-info/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.tasks\n' > /tmp/site/evalwatt-0.1.0.dist-info/entry_points.txt
echo evalwatt > /tmp/site/evalwatt-0.1.0.dist-info/top_level.txt
printf '{"url": "file://%s", "dir_info": {"editable": true}}' "$PWD" > /tmp/site/evalwatt-0.1.0.dist-info/direct_url.json
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,driver_version,uuid --format=csv > $OUT/gpu.txt
U1=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i 1)
for mode in index uuid; do
  if [ $mode = index ]; then DEV=1; else DEV=$U1; fi
  CUDA_VISIBLE_DEVICES=$DEV timeout 270 python3 benchmarks/gpu_truth.py --out /tmp/two-$mode --tokens 64 --windows 0 --samples 64 --max-connections 32 --skip-sampler-cost --busy-gpu 0 > $OUT/two-$mode.log 2>&1
  echo "$mode rc=$?"
  python3 -c "
import json; r=json.load(open('/tmp/two-$mode/report.json'))
print('job GPUs', r['job_gpus'], 'busy', r['busy_gpu'])
for c in r['cells']: print(c['cell'][-16:], 'sampled', c['sampler_devices'], 'summed', c['devices_summed'], 'phase-vs-counter', round(c['phase_vs_counter_pct'],3), 'gen J', round(c['phase_resolved_j'],1))
print('failures', r['failures'])"
  (cd /tmp/two-$mode && tar czf $OUT/two-$mode.tgz --exclude='*.eval' report.json results/*/baselines results/*/cells results/*/*.jsonl)
done
