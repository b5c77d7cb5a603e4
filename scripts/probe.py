"""A linear probe of one model's features on one dataset with one seed: trained on the full train split, tested
on the test split."""

import torch

from simcon.device import acquire_device
from simcon.formats import read_features
from simcon.io import write_json
from simcon.logs import snakemake_job
from simcon.probe import ProbeSettings, train_probe

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    model_id, dataset_id, seed = snakemake.wildcards.model, snakemake.wildcards.dataset, int(snakemake.wildcards.seed)
    settings = {
        key: tuple(value) if isinstance(value, list) else value for key, value in snakemake.params.settings.items()
    }
    arrays = {name: read_features(path) for name, path in snakemake.input.items()}
    with acquire_device(snakemake.params.device) as device:
        result = train_probe(
            arrays["train"],
            arrays["train_labels"],
            arrays["test"],
            arrays["test_labels"],
            seed=seed,
            settings=ProbeSettings(**settings),
            device=str(device),
            name=f"{model_id} on {dataset_id}",
            progress=True,
            memory_budget=snakemake.params.memory_budget,
        )
    print(
        f"{model_id} on {dataset_id}, seed {seed}: top-1 {result['top1']:.4f} (trained on {result['n_train']} images)"
    )
    write_json(snakemake.output[0], {"model": model_id, "dataset": dataset_id, **result})
