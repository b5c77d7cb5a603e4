"""Sec. 4.4's headline: mean and std of rho over all dataset pairs, all models, per metric."""

from simcon.io import read_matrices, write_csv
from simcon.logs import job_log
from simcon.report import write_table_html
from simcon.structure import headline

with job_log(snakemake.log[0]):
    params = snakemake.params
    datasets = list(params.datasets)
    paths = list(snakemake.input)  # metric-major: every dataset of the first metric, then the next metric
    table = headline(
        {
            metric: read_matrices(datasets, paths[i * len(datasets) : (i + 1) * len(datasets)])
            for i, metric in enumerate(params.metrics)
        }
    )
    print(table.to_string(index=False))
    write_csv(snakemake.output.table, table)
    write_table_html(snakemake.output.table_html, table, "Consistency over all dataset pairs, all models (Sec. 4.4)")
