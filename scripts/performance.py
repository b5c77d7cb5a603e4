"""Linear-probe accuracy per (dataset, model), averaged over seeds."""

from simcon.io import read_json, write_csv
from simcon.logs import job_log
from simcon.performance import performance_table

with job_log(snakemake.log[0]):
    write_csv(snakemake.output[0], performance_table(read_json(path) for path in snakemake.input))
