from simcon.config import layer_grid_pairs

# Similarity over every (model, layer) of the models with `layers` and its analyses (docs/layers.md). The layer
# folders results/layers/{dataset}/{model} are the layer_features rule's outputs (features.smk).

localrules:
    layer_grids,
    layer_best_pairs,
    layer_consistency,


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
    """MB of every layer's features of one dataset, from the layers.json files (0 while they do not exist yet)."""
    paths = [Path(getattr(input, model)) / "layers.json" for model in LAYER_MODELS]
    if not all(path.exists() for path in paths):
        return 0
    infos = [json.loads(path.read_text()) for path in paths]
    return sum(info["n"] * layer["d"] * 4 for info in infos for layer in info["layers"]) / 1e6


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


rule layer_similarity:
    input:
        unpack(layer_folders),  # named by model id
        subset="results/subsets/{dataset}.json",
    output:
        LAYER_TABLE,
    params:
        models=LAYER_MODELS,
        device=config["device"],
        cache="results/cache/similarity/{dataset}/{metric}",
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA, as for similarity
        mem_mb=lambda wildcards, input, attempt: (4000 + 4 * layer_features_mb(wildcards, input)) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + layer_features_mb(wildcards, input) // 10) * attempt,
    log:
        "logs/layer_similarity/{dataset}/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_similarity.py"


rule layer_grids:
    input:
        LAYER_TABLE,
    output:
        figure=report(
            "results/figures/{metric}/layer_grids/{dataset}.png",
            caption="../report/layer_grids.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"figure": "layer x layer similarity", "dataset": "{dataset}", "metric": "{metric}"},
        ),
        data="results/figures/{metric}/layer_grids/{dataset}.csv",
    params:
        pairs=LAYER_GRID_PAIRS,
    log:
        "logs/layer_grids/{dataset}/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_grids.py"


rule layer_best_pairs:
    input:
        unpack(layer_tables),  # named by dataset
    output:
        table=report(
            "results/figures/{metric}/layer_best_pairs.csv",
            caption="../report/layer_best_pairs.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"table": "best-matching layer pairs", "dataset": "all", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/layer_best_pairs.png",
            caption="../report/layer_best_pairs.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"figure": "best-matching layer pairs", "dataset": "all", "metric": "{metric}"},
        ),
    params:
        datasets=DATASETS,
        metadata={model: config["models"][model]["metadata"] for model in LAYER_MODELS},
    log:
        "logs/layer_best_pairs/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_best_pairs.py"


rule layer_consistency:
    input:
        unpack(layer_tables),  # named by dataset
    output:
        table=report(
            "results/layers/consistency/{metric}/consistency.csv",
            caption="../report/consistency_by_depth.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"table": "consistency per depth bin", "dataset": "all", "metric": "{metric}"},
        ),
        layers=report(
            "results/layers/consistency/{metric}/layers.csv",
            caption="../report/consistency_by_depth_layers.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"table": "each model's layer per depth bin", "dataset": "all", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_by_depth.png",
            caption="../report/consistency_by_depth.rst",
            category="Layers",
            subcategory="{metric}",
            labels={"figure": "consistency by relative depth", "dataset": "all", "metric": "{metric}"},
        ),
        figure_data="results/figures/{metric}/consistency_by_depth.csv",
    params:
        datasets=DATASETS,
        metadata={model: config["models"][model]["metadata"] for model in LAYER_MODELS},
        depth_bins=config["layer_analysis"]["depth_bins"],
    log:
        "logs/layer_consistency/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_consistency.py"
