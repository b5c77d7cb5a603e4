"""This run's consistency of every set pair on every dataset pair beside the published values."""

import pandas as pd

from simcon.consistency import read_consistency
from simcon.io import write_csv
from simcon.logs import snakemake_job
from simcon.report import write_table_html
from simcon.tables import compare_consistency, comparison_summary, read_consistency_tables

with snakemake_job(snakemake.log[0]):
    params = snakemake.params
    ours = pd.concat([read_consistency(snakemake.input[metric]) for metric in params.metrics], ignore_index=True)
    published = read_consistency_tables(
        snakemake.input.published, metrics=params.metrics, datasets=params.datasets, **params.options
    )
    table = compare_consistency(ours, published)
    summary = comparison_summary(table)
    print(summary.to_string(index=False))
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.summary, summary)
    write_table_html(snakemake.output.summary_html, summary, "Consistency: this run vs the published values")
