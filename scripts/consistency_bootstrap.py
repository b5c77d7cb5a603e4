"""Bootstrap confidence intervals of the median consistency of every set pair, resampling datasets."""

from simcon import plots
from simcon.consistency import read_consistency
from simcon.io import write_csv
from simcon.logs import analysis_job
from simcon.significance import bootstrap_medians

with analysis_job(snakemake):
    options = snakemake.params.options
    table = read_consistency(snakemake.input.consistency)
    intervals = bootstrap_medians(
        table, snakemake.params.datasets, options["resamples"], options["confidence"], options["seed"]
    )
    write_csv(snakemake.output.table, intervals)
    plots.save_png(plots.bootstrap_intervals(intervals, snakemake.wildcards.metric), snakemake.output.figure)
