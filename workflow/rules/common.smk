import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from simcon.config import check_config, check_unique_keys
from simcon.datasets import resolve_paths
from simcon.similarity import metric_names

check_unique_keys(workflow.configfiles)


def command_line_entries(key):
    """`key`'s entries in the last --configfile that defines it; None when none does."""
    given = [yaml.safe_load(Path(path).read_text()) or {} for path in workflow.overwrite_configfiles or []]
    defined = [c[key] for c in given if key in c]
    return defined[-1] if defined else None


# The models and datasets come whole from the last --configfile that lists them (e.g. config/paper.yaml, then
# config/paper-appendix-c.yaml), not added to the default config's; every other option is merged over the default.
for key in ("models", "datasets"):
    if (entries := command_line_entries(key)) is not None:
        config[key] = entries

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


THINGSVISION_MODELS = [m for m in MODELS if config["models"][m]["backend"] == "thingsvision"]
MAIN_ENV_MODELS = [m for m in MODELS if m not in THINGSVISION_MODELS]


def models_pattern(models):
    """A wildcard pattern matching exactly these model ids (nothing when there are none)."""
    return "|".join(map(re.escape, models)) or "(?!)"


def thingsvision_job(wildcards, input, output, threads):
    """The features job of a thingsvision model as the JSON argument of scripts/thingsvision_features.py."""
    return json.dumps(
        {
            "model_id": wildcards.model,
            "model": config["models"][wildcards.model],
            "dataset_id": wildcards.dataset,
            "dataset": config["datasets"][wildcards.dataset],
            "subset": input.subset,
            "output": output[0],
            "log": f"logs/features/{wildcards.dataset}/{wildcards.model}.log",
            "threads": threads,
            **{key: config[key] for key in ("image_size", "crop_pct", "batch_size", "device", "normalize")},
        }
    )
