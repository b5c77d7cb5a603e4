# Structure of the similarity matrices across datasets and metrics: paper Figs. 2-5, App. D, Sec. 4.4's headline.
localrules:
    similarity_matrices,
    mean_vs_std,
    metric_means,
    tsne,
    dataset_pairs,
    headline_consistency,


rule similarity_matrices:
    input:
        unpack(metric_matrices),
    output:
        figure=report(
            "results/figures/{metric}/similarity_matrices.png",
            caption="../report/similarity_matrices.rst",
            category="4.2 Similarity across datasets",
            subcategory="{metric}",
            labels={"figure": "Fig. 2 similarity matrices", "metric": "{metric}"},
        ),
        data=report(
            "results/figures/{metric}/similarity_matrices.csv",
            caption="../report/similarity_matrices_data.rst",
            category="4.2 Similarity across datasets",
            subcategory="{metric}",
            labels={"table": "Fig. 2 data", "metric": "{metric}"},
        ),
    params:
        datasets=DATASETS,
        metadata=model_metadata(),
    log:
        "logs/similarity_matrices/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity_matrices.py"


rule mean_vs_std:
    input:
        unpack(metric_matrices),
    output:
        figure=report(
            "results/figures/{metric}/mean_vs_std.png",
            caption="../report/mean_vs_std.rst",
            category="4.2 Similarity across datasets",
            subcategory="{metric}",
            labels={"figure": "Fig. 3 mean vs std", "metric": "{metric}"},
        ),
        transformed=report(
            "results/figures/{metric}/mean_vs_std_transformed.png",
            caption="../report/mean_vs_std_transformed.rst",
            category="4.2 Similarity across datasets",
            subcategory="{metric}",
            labels={"figure": "App. D arccos and tan", "metric": "{metric}"},
        ),
        data=report(
            "results/figures/{metric}/mean_vs_std.csv",
            caption="../report/mean_vs_std_data.rst",
            category="4.2 Similarity across datasets",
            subcategory="{metric}",
            labels={"table": "Fig. 3 and App. D data", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["mean_vs_std"],
        datasets=DATASETS,
    log:
        "logs/mean_vs_std/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/mean_vs_std.py"


rule metric_means:
    input:
        unpack(all_matrices),
    output:
        figure=report(
            "results/figures/metric_means.png",
            caption="../report/metric_means.rst",
            category="4.2 Similarity across datasets",
            subcategory="all metrics",
            labels={"figure": "Fig. 3 metrics vs reference"},
        ),
        data=report(
            "results/figures/metric_means.csv",
            caption="../report/metric_means_data.rst",
            category="4.2 Similarity across datasets",
            subcategory="all metrics",
            labels={"table": "Fig. 3 mean similarity per metric"},
        ),
        correlations="results/figures/metric_means_r.csv",
        correlations_html=report(
            "results/figures/metric_means_r.html",
            caption="../report/metric_means_r.rst",
            category="4.2 Similarity across datasets",
            subcategory="all metrics",
            labels={"table": "Fig. 3 Pearson r per metric"},
        ),
    params:
        skipped=SKIPPED["metric_means"],
        datasets=DATASETS,
        metrics=METRICS,
        reference=reference_metric(METRICS),
    log:
        "logs/metric_means.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/metric_means.py"


rule tsne:
    input:
        unpack(metric_matrices),
    output:
        figure=report(
            "results/figures/{metric}/tsne.png",
            caption="../report/tsne.rst",
            category="4.3 Clusters by model category",
            subcategory="{metric}",
            labels={"figure": "Fig. 4 t-SNE", "metric": "{metric}"},
        ),
        data=report(
            "results/figures/{metric}/tsne.csv",
            caption="../report/tsne_data.rst",
            category="4.3 Clusters by model category",
            subcategory="{metric}",
            labels={"table": "Fig. 4 data", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["tsne"],
        datasets=DATASETS,
        shown=STRUCTURE["tsne_datasets"] or DATASETS,
        metadata=model_metadata(),
    log:
        "logs/tsne/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/tsne.py"


rule dataset_pairs:
    input:
        unpack(metric_matrices),
    output:
        figure=report(
            "results/figures/{metric}/dataset_pairs.png",
            caption="../report/dataset_pairs.rst",
            category="4.4 Consistency across datasets",
            subcategory="{metric}",
            labels={"figure": "Fig. 5 dataset pairs", "metric": "{metric}"},
        ),
        data=report(
            "results/figures/{metric}/dataset_pairs.csv",
            caption="../report/dataset_pairs_data.rst",
            category="4.4 Consistency across datasets",
            subcategory="{metric}",
            labels={"table": "Fig. 5 data", "metric": "{metric}"},
        ),
        correlations="results/figures/{metric}/dataset_pairs_r.csv",
        correlations_html=report(
            "results/figures/{metric}/dataset_pairs_r.html",
            caption="../report/dataset_pairs_r.rst",
            category="4.4 Consistency across datasets",
            subcategory="{metric}",
            labels={"table": "Fig. 5 Pearson r", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["dataset_pairs"],
        datasets=DATASETS,
        dataset_pairs=STRUCTURE["dataset_pairs"],
        objective={model: config["models"][model]["metadata"]["objective"] for model in MODELS},
    log:
        "logs/dataset_pairs/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/dataset_pairs.py"


rule headline_consistency:
    input:
        unpack(all_matrices),
    output:
        table="results/figures/headline_consistency.csv",
        table_html=report(
            "results/figures/headline_consistency.html",
            caption="../report/headline_consistency.rst",
            category="4.4 Consistency across datasets",
            subcategory="all metrics",
            labels={"table": "Sec. 4.4 mean and std of rho"},
        ),
    params:
        skipped=SKIPPED["headline_consistency"],
        datasets=DATASETS,
        metrics=METRICS,
    log:
        "logs/headline_consistency.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/headline_consistency.py"
