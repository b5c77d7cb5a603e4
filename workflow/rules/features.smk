rule features:
    input:
        subset="results/subsets/{dataset}.json",
        checkpoint=model_checkpoint,
    output:
        "results/features/{dataset}/{model}.npz",
    params:
        model=lambda wildcards: config["models"][wildcards.model],
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        image_size=config["image_size"],
        crop_pct=config["crop_pct"],
        batch_size=config["batch_size"],
        device=config["device"],
        normalize=config["normalize"],
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
    log:
        "logs/features/{dataset}/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/features.py"
