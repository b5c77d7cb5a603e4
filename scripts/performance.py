"""Linear-probe accuracy per (dataset, model), averaged over seeds, and the paper's App. B table of top-1."""

from simcon.io import read_json, write_csv
from simcon.logs import snakemake_job
from simcon.performance import performance_table, top1_by_model

with snakemake_job(snakemake.log[0]):
    table = performance_table(read_json(path) for path in snakemake.input)
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.top1, top1_by_model(table), index=True)
