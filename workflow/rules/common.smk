import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from simcon.config import check_config, check_unique_keys
from simcon.datasets import resolve_paths
from simcon.similarity import metric_names

check_unique_keys(workflow.configfiles)
validate(config, "../schemas/config.schema.yaml", set_default=True)
config["datasets"] = {d: resolve_paths(spec, config["data_root"]) for d, spec in config["datasets"].items()}
check_config(config, metric_names())

MODELS = list(config["models"])
DATASETS = list(config["datasets"])
METRICS = list(config["metrics"])
SEEDS = list(config["probe"]["seeds"])


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),
    model="|".join(map(re.escape, MODELS)),
    metric="|".join(map(re.escape, METRICS)),
    seed=r"\d+",


def dataset_features(wildcards):
    """The train/test feature files of every model on one dataset."""
    return expand("results/features/{dataset}/{model}.npz", dataset=wildcards.dataset, model=MODELS)


def metric_matrices(wildcards):
    """The similarity matrix of every dataset for one metric."""
    return expand("results/similarity/{dataset}/{metric}.csv", dataset=DATASETS, metric=wildcards.metric)


def model_metadata():
    """Metadata of every model, keyed by model id."""
    return {model: config["models"][model]["metadata"] for model in MODELS}


def dataset_categories():
    """The category of every dataset (paper Table 3), keyed by dataset id."""
    return {dataset: config["datasets"][dataset]["category"] for dataset in DATASETS}


def final_outputs():
    """Every table and figure of the default target."""
    return [
        "results/config.yaml",
        "results/performance.csv",
        *expand("results/similarity/{dataset}/{metric}.csv", dataset=DATASETS, metric=METRICS),
        *expand("results/consistency/{metric}/consistency.csv", metric=METRICS),
        *expand("results/figures/{metric}/similarity_matrices.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_by_category.png", metric=METRICS),
        *expand("results/figures/{metric}/similarity_vs_gap.png", metric=METRICS),
        *expand("results/figures/{metric}/gap_correlations_by_category.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_anchors.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_matrices.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_bootstrap.png", metric=METRICS),
        *expand("results/figures/{metric}/permutation_test.png", metric=METRICS),
        "results/figures/consistency_metrics.png",
    ]
