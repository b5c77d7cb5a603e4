"""App. C on one dataset: model-pair similarities on nested subsets of k samples per class, and their change
between consecutive k."""

import numpy as np
import torch

from simcon import plots
from simcon.device import acquire_device
from simcon.io import write_csv
from simcon.logs import job_log
from simcon.structure import sample_size_differences, similarity_by_sample_size

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    features = {}
    for model_id in params.models:
        with np.load(snakemake.input[f"{snakemake.wildcards.dataset}/{model_id}"]) as arrays:
            features[model_id] = arrays["train"]
            labels = arrays["train_labels"]
    with acquire_device(params.device) as device:
        similarities, skipped = similarity_by_sample_size(
            features, labels, params.samples_per_class, params.metrics, params.seed, device=str(device)
        )
    note = f"k = {skipped} left out: more than the smallest class has, or too few samples for a metric" if skipped else ""
    print(note or "every configured k computed")
    differences = sample_size_differences(similarities)
    write_csv(snakemake.output.similarities, similarities)
    write_csv(snakemake.output.data, differences)
    figure = plots.sample_size_differences(differences, snakemake.wildcards.dataset, note)
    plots.save_png(figure, snakemake.output.figure)
