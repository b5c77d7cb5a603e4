"""Per dataset: similarity of each model pair against the gap in their probe accuracy (paper Sec. 4.7)."""

import pandas as pd

from simcon import plots
from simcon.io import atomic_path
from simcon.logs import job_log
from simcon.performance import gap_correlation, similarity_vs_gap

with job_log(snakemake.log[0]):
    params = snakemake.params
    performance = pd.read_csv(snakemake.input.performance)
    pairs, correlations = {}, {}
    for dataset, path in zip(params.datasets, snakemake.input.matrices):
        top1 = performance[performance["dataset"] == dataset].set_index("model")["top1"]
        pairs[dataset] = similarity_vs_gap(pd.read_csv(path, index_col=0), top1)
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
    with atomic_path(snakemake.output.pairs) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(snakemake.output.correlations) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(snakemake.output.figure) as tmp:
        plots.similarity_vs_gap(pairs, correlations, snakemake.wildcards.metric).savefig(tmp, dpi=110, format="png")
