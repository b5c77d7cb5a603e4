"""Consistency under every other metric against the first metric, per set pair and dataset pair (paper App. E)."""

from simcon import plots
from simcon.consistency import metric_agreement, read_consistency
from simcon.io import write_csv
from simcon.logs import analysis_job

with analysis_job(snakemake):
    metrics = snakemake.params.metrics
    tables = {metric: read_consistency(snakemake.input[metric]) for metric in metrics}
    joined = metric_agreement(tables, metrics[0])
    write_csv(snakemake.output.table, joined)
    plots.save_png(plots.metric_agreement(joined, metrics[0], metrics[1:]), snakemake.output.figure)
