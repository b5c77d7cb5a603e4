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
    log:
        "logs/similarity/{dataset}/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity.py"
