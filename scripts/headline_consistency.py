"""Sec. 4.4's headline: mean and std of rho over all dataset pairs, all models, per metric."""

from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.report import write_table_html
from simcon.structure import headline

with analysis_job(snakemake):
    params = snakemake.params
    by_metric = {metric: read_matrices(snakemake.input, metric, params.datasets) for metric in params.metrics}
    table = headline(by_metric)
    print(table.to_string(index=False))
    write_csv(snakemake.output.table, table)
    write_table_html(snakemake.output.table_html, table, "Consistency over all dataset pairs, all models (Sec. 4.4)")
