"""The similarity of every pair of (model, layer) representations of one dataset under one metric, as a long
table, on the subset's train images."""

import torch

from simcon.device import acquire_device
from simcon.formats import file_sha256, read_layer_folder, read_subset
from simcon.io import write_csv
from simcon.layers import layer_similarity
from simcon.logs import snakemake_job
from simcon.metrics import require_samples

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    rows = len(read_subset(snakemake.input.subset).indices)
    where = f"the similarity subset of dataset '{snakemake.wildcards.dataset}' ({snakemake.input.subset})"
    require_samples(snakemake.wildcards.metric, rows, where)
    representations = [r for model in params.models for r in read_layer_folder(getattr(snakemake.input, model), rows)]
    with acquire_device(params.device) as device:
        table, computed = layer_similarity(
            representations,
            snakemake.wildcards.metric,
            device=str(device),
            cache_dir=params.cache,
            context_key=file_sha256(snakemake.input.subset),
            progress=True,
        )
    print(
        f"{snakemake.wildcards.dataset}/{snakemake.wildcards.metric}: {len(representations)} representations, "
        f"computed {computed} pairs"
    )
    write_csv(snakemake.output[0], table)
