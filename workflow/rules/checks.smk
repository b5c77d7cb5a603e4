# The checks that need a backend library: one check job per model and per dataset, which the features jobs of
# that model and dataset wait for. A failed check names its model or dataset; the checks run first (priority), so
# that a fault stops the run before the features jobs start. A check reruns only when its model's or dataset's
# options change, and then so do the features that depend on it. A model's `layers` have their own check, which
# its layer_features jobs wait for: a change of the layer analysis reruns no model check and no features job.
rule check_model:
    output:
        "results/checks/models/{model}.json",
    wildcard_constraints:
        model=models_pattern(CHECKED_MODELS),
    params:
        model=features_spec,
    priority: 10
    log:
        "logs/check_model/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/check_model.py"


rule check_layers:
    output:
        "results/checks/layers/{model}.json",
    wildcard_constraints:
        model=models_pattern([model for model in CHECKED_MODELS if model in LAYER_MODELS]),
    params:
        model=lambda wildcards: config["models"][wildcards.model],
    priority: 10
    log:
        "logs/check_layers/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/check_layers.py"


rule check_dataset:
    output:
        "results/checks/datasets/{dataset}.json",
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
    priority: 10
    log:
        "logs/check_dataset/{dataset}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/check_dataset.py"
