"""Fig. 2: heatmaps of one metric's similarity matrices, one per dataset, with their mean and std."""

import pandas as pd

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    matrices = read_matrices(snakemake.input, snakemake.wildcards.metric, snakemake.params.datasets)
    metadata = pd.DataFrame.from_dict(snakemake.params.metadata, orient="index")
    figure, data = plots.similarity_matrices(matrices, snakemake.wildcards.metric, metadata)
    write_csv(snakemake.output.data, data)
    plots.save_png(figure, snakemake.output.figure)
