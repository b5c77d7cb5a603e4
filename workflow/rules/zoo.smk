localrules:
    zoo_summary,


rule zoo_scenes:
    output:
        scenes="results/zoo/scenes.npz",
    params:
        scenes=lambda wildcards: ZOO["scenes"],
    log:
        "logs/zoo_scenes.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/zoo_scenes.py"


rule train_zoo:
    input:
        scenes="results/zoo/scenes.npz",
    output:
        checkpoint="results/zoo/{zoo_model}.pt",
        history="results/zoo/{zoo_model}.json",
    params:
        architecture=lambda wildcards: ZOO["architectures"][ZOO_MEMBERS[wildcards.zoo_model][0]],
        objective=lambda wildcards: ZOO_MEMBERS[wildcards.zoo_model][1],
        seed=lambda wildcards: ZOO_MEMBERS[wildcards.zoo_model][2],
        training=lambda wildcards: ZOO["training"],
    threads: lambda wildcards: ZOO["threads"]
    log:
        "logs/train_zoo/{zoo_model}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/train_zoo.py"


rule zoo_summary:
    input:
        unpack(all_matrices),
        histories=expand("results/zoo/{zoo_model}.json", zoo_model=ZOO_MEMBERS),
        performance="results/performance.csv",
    output:
        summary=report(
            "results/zoo/summary.csv",
            caption="../report/zoo_summary.rst",
            category="Model zoo",
            labels={"table": "training and in-domain probe vs untrained twin"},
        ),
        objective_similarity=report(
            "results/zoo/objective_similarity.csv",
            caption="../report/zoo_objective_similarity.rst",
            category="Model zoo",
            labels={"table": "similarity within vs across objectives"},
        ),
    params:
        members=ZOO_MEMBERS,
        twins=lambda wildcards: {name: spec["twin"] for name, spec in ZOO["architectures"].items()},
        in_domain=lambda wildcards: ZOO.get("in_domain"),
        datasets=DATASETS,
        metrics=METRICS,
    log:
        "logs/zoo_summary.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/zoo_summary.py"
