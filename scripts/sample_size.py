"""App. C on one dataset: model-pair similarities on subsets of k samples per class (each k drawn alone, or nested),
and their change between consecutive k."""

import torch

from simcon import plots
from simcon.device import acquire_device
from simcon.formats import read_feature_rows, read_subset
from simcon.io import write_csv
from simcon.logs import analysis_job
from simcon.needs import write_skipped
from simcon.structure import sample_size_differences, similarity_by_sample_size, unmet_sample_sizes

with analysis_job(snakemake):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    subset = read_subset(snakemake.input.subset)
    labels = read_feature_rows(snakemake.input.labels, subset)
    unmet = unmet_sample_sizes(labels, params.samples_per_class, params.metrics)
    if unmet:
        write_skipped(snakemake.output, snakemake.rule, unmet)
    else:
        features = {
            model_id: read_feature_rows(getattr(snakemake.input, model_id), subset) for model_id in params.models
        }
        with acquire_device(params.device) as device:
            similarities, skipped = similarity_by_sample_size(
                features, labels, params.samples_per_class, params.metrics, params.seed, str(device), params.nested
            )
        note = (
            f"k = {skipped} left out: more than the smallest class has, or too few samples for a metric"
            if skipped
            else ""
        )
        print(note or "every configured k computed")
        differences = sample_size_differences(similarities)
        write_csv(snakemake.output.similarities, similarities)
        write_csv(snakemake.output.data, differences)
        figure = plots.sample_size_differences(differences, snakemake.wildcards.dataset, note)
        plots.save_png(figure, snakemake.output.figure)
