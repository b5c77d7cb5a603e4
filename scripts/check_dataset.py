"""Check that both splits of a dataset can be read and each has images of at least two classes."""

from simcon.datasets import check_dataset
from simcon.io import write_json
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    dataset_id = snakemake.wildcards.dataset
    found = check_dataset(dataset_id, snakemake.params.dataset)
    print(f"{dataset_id}: {found['n_train']} train and {found['n_test']} test images, {found['classes']} classes")
    write_json(snakemake.output[0], {"dataset": dataset_id, **found})
