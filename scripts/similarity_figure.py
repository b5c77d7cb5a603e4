"""Heatmaps of one metric's similarity matrices, one per dataset, with their mean and std."""

from simcon import plots
from simcon.io import read_matrices
from simcon.logs import job_log

with job_log(snakemake.log[0]):
    matrices = read_matrices(snakemake.params.datasets, snakemake.input)
    plots.save_png(plots.similarity_matrices(matrices, snakemake.wildcards.metric), snakemake.output[0])
