"""Stratified subset of a dataset's train split, shared by every model."""

from simcon.datasets import load_split, stratified_subset
from simcon.formats import write_subset
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    dataset_id, spec = snakemake.wildcards.dataset, snakemake.params.dataset
    train = load_split(dataset_id, spec, "train")
    indices = stratified_subset(train.labels, spec["max_samples"], snakemake.params.seed)
    print(f"{dataset_id}: {len(indices)} of {len(train)} train images, {len(train.class_names)} classes")
    write_subset(snakemake.output[0], dataset_id, len(train), train.class_names, indices)
