"""Per dataset: similarity of each model pair against the gap in their probe accuracy (paper Sec. 4.7, App. G)."""

import pandas as pd

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.performance import gap_correlation, similarity_vs_gap
from simcon.vocabulary import DATASET_CATEGORIES

with analysis_job(snakemake):
    params = snakemake.params
    performance = pd.read_csv(snakemake.input.performance)
    pairs, correlations = {}, {}
    for dataset, matrix in read_matrices(snakemake.input, snakemake.wildcards.metric, params.datasets).items():
        top1 = performance[performance["dataset"] == dataset].set_index("model")["top1"]
        pairs[dataset] = similarity_vs_gap(matrix, top1)
        correlations[dataset] = gap_correlation(pairs[dataset])
    table = pd.concat(pairs, names=["dataset"]).reset_index(level=0)
    summary = pd.DataFrame(
        {
            "dataset": list(correlations),
            "category": [params.categories[d] for d in correlations],
            "pearson_r": list(correlations.values()),
            "n_pairs": [len(pairs[d]) for d in correlations],
        }
    )
    write_csv(snakemake.output.pairs, table)
    write_csv(snakemake.output.correlations, summary)
    plots.save_png(plots.similarity_vs_gap(pairs, correlations, snakemake.wildcards.metric), snakemake.output.figure)
    figure = plots.gap_correlations_by_category(summary, snakemake.wildcards.metric, DATASET_CATEGORIES)
    plots.save_png(figure, snakemake.output.by_category)
