"""The held-out preview check's configs: config/config.yaml with `run`, `execution` and
`planner.calibration` changed. A per-cell (no calibration); B per-model, calibrated on A;
C per-cell, calibrated on B; D per-model, calibrated on B (same mode, held out).

    python make_configs.py REPO OUT
"""

import sys
from pathlib import Path

import yaml

repo, out = Path(sys.argv[1]), Path(sys.argv[2])
base = yaml.safe_load((repo / "config/config.yaml").read_text())
runs = [
    ("a", "per-cell", None),
    ("b", "per-model", "cal-a.json"),
    ("c", "per-cell", "cal-b.json"),
    ("d", "per-model", "cal-b.json"),
]
for name, mode, calibration in runs:
    config = yaml.safe_load(yaml.safe_dump(base))
    config["run"] = f"hold-{name}"
    config["execution"] = mode
    if calibration:
        config.setdefault("planner", {})["calibration"] = str(out / calibration)
    (out / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
