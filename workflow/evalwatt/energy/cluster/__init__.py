"""The cluster's accounting of a job: CEEMS API, Prometheus series, sacct."""
