"""One job of a run worked out once (resolve), rendered (jinja2) and repeated; the run's jobs
(run): cells and baselines, or per-model jobs, and judge passes, packed from the plan and what
is done on disk (pack, packs)."""
