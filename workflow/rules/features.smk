rule features:
    input:
        checkpoint=model_checkpoint,
    output:
        **FEATURE_FILES,
    wildcard_constraints:
        model=models_pattern(MAIN_ENV_MODELS),
    params:
        model=features_spec,
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        image_size=config["image_size"],
        crop_pct=config["crop_pct"],
        batch_size=config["batch_size"],
        device=config["device"],
        normalize=config["normalize"],
        precision=config["precision"],
        workers=loader_workers,
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
    log:
        "logs/features/{dataset}/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/features.py"


# Models of the thingsvision backend run in thingsvision's own environment: envs/thingsvision.yaml under
# `--sdm conda`, else the python named by config `thingsvision_python` (a separate venv, see docs/models.md).
rule features_thingsvision:
    output:
        **FEATURE_FILES,
    wildcard_constraints:
        model=models_pattern(THINGSVISION_MODELS),
    params:
        python=config["thingsvision_python"],
        src=f"{REPO}/src",
        script=f"{REPO}/scripts/features_thingsvision.py",
        job=lambda wildcards, output, threads: thingsvision_job(wildcards, output, threads),
    resources:
        gpu=1,
    log:
        "logs/features/{dataset}/{model}.log",
    conda:
        "../../envs/thingsvision.yaml"
    shell:
        "PYTHONPATH={params.src:q} {params.python:q} {params.script:q} {params.job:q}"


# The layer features of one model on one dataset (docs/features.md): every layer of the model's `layers` and its
# representation layer, for the train images of the similarity subset, from one forward pass per batch.
rule layer_features:
    input:
        checkpoint=layer_checkpoint,
        subset="results/subsets/{dataset}.json",
    output:
        directory("results/layers/{dataset}/{model}"),
    wildcard_constraints:
        model=models_pattern(LAYER_MODELS),
    params:
        model=lambda wildcards: config["models"][wildcards.model],
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        image_size=config["image_size"],
        crop_pct=config["crop_pct"],
        batch_size=config["batch_size"],
        device=config["device"],
        normalize=config["normalize"],
        precision=config["precision"],
        workers=loader_workers,
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
    log:
        "logs/layer_features/{dataset}/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/layer_features.py"
