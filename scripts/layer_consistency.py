"""Consistency across datasets of one metric's similarities at each relative depth, per model set (the paper's
Fig. 6 for depth bins)."""

import pandas as pd

from simcon import plots
from simcon.consistency import model_sets
from simcon.formats import read_layer_table
from simcon.io import write_csv
from simcon.layers import consistency_by_depth, depth_bins, summarise_by_depth
from simcon.logs import analysis_job

with analysis_job(snakemake):
    params = snakemake.params
    tables = {dataset: read_layer_table(getattr(snakemake.input, dataset)) for dataset in params.datasets}
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    table, chosen = consistency_by_depth(tables, model_sets(metadata), depth_bins(params.depth_bins))
    table.insert(0, "metric", snakemake.wildcards.metric)
    summary = summarise_by_depth(table)
    within_objective = (summary["category"] == "objective") & (summary["set_a"] == summary["set_b"])
    plotted = summary[within_objective | (summary["category"] == "all")]
    print(plotted[["centre", "set_a", "median", "q25", "q75"]].to_string(index=False))
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.layers, chosen)
    write_csv(snakemake.output.figure_data, plotted)
    plots.save_png(plots.consistency_by_depth(plotted, snakemake.wildcards.metric), snakemake.output.figure)
