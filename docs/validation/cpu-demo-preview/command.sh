#!/usr/bin/env bash
# The CPU demo's preview against measured, held out: each run's preview comes from an earlier
# run's calibration. Run from a set-up clone (python3 workflow/scripts/bootstrap.py demo), on
# a quiet machine: the wall times are figures too.
#   bash docs/validation/cpu-demo-preview/command.sh OUT_DIR
# Runs a, b and c were made by this loop on 2026-12-05 (commit a2dc054); d by the same two
# commands by hand, after c.
set -uo pipefail
out=$(realpath "$1"); mkdir -p "$out"
.venv/bin/python docs/validation/cpu-demo-preview/make_configs.py . "$out"
for name in a b c d; do
  start=$(date +%s.%N)
  .venv/bin/snakemake --profile profiles/local --configfile "$out/$name.yaml" > "$out/$name.log" 2>&1
  echo "run $name rc=$? wall_s=$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$out/times.md"
  .venv/bin/evalwatt preview-check --configfile "$out/$name.yaml" \
    --write-calibration "$out/cal-$name.json" > "$out/check-$name.md" 2>&1
done
