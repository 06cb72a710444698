"""The planned matrix: GPUs per model, cells, baselines, judges, and the cost estimate."""
