"""Train (subset) and test features of one model on one dataset."""

import torch

from simcon.extract import model_dataset_features
from simcon.io import read_json, write_npz
from simcon.logs import job_log

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    arrays = model_dataset_features(
        snakemake.wildcards.model,
        params.model,
        snakemake.wildcards.dataset,
        params.dataset,
        read_json(snakemake.input.subset),
        image_size=params.image_size,
        crop_pct=params.crop_pct,
        batch_size=params.batch_size,
        device=params.device,
        normalize=params.normalize,
    )
    write_npz(snakemake.output[0], **arrays)
