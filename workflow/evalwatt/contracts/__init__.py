"""The files that cross a process or stage boundary, one typed and versioned model each.

    renderer  --spec.json-->           job runtime         (spec.JobSpec)
    runtime   --timeline.json-->       anyone watching     (timeline.TimelineFile)
    sampler   --sampler.json-->        runtime             (sampler.SamplerStatus, in JobResult)
    runtime   --result.json-->         energy step, audit  (result.JobResult)
    energy    --energy/<cell>.json-->  final table, audit  (record.CellRecord)
    final     --energy_table.parquet-> readers             (row.TableRow: the Arrow schema)

Read with ``base.read_contract(Model, path)``, write with ``base.write_contract(path, model)``:
nothing else parses these files. docs/architecture.md lists their fields
(``python -m evalwatt.contracts``). This package imports nothing eagerly, so that the sampler,
which only needs the vocabulary, starts without loading pydantic.
"""
