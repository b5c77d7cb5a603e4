"""The layer features of one model on one dataset: every requested layer, for the similarity subset's train images."""

import torch

from simcon.extract import model_layer_features
from simcon.formats import read_subset
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    model_layer_features(
        snakemake.wildcards.model,
        params.model,
        snakemake.wildcards.dataset,
        params.dataset,
        read_subset(snakemake.input.subset),
        snakemake.output[0],
        image_size=params.image_size,
        crop_pct=params.crop_pct,
        batch_size=params.batch_size,
        device=params.device,
        normalize=params.normalize,
        precision=params.precision,
        workers=params.workers,
    )
