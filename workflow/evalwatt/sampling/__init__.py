"""In-job energy sampling: probes (NVML, RAPL, a CPU-time model) and the sampler process."""
