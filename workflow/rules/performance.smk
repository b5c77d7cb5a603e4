# Linear-probe accuracy (App. B) and model pairs' similarity against their performance gap (Sec. 4.7, Fig. 8, App. G).
localrules:
    performance,
    similarity_vs_performance,


rule performance:
    input:
        [f"results/probes/{dataset}/{model}/seed{seed}.json" for dataset in PROBE_DATASETS for model in MODELS for seed in SEEDS],
    output:
        table=report(
            "results/performance.csv",
            caption="../report/performance.rst",
            category="4.7 Similarity and performance",
            labels={"table": "App. B linear-probe accuracy"},
        ),
        top1=report(
            "results/performance_top1.csv",
            caption="../report/performance_top1.rst",
            category="4.7 Similarity and performance",
            labels={"table": "App. B top-1 per model and dataset"},
        ),
    log:
        "logs/performance.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/performance.py"


rule similarity_vs_performance:
    input:
        unpack(probed_matrices),
        performance="results/performance.csv",
    output:
        pairs="results/similarity_vs_performance/{metric}/pairs.csv",
        correlations=report(
            "results/similarity_vs_performance/{metric}/correlations.csv",
            caption="../report/gap_correlations.rst",
            category="4.7 Similarity and performance",
            subcategory="{metric}",
            labels={"table": "App. G correlation per dataset", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/similarity_vs_gap.png",
            caption="../report/similarity_vs_gap.rst",
            category="4.7 Similarity and performance",
            subcategory="{metric}",
            labels={"figure": "Fig. 8 similarity vs performance gap", "metric": "{metric}"},
        ),
        by_category=report(
            "results/figures/{metric}/gap_correlations_by_category.png",
            caption="../report/gap_correlations_by_category.rst",
            category="4.7 Similarity and performance",
            subcategory="{metric}",
            labels={"figure": "App. G correlation by dataset category", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["similarity_vs_performance"],
        datasets=PROBE_DATASETS,
        categories=dataset_categories(),
    log:
        "logs/similarity_vs_performance/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity_vs_performance.py"
