"""App. C as in the paper: model-pair similarities on datasets that are subsets with k samples per class
(e.g. ImageNet-1k with k = 1 ... 40), and their change between consecutive k."""

import pandas as pd

from simcon import plots
from simcon.formats import to_long
from simcon.io import write_csv
from simcon.logs import analysis_job
from simcon.structure import sample_size_differences

with analysis_job(snakemake):
    params = snakemake.params
    similarities = pd.concat(
        [
            to_long(pd.read_csv(snakemake.input[f"k{k}/{metric}"], index_col=0)).assign(
                metric=metric, samples_per_class=k
            )
            for k in params.samples_per_class
            for metric in params.metrics
        ],
        ignore_index=True,
    )
    differences = sample_size_differences(similarities)
    write_csv(snakemake.output.data, differences)
    plots.save_png(plots.sample_size_differences(differences, "per-k datasets"), snakemake.output.figure)
