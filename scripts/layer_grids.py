"""The layer x layer similarity grids of the configured model pairs on one dataset under one metric."""

from simcon import plots
from simcon.formats import read_layer_table
from simcon.io import write_csv
from simcon.layers import grid_table
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    dataset, metric = snakemake.wildcards.dataset, snakemake.wildcards.metric
    cells = grid_table({dataset: read_layer_table(snakemake.input[0])}, snakemake.params.pairs)
    write_csv(snakemake.output.data, cells)
    plots.save_png(plots.layer_grids(cells, f"{dataset}, {metric}"), snakemake.output.figure)
