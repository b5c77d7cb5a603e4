"""Train (subset) and test features of one model on one dataset."""

import numpy as np
import torch

from simcon.datasets import SPLITS, DatasetError, load_split
from simcon.device import acquire_device
from simcon.extract import extract_features
from simcon.io import read_json, write_npz
from simcon.logs import job_log
from simcon.models import build_model

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    model_id, dataset_id = snakemake.wildcards.model, snakemake.wildcards.dataset
    params = snakemake.params
    subset = read_json(snakemake.input.subset)
    model = build_model(model_id, params.model)
    with acquire_device(params.device) as device:
        print(f"{model_id} on {dataset_id}: device {device}")
        arrays = {}
        for split in SPLITS:
            data = load_split(dataset_id, params.dataset, split)
            if split == "train" and len(data) != subset["n_train"]:
                raise DatasetError(
                    f"dataset '{dataset_id}' has {len(data)} train images but its subset was made for "
                    f"{subset['n_train']}; delete {snakemake.input.subset} to remake it"
                )
            indices = np.asarray(subset["indices"]) if split == "train" else np.arange(len(data))
            arrays[split] = extract_features(
                model,
                data,
                indices,
                image_size=params.image_size,
                crop_pct=params.crop_pct,
                batch_size=params.batch_size,
                device=device,
                normalize=params.normalize,
                name=f"{model_id} on {dataset_id} ({split})",
            )
            arrays[f"{split}_labels"] = data.labels[indices]
    write_npz(snakemake.output[0], **arrays)
