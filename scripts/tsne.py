"""Fig. 4: t-SNE of the models from each dataset's similarity matrix, coloured by model category."""

import pandas as pd

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.structure import tsne_embedding

with analysis_job(snakemake):
    params = snakemake.params
    matrices = read_matrices(snakemake.input, snakemake.wildcards.metric, params.datasets)
    embedding = tsne_embedding({dataset: matrices[dataset] for dataset in params.shown})
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    write_csv(snakemake.output.data, embedding)
    plots.save_png(plots.tsne_grid(embedding, metadata, snakemake.wildcards.metric), snakemake.output.figure)
