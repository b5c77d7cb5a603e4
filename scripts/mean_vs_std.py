"""Fig. 3 (left) and App. D: mean vs std of each model pair's similarity across datasets, raw and transformed."""

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.structure import mean_std

with analysis_job(snakemake):
    metric = snakemake.wildcards.metric
    table = mean_std(
        read_matrices(snakemake.input, snakemake.wildcards.metric, snakemake.params.datasets),
        ["identity", "arccos", "tan"],
    )
    write_csv(snakemake.output.data, table)
    plots.save_png(plots.mean_vs_std(table[table["transform"] == "identity"], metric), snakemake.output.figure)
    plots.save_png(plots.mean_vs_std(table[table["transform"] != "identity"], metric), snakemake.output.transformed)
