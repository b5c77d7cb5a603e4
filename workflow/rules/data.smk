rule subset:
    output:
        "results/subsets/{dataset}.json",
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        seed=config["subset_seed"],
    log:
        "logs/subset/{dataset}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/subset.py"
