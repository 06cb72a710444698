#!/usr/bin/env bash
# Run by Snakemake after it creates this conda environment: install evalwatt itself (the
# job runtime, the sampler, the offline tasks) from this checkout, without touching the pins.
set -euo pipefail
pip install --no-deps --editable "$(dirname "${BASH_SOURCE[0]}")/.."
