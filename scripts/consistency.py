"""Consistency of one metric's similarities across dataset pairs, for model sets by category (paper Fig. 6)."""

import pandas as pd

from simcon import plots
from simcon.api import consistency_analysis
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job

with analysis_job(snakemake):
    params, metric = snakemake.params, snakemake.wildcards.metric
    matrices = read_matrices(snakemake.input, metric, params.datasets)
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    analysis = consistency_analysis(matrices, metadata, metric=metric, anchors=params.anchors)
    headline = analysis.table[analysis.table["category"] == "all"]["rho"]
    print(f"All models: mean rho {headline.mean():.3f} (std {headline.std():.3f}) over {len(headline)} dataset pairs")
    write_csv(snakemake.output.table, analysis.table)
    write_csv(snakemake.output.summary, analysis.summary)
    write_csv(snakemake.output.figure_data, analysis.plotted)
    plots.save_png(plots.consistency_by_category(analysis.plotted, metric), snakemake.output.figure)
