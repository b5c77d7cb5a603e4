import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from snakemake.utils import validate

from simcon.config import check_config, check_unique_keys
from simcon.similarity import metric_names
from simcon.zoo import zoo_members, zoo_models

check_unique_keys(workflow.configfiles)
validate(config, "../schemas/config.schema.yaml", set_default=True)
check_config(config, metric_names())

ZOO = config.get("zoo")
ZOO_CHECKPOINT = "results/zoo/{model}.pt"
ZOO_MEMBERS = zoo_members(ZOO) if ZOO else {}
if ZOO:
    config["models"].update(zoo_models(ZOO, config["models"], config["datasets"], ZOO_CHECKPOINT))

MODELS = list(config["models"])
DATASETS = list(config["datasets"])
METRICS = list(config["metrics"])
SEEDS = list(config["probe"]["seeds"])


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),
    model="|".join(map(re.escape, MODELS)),
    metric="|".join(map(re.escape, METRICS)),
    seed=r"\d+",
    zoo_model="|".join(map(re.escape, ZOO_MEMBERS)) or "(?!)",


def dataset_features(wildcards):
    """The train/test feature files of every model on one dataset."""
    return expand("results/features/{dataset}/{model}.npz", dataset=wildcards.dataset, model=MODELS)


def metric_matrices(wildcards):
    """The similarity matrix of every dataset for one metric."""
    return expand("results/similarity/{dataset}/{metric}.csv", dataset=DATASETS, metric=wildcards.metric)


def model_metadata():
    """Metadata of every model, keyed by model id."""
    return {model: config["models"][model]["metadata"] for model in MODELS}


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
    ]


def model_checkpoint(wildcards):
    """The checkpoint the workflow trains for a zoo model; nothing for any other model."""
    return [ZOO_CHECKPOINT.format(model=wildcards.model)] if wildcards.model in ZOO_MEMBERS else []


def zoo_outputs():
    """The zoo's summary tables, if the config has a zoo."""
    return ["results/zoo/summary.csv", "results/zoo/objective_similarity.csv"] if ZOO else []
