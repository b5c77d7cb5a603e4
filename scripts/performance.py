"""Linear-probe accuracy per (dataset, model), averaged over seeds."""

from simcon.io import atomic_path, read_json
from simcon.logs import job_log
from simcon.performance import performance_table

with job_log(snakemake.log[0]):
    table = performance_table(read_json(path) for path in snakemake.input)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False)
