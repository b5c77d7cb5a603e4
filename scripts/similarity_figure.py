"""Heatmaps of one metric's similarity matrices, one per dataset, with their mean and std."""

import pandas as pd

from simcon import plots
from simcon.io import atomic_path
from simcon.logs import job_log

with job_log(snakemake.log[0]):
    matrices = {d: pd.read_csv(p, index_col=0) for d, p in zip(snakemake.params.datasets, snakemake.input)}
    figure = plots.similarity_matrices(matrices, snakemake.wildcards.metric)
    with atomic_path(snakemake.output[0]) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
