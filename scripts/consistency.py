"""Consistency of one metric's similarities across dataset pairs, for model sets by category."""

import pandas as pd

from simcon import plots
from simcon.consistency import consistency, model_sets, summarise
from simcon.io import atomic_path
from simcon.logs import job_log

with job_log(snakemake.log[0]):
    params = snakemake.params
    matrices = {d: pd.read_csv(p, index_col=0) for d, p in zip(params.datasets, snakemake.input)}
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    table = consistency(matrices, model_sets(metadata, params.anchors))
    table.insert(0, "metric", snakemake.wildcards.metric)
    headline = table[table["category"] == "all"]["rho"]
    print(f"All models: mean rho {headline.mean():.3f} (std {headline.std():.3f}) over {len(headline)} dataset pairs")
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(snakemake.output.summary) as tmp:
        summarise(table).to_csv(tmp, index=False)
    with atomic_path(snakemake.output.figure) as tmp:
        plots.consistency_by_category(table, snakemake.wildcards.metric).savefig(tmp, dpi=110, format="png")
