"""The feature files of one model on one dataset: every train and test image, extracted once."""

import torch

from simcon.extract import model_dataset_features
from simcon.formats import FEATURE_FILES
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    model_dataset_features(
        snakemake.wildcards.model,
        params.model,
        snakemake.wildcards.dataset,
        params.dataset,
        {name: getattr(snakemake.output, name) for name in FEATURE_FILES},
        image_size=params.image_size,
        crop_pct=params.crop_pct,
        batch_size=params.batch_size,
        device=params.device,
        normalize=params.normalize,
        precision=params.precision,
        workers=params.workers,
    )
