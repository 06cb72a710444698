mkdir -p /tmp/site && tar xzf .devtmp/site.tgz -C /tmp/site || exit 1
# evalwatt from this tree, registered with Inspect as `pip install -e .` would do
mkdir -p /tmp/site/evalwatt-0.1.0.dist-info
printf 'Metadata-Version: 2.1\nName: evalwatt\nVersion: 0.1.0\n' > /tmp/site/evalwatt-0.1.0.dist-info/METADATA
printf '[inspect_ai]\nevalwatt = evalwatt.tasks\n' > /tmp/site/evalwatt-0.1.0.dist-info/entry_points.txt
echo evalwatt > /tmp/site/evalwatt-0.1.0.dist-info/top_level.txt
printf '{"url": "file://%s", "dir_info": {"editable": true}}' "$PWD" > /tmp/site/evalwatt-0.1.0.dist-info/direct_url.json
export PYTHONPATH=/tmp/site:$PWD/workflow PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
nvidia-smi --query-gpu=name,driver_version,memory.total,uuid --format=csv > $OUT/gpu.txt
python3 - <<'PY' > $OUT/nvml_calls.txt
import time, pynvml
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
calls = {
 "energy": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
 "power": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
 "util": lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
 "memory": lambda: pynvml.nvmlDeviceGetMemoryInfo(h),
 "temp": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
 "sm_clock": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
}
for name, f in calls.items():
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(200): f()
    print(f"{name}: cpu {1000*(time.process_time()-c0)/200:.3f} ms/call, wall {1000*(time.perf_counter()-w0)/200:.3f} ms/call")
PY
timeout 540 python3 benchmarks/gpu_truth.py --out /tmp/truth --tokens 16,64,192 --windows 75 --samples 64 --max-connections 32 --skip-sampler-cost 2>&1 | tail -120 | tee $OUT/truth.log
cd /tmp/truth && tar czf $OUT/truth-w75.tgz --exclude='*.eval' report.json sampler_cost.json results/*/baselines results/*/cells results/*/*.jsonl 2>/dev/null; ls -la $OUT
