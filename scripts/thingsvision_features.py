"""Train (subset) and test features of one thingsvision model on one dataset, run by the thingsvision environment's
python: `python scripts/thingsvision_features.py JOB.json`, JOB holding the features rule's params, input and output."""

import json
import sys

import torch

from simcon.extract import model_dataset_features
from simcon.io import read_json, write_npz
from simcon.logs import job_log

job = json.loads(sys.argv[1])
with job_log(job["log"]):
    torch.set_num_threads(job["threads"])
    arrays = model_dataset_features(
        job["model_id"],
        job["model"],
        job["dataset_id"],
        job["dataset"],
        read_json(job["subset"]),
        image_size=job["image_size"],
        crop_pct=job["crop_pct"],
        batch_size=job["batch_size"],
        device=job["device"],
        normalize=job["normalize"],
    )
    write_npz(job["output"], **arrays)
