import json
import os
import re
import sys
from pathlib import Path

# Parsing imports only torch-free modules: the workflow parses in seconds (also once per job under SLURM).
# The checks that need a backend library run as the check jobs of checks.smk.
from simcon.config import ZOO_CHECKPOINT, layer_grid_pairs, probe_datasets, resolve_config, zoo_members
from simcon.formats import (
    RUN_COMMAND,
    ResultError,
    feature_files,
    feature_record,
    read_layer_index,
    read_subset,
    run_command,
)
from simcon.metrics import reference_metric
from simcon.needs import skipped_analyses

# A job that finds a damaged result file names the command that regenerates it: this run's command with --forcerun
# (simcon.formats.regenerate_command). Jobs inherit the variable, SLURM jobs too (sbatch --export=ALL).
if workflow.is_main_process:
    os.environ[RUN_COMMAND] = run_command(sys.argv)

# The models and datasets come whole from the last --configfile that lists them (e.g. config/paper.yaml, then
# config/paper-appendix-c.yaml), not added to the default config's, and the anchors with the models; every other
# option is merged over the default.
resolve_config(
    config,
    REPO / "workflow/schemas/config.schema.yaml",
    workflow.configfiles,
    workflow.overwrite_configfiles or [],
    workflow.config_settings.config,
)

# With `similarities`, the analyses start from similarity tables (tables.smk), not from images.
GIVEN = config.get("similarities")
ZOO = config.get("zoo")
ZOO_MEMBERS = zoo_members(ZOO) if ZOO else {}
MODELS = list(config["models"])
LAYER_MODELS = [model for model in MODELS if config["models"][model].get("layers")]
DATASETS = list(config["datasets"])
METRICS = list(config["metrics"])
SEEDS = list(config["probe"]["seeds"])
STRUCTURE = config["structure"]
SAMPLE_SIZE_DATASETS = DATASETS if STRUCTURE["sample_size"]["datasets"] is None else STRUCTURE["sample_size"]["datasets"]
if GIVEN:  # App. C on one dataset subsamples its features
    SAMPLE_SIZE_DATASETS = []
PER_K_DATASETS = STRUCTURE["sample_size"]["per_k_datasets"]
# App. C's per-k subsets serve a similarity analysis only (the paper probes none; k = 1 could not be split for
# validation): no probe, performance or similarity-vs-performance job reads them. Starting from similarity tables,
# a performance table stands for the probes, or nothing does.
PROBE_DATASETS = probe_datasets(config)
if GIVEN and GIVEN["performance"] is None:
    PROBE_DATASETS = []
PROBE_SETTINGS = {key: value for key, value in config["probe"].items() if key not in ("seeds", "memory_budget")}
# Why each analysis that needs more than this run has is skipped (simcon.needs), by rule name; '' for those that
# run. A skipped analysis's job still runs and writes placeholders that say what it needs (docs/outputs.md).
SKIPPED = skipped_analyses(
    {
        "datasets": len(DATASETS),
        "models": len(MODELS),
        "metrics": len(METRICS),
        "anchors": len(config["anchors"]),
        "per_k_datasets": len(PER_K_DATASETS),
        "layer_models": len(LAYER_MODELS),
    }
)


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),
    model="|".join(map(re.escape, MODELS)),
    metric="|".join(map(re.escape, METRICS)),
    seed=r"\d+",
    zoo_model="|".join(map(re.escape, ZOO_MEMBERS)) or "(?!)",


# The feature files of one model on one dataset, outputs of the features rules: every image of the full train and
# test splits (docs/features.md).
FEATURES = "results/features/{dataset}/{model}"
FEATURE_FILES = feature_files(FEATURES)


def train_features_by_model(wildcards):
    """The train features of every model on one dataset, named by model id."""
    return {model: FEATURE_FILES["train"].format(dataset=wildcards.dataset, model=model) for model in MODELS}


def dataset_train_labels(wildcards):
    """The train labels of one dataset (those every model's feature files hold; the first model's)."""
    return FEATURE_FILES["train_labels"].format(dataset=wildcards.dataset, model=MODELS[0])


def subset_features_mb(wildcards, input):
    """MB of the features a similarity job holds in memory: the subset's rows of every model's train features
    (from the subset file and the features' info.json; 0 while they do not exist yet, or when one is damaged: the
    job then fails naming it, the workflow does not)."""
    try:
        rows = len(read_subset(input.subset).indices)
        return sum(rows * feature_record(getattr(input, model))["shape"][-1] * 4 for model in MODELS) / 1e6
    except ResultError:
        return 0


def loader_workers(wildcards, threads):
    """Image loader worker processes of a features job: config loader_workers, else the job's threads."""
    return threads if config["loader_workers"] is None else config["loader_workers"]


def similarity_matrices(metrics, datasets):
    """Similarity matrices as named inputs '<metric>/<dataset>', as simcon.io.read_matrices reads them."""
    return {f"{metric}/{dataset}": f"results/similarity/{dataset}/{metric}.csv" for metric in metrics for dataset in datasets}


def metric_matrices(wildcards):
    """The similarity matrix of every dataset for one metric, named '<metric>/<dataset>'."""
    return similarity_matrices([wildcards.metric], DATASETS)


def all_matrices(wildcards):
    """The similarity matrix of every dataset and metric, named '<metric>/<dataset>'."""
    return similarity_matrices(METRICS, DATASETS)


def per_k_matrices(wildcards):
    """The similarity matrix of each per-k dataset of App. C and metric, named 'k<samples per class>/<metric>'."""
    return {
        f"k{entry['samples_per_class']}/{metric}": f"results/similarity/{entry['dataset']}/{metric}.csv"
        for entry in PER_K_DATASETS
        for metric in METRICS
    }


def consistency_tables(wildcards):
    """The consistency table of every metric, named by metric."""
    return {metric: f"results/consistency/{metric}/consistency.csv" for metric in METRICS}


def model_metadata():
    """Metadata of every model, keyed by model id."""
    return {model: config["models"][model]["metadata"] for model in MODELS}


def structure_outputs():
    """The figures and tables of the similarity-structure stage (structure.smk)."""
    per_metric = ["similarity_matrices.png", "mean_vs_std.png", "tsne.png", "dataset_pairs.png"]
    return [
        *expand("results/figures/{metric}/{name}", metric=METRICS, name=per_metric),
        "results/figures/metric_means.png",
        "results/figures/headline_consistency.csv",
    ]


def sample_size_outputs():
    """The figures of the sample-size stage (sample_size.smk, App. C)."""
    return [
        *expand("results/figures/sample_size/{dataset}.png", dataset=SAMPLE_SIZE_DATASETS),
        *(["results/figures/sample_size/per_k_datasets.png"] if PER_K_DATASETS else []),
    ]


def dataset_categories():
    """The category of every dataset (paper Table 3), keyed by dataset id."""
    return {dataset: config["datasets"][dataset]["category"] for dataset in DATASETS}


def performance_outputs():
    """The probe tables and the similarity-vs-performance figures; none when no dataset is probed."""
    if not PROBE_DATASETS:
        return []
    return [
        "results/performance.csv",
        *expand("results/figures/{metric}/similarity_vs_gap.png", metric=METRICS),
        *expand("results/figures/{metric}/gap_correlations_by_category.png", metric=METRICS),
    ]


def probed_matrices(wildcards):
    """The similarity matrix of every probed dataset for one metric, as named inputs '<metric>/<dataset>'."""
    return similarity_matrices([wildcards.metric], PROBE_DATASETS)


def final_outputs():
    """Every table and figure of the default target."""
    return [
        "results/config.yaml",
        "results/figures/model_categories.csv",
        *performance_outputs(),
        *expand("results/similarity/{dataset}/{metric}.csv", dataset=DATASETS, metric=METRICS),
        *expand("results/consistency/{metric}/consistency.csv", metric=METRICS),
        *expand("results/figures/{metric}/consistency_by_category.png", metric=METRICS),
        *structure_outputs(),
        *sample_size_outputs(),
        *expand("results/figures/{metric}/consistency_anchors.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_matrices.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_bootstrap.png", metric=METRICS),
        *expand("results/figures/{metric}/permutation_test.png", metric=METRICS),
        "results/figures/consistency_metrics.png",
        *(["results/published/consistency_comparison.csv"] if GIVEN and GIVEN["consistency"] else []),
    ]


def model_checkpoint(wildcards):
    """What a features job needs besides its data: the passed checks of its model and dataset (checks.smk) and,
    for a zoo model, the checkpoint the workflow trains (its network is checked as its untrained twin)."""
    if wildcards.model not in ZOO_MEMBERS:
        return [f"results/checks/models/{wildcards.model}.json", f"results/checks/datasets/{wildcards.dataset}.json"]
    twin = ZOO["architectures"][ZOO_MEMBERS[wildcards.model][0]]["twin"]
    return [
        f"results/checks/models/{twin}.json",
        f"results/checks/datasets/{wildcards.dataset}.json",
        ZOO_CHECKPOINT.format(model=wildcards.model),
    ]


def layer_checkpoint(wildcards):
    """What a layer_features job needs besides its subset: model_checkpoint's files with the model's layers check
    (checks.smk: `check_layers`) in place of its model check."""
    return [path.replace("results/checks/models/", "results/checks/layers/") for path in model_checkpoint(wildcards)]


def features_spec(wildcards):
    """The options of a model that its feature files and its model check depend on: all but `layers`, so that a
    change of the layer analysis reruns no check_model or features job."""
    return {key: value for key, value in config["models"][wildcards.model].items() if key != "layers"}


def zoo_outputs():
    """The zoo's summary tables, if the config has a zoo."""
    return ["results/zoo/summary.csv", "results/zoo/objective_similarity.csv"] if ZOO else []


THINGSVISION_MODELS = [m for m in MODELS if config["models"][m].get("backend") == "thingsvision"]
MAIN_ENV_MODELS = [m for m in MODELS if m not in THINGSVISION_MODELS]
# Models a check job builds: a zoo model is checked through its untrained twin (the same network), a
# thingsvision model by its features job (thingsvision runs in its own environment).
CHECKED_MODELS = [m for m in MAIN_ENV_MODELS if m not in ZOO_MEMBERS]


def models_pattern(models):
    """A wildcard pattern matching exactly these model ids (nothing when there are none)."""
    return "|".join(map(re.escape, models)) or "(?!)"


def thingsvision_job(wildcards, output, threads):
    """The features job of a thingsvision model as the JSON argument of scripts/features_thingsvision.py."""
    return json.dumps(
        {
            "model_id": wildcards.model,
            "model": config["models"][wildcards.model],
            "dataset_id": wildcards.dataset,
            "dataset": config["datasets"][wildcards.dataset],
            "outputs": dict(output.items()),
            "log": f"logs/features/{wildcards.dataset}/{wildcards.model}.log",
            "threads": threads,
            "workers": loader_workers(wildcards, threads),
            **{key: config[key] for key in ("image_size", "crop_pct", "batch_size", "device", "normalize", "precision")},
        }
    )


# The layer analyses (layers.smk): similarity over every (model, layer) of the models with `layers`.
LAYER_TABLE = "results/layers/similarity/{dataset}/{metric}.csv"
LAYER_GRID_PAIRS = layer_grid_pairs(
    config["layer_analysis"]["grid_pairs"],
    LAYER_MODELS,
    {model: config["models"][model]["metadata"]["objective"] for model in LAYER_MODELS},
)


def layer_folders(wildcards):
    """The layer folder of every model with layers on one dataset, named by model id."""
    return {model: f"results/layers/{wildcards.dataset}/{model}" for model in LAYER_MODELS}


def layer_tables(wildcards):
    """The long layer-similarity table of every dataset for one metric, named by dataset."""
    return {dataset: LAYER_TABLE.format(dataset=dataset, metric=wildcards.metric) for dataset in DATASETS}


def layer_features_mb(wildcards, input):
    """MB of every layer's features of one dataset, from the layers.json files (0 while they do not exist yet, or
    when one is damaged: the job then fails naming it)."""
    try:
        indices = [read_layer_index(getattr(input, model)) for model in LAYER_MODELS]
    except ResultError:
        return 0
    return sum(index["n"] * layer["d"] * 4 for index in indices for layer in index["layers"]) / 1e6


def layer_outputs():
    """The layer similarity tables and the layer analyses' figures; none without models with layers."""
    if not LAYER_MODELS:
        return []
    return [
        *expand(LAYER_TABLE, dataset=DATASETS, metric=METRICS),
        *expand("results/figures/{metric}/layer_grids/{dataset}.png", metric=METRICS, dataset=DATASETS),
        *expand("results/figures/{metric}/layer_best_pairs.png", metric=METRICS),
        *expand("results/figures/{metric}/consistency_by_depth.png", metric=METRICS),
    ]
