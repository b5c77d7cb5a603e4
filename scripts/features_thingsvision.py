"""The feature files of one thingsvision model on one dataset, run by the thingsvision environment's python:
`python scripts/features_thingsvision.py JOB.json`, JOB holding the features rule's params and outputs."""

import json
import sys

import torch

from simcon.extract import model_dataset_features
from simcon.logs import snakemake_job

job = json.loads(sys.argv[1])
with snakemake_job(job["log"]):
    torch.set_num_threads(job["threads"])
    model_dataset_features(
        job["model_id"],
        job["model"],
        job["dataset_id"],
        job["dataset"],
        job["outputs"],
        image_size=job["image_size"],
        crop_pct=job["crop_pct"],
        batch_size=job["batch_size"],
        device=job["device"],
        normalize=job["normalize"],
        precision=job["precision"],
        workers=job["workers"],
    )
