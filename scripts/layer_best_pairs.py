"""The best-matching layer pair of every model pair on every dataset under one metric, and where they lie in
relative depth by objective pair."""

import pandas as pd

from simcon import plots
from simcon.formats import read_layer_table
from simcon.io import write_csv
from simcon.layers import best_layer_pairs
from simcon.logs import analysis_job

with analysis_job(snakemake):
    params = snakemake.params
    objectives = {model: metadata["objective"] for model, metadata in params.metadata.items()}
    table = pd.concat(
        [
            best_layer_pairs(read_layer_table(getattr(snakemake.input, dataset))).assign(dataset=dataset)
            for dataset in params.datasets
        ],
        ignore_index=True,
    )
    table.insert(2, "objective_a", table["model_a"].map(objectives))
    table.insert(3, "objective_b", table["model_b"].map(objectives))
    table = table[["dataset", *table.columns.drop("dataset")]]
    at_representation = ((table["depth_a"] == 1.0) & (table["depth_b"] == 1.0)).mean()
    gain = (table["similarity"] - table["representation_similarity"]).median()
    print(
        f"{len(table)} model pairs x datasets: {at_representation:.0%} best at the representation layers, "
        f"median gain over them {gain:.3f}"
    )
    write_csv(snakemake.output.table, table)
    plots.save_png(plots.best_layer_depths(table, snakemake.wildcards.metric), snakemake.output.figure)
