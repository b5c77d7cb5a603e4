# Similarity over every (model, layer) of the models with `layers` and its analyses (docs/layers.md). The layer
# folders results/layers/{dataset}/{model} are the layer_features rule's outputs; the helpers are in common.smk.

localrules:
    layer_grids,
    layer_best_pairs,
    layer_consistency,


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
        skipped=SKIPPED["layer_best_pairs"],
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
        skipped=SKIPPED["layer_consistency"],
        datasets=DATASETS,
        metadata={model: config["models"][model]["metadata"] for model in LAYER_MODELS},
        depth_bins=config["layer_analysis"]["depth_bins"],
    log:
        "logs/layer_consistency/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_consistency.py"
