# The checks that need a backend library, run before any features job: every features job waits for
# CHECKS_PASSED (every check's findings, concatenated), which waits for one check job per model and per dataset;
# a failed check names its model or dataset.
localrules:
    checks,


rule check_model:
    output:
        "results/checks/models/{model}.json",
    wildcard_constraints:
        model=models_pattern(CHECKED_MODELS),
    params:
        model=lambda wildcards: config["models"][wildcards.model],
    log:
        "logs/check_model/{model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/check_model.py"


rule check_dataset:
    output:
        "results/checks/datasets/{dataset}.json",
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
    log:
        "logs/check_dataset/{dataset}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/check_dataset.py"


rule checks:
    input:
        models=expand("results/checks/models/{model}.json", model=CHECKED_MODELS),
        datasets=expand("results/checks/datasets/{dataset}.json", dataset=DATASETS),
    output:
        CHECKS_PASSED,
    log:
        "logs/checks.log",
    conda:
        "../../envs/simcon.yaml"
    shell:
        "cat {input:q} > {output:q} 2> {log:q}"
