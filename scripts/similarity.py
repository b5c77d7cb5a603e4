"""The model-by-model similarity matrix of one dataset under one metric, on the subset's train images."""

import torch

from simcon.device import acquire_device
from simcon.formats import file_sha256, read_feature_rows, read_subset, to_long
from simcon.io import write_csv
from simcon.logs import snakemake_job
from simcon.metrics import require_samples
from simcon.similarity import compute_similarity

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    subset = read_subset(snakemake.input.subset)
    where = f"the similarity subset of dataset '{snakemake.wildcards.dataset}' ({snakemake.input.subset})"
    require_samples(snakemake.wildcards.metric, len(subset.indices), where)
    features = {model_id: read_feature_rows(getattr(snakemake.input, model_id), subset) for model_id in params.models}
    with acquire_device(params.device) as device:
        result = compute_similarity(
            features,
            snakemake.wildcards.metric,
            device=str(device),
            cache_dir=params.cache,
            context_key=file_sha256(snakemake.input.subset),
            progress=True,
        )
    print(f"{snakemake.wildcards.dataset}/{snakemake.wildcards.metric}: computed {result.computed_pairs} pairs")
    write_csv(snakemake.output.matrix, result.matrix, index=True, index_label="model")
    write_csv(snakemake.output.pairs, to_long(result.matrix))
