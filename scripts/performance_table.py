"""The performance table of the probed datasets from the given top-1 accuracies, and the paper's App. B table."""

from simcon.io import write_csv
from simcon.logs import snakemake_job
from simcon.performance import given_performance, top1_by_model
from simcon.tables import read_performance

with snakemake_job(snakemake.log[0]):
    params = snakemake.params
    top1 = read_performance(snakemake.input.table, models=params.models, datasets=params.datasets, **params.options)
    table = given_performance(top1)
    print(f"top-1 of {len(params.models)} models on {len(params.datasets)} datasets from {snakemake.input.table}")
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.top1, top1_by_model(table), index=True)
