"""The job runtime: server, Inspect steps, timeline, padding."""
