"""Stratified subset of a dataset's train split, shared by every model."""

from simcon.datasets import load_split, stratified_subset
from simcon.io import write_json
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    dataset_id, spec = snakemake.wildcards.dataset, snakemake.params.dataset
    train = load_split(dataset_id, spec, "train")
    indices = stratified_subset(train.labels, spec["max_samples"], snakemake.params.seed)
    print(f"{dataset_id}: {len(indices)} of {len(train)} train images, {len(train.class_names)} classes")
    write_json(
        snakemake.output[0],
        {
            "dataset": dataset_id,
            "n_train": len(train),
            "classes": train.class_names,
            "indices": indices.tolist(),
        },
    )
