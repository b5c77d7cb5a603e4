"""Consistency of one metric's similarities across dataset pairs, for model sets by category (paper Fig. 6)."""

import pandas as pd

from simcon import plots
from simcon.consistency import consistency, model_sets, summarise
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job

with analysis_job(snakemake):
    params = snakemake.params
    matrices = read_matrices(snakemake.input, snakemake.wildcards.metric, params.datasets)
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    table = consistency(matrices, model_sets(metadata, params.anchors))
    table.insert(0, "metric", snakemake.wildcards.metric)
    headline = table[table["category"] == "all"]["rho"]
    print(f"All models: mean rho {headline.mean():.3f} (std {headline.std():.3f}) over {len(headline)} dataset pairs")
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.summary, summarise(table))
    plotted = table[table["category"].isin(["all", *plots.CATEGORY_TITLES])]
    write_csv(snakemake.output.figure_data, plotted)
    plots.save_png(plots.consistency_by_category(plotted, snakemake.wildcards.metric), snakemake.output.figure)
