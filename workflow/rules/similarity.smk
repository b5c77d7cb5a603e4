rule similarity:
    input:
        unpack(train_features_by_model),  # named by model id
        subset="results/subsets/{dataset}.json",
    output:
        matrix="results/similarity/{dataset}/{metric}.csv",
        pairs="results/similarity/{dataset}/{metric}.long.csv",
    params:
        models=MODELS,
        device=config["device"],
        cache="results/cache/similarity/{dataset}/{metric}",
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
        # the subset's rows of every model's features in memory, plus n x n statistics per model
        mem_mb=lambda wildcards, input, attempt: (4000 + 4 * subset_features_mb(wildcards, input)) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + subset_features_mb(wildcards, input) // 10) * attempt,
    log:
        "logs/similarity/{dataset}/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity.py"
