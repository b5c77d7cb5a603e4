localrules:
    performance,
    consistency,
    similarity_vs_performance,


rule performance:
    input:
        expand(
            "results/probes/{dataset}/{model}/seed{seed}.json",
            dataset=DATASETS,
            model=MODELS,
            seed=SEEDS,
        ),
    output:
        report(
            "results/performance.csv",
            caption="../report/performance.rst",
            category="Performance",
            labels={"table": "linear-probe accuracy"},
        ),
    log:
        "logs/performance.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/performance.py"


rule consistency:
    input:
        metric_matrices,
    output:
        table="results/consistency/{metric}/consistency.csv",
        summary=report(
            "results/consistency/{metric}/summary.csv",
            caption="../report/consistency_summary.rst",
            category="Consistency",
            subcategory="{metric}",
            labels={"table": "consistency summary", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_by_category.png",
            caption="../report/consistency.rst",
            category="Consistency",
            subcategory="{metric}",
            labels={"figure": "consistency by category", "metric": "{metric}"},
        ),
    params:
        datasets=DATASETS,
        metadata=model_metadata(),
        anchors=config["anchors"],
    log:
        "logs/consistency/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency.py"


rule similarity_vs_performance:
    input:
        matrices=metric_matrices,
        performance="results/performance.csv",
    output:
        pairs="results/similarity_vs_performance/{metric}/pairs.csv",
        correlations=report(
            "results/similarity_vs_performance/{metric}/correlations.csv",
            caption="../report/gap_correlations.rst",
            category="Similarity vs performance",
            subcategory="{metric}",
            labels={"table": "correlation per dataset", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/similarity_vs_gap.png",
            caption="../report/similarity_vs_gap.rst",
            category="Similarity vs performance",
            subcategory="{metric}",
            labels={"figure": "similarity vs performance gap", "metric": "{metric}"},
        ),
    params:
        datasets=DATASETS,
        categories={dataset: config["datasets"][dataset]["category"] for dataset in DATASETS},
    log:
        "logs/similarity_vs_performance/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity_vs_performance.py"
