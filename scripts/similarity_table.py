"""One (dataset, metric)'s model-by-model similarity matrix, from the similarity tables the config gives."""

from simcon.io import write_csv
from simcon.logs import snakemake_job
from simcon.tables import read_similarities, similarity_matrix

with snakemake_job(snakemake.log[0]):
    params, wildcards = snakemake.params, snakemake.wildcards
    rows = read_similarities(
        snakemake.input.tables,
        models=params.models,
        datasets=[wildcards.dataset],
        metrics=[wildcards.metric],
        **params.options,
    )
    pairs = rows[["model_a", "model_b", "similarity"]]
    print(f"{wildcards.dataset}/{wildcards.metric}: {len(pairs)} pairs from {list(snakemake.input.tables)}")
    write_csv(snakemake.output.matrix, similarity_matrix(pairs, params.models), index=True, index_label="model")
    write_csv(snakemake.output.pairs, pairs)
