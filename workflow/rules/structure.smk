# Structure of the similarity matrices across datasets and metrics: paper Figs. 2-5, App. C and D, Sec. 4.4's headline.
localrules:
    similarity_figure,
    mean_vs_std,
    metric_means,
    tsne,
    dataset_pairs,
    headline_consistency,
    sample_size_datasets,


rule similarity_figure:
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
        "logs/similarity_figure/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity_figure.py"


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
        datasets=DATASETS,
    log:
        "logs/mean_vs_std/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_mean_vs_std.py"


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
        datasets=DATASETS,
        metrics=METRICS,
        reference=reference_metric(METRICS),
    log:
        "logs/metric_means.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_metric_means.py"


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
        datasets=DATASETS,
        shown=STRUCTURE["tsne_datasets"] or DATASETS,
        metadata=model_metadata(),
    log:
        "logs/tsne/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_tsne.py"


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
        datasets=DATASETS,
        dataset_pairs=STRUCTURE["dataset_pairs"],
        objective={model: config["models"][model]["metadata"]["objective"] for model in MODELS},
    log:
        "logs/dataset_pairs/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_dataset_pairs.py"


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
        datasets=DATASETS,
        metrics=METRICS,
    log:
        "logs/headline_consistency.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_headline.py"


rule sample_size:
    input:
        unpack(train_features_by_model),  # named by model id
        labels=dataset_train_labels,
        subset="results/subsets/{dataset}.json",
    output:
        figure=report(
            "results/figures/sample_size/{dataset}.png",
            caption="../report/sample_size.rst",
            category="Appendix",
            subcategory="App. C sample size",
            labels={"figure": "App. C samples per class", "dataset": "{dataset}"},
        ),
        similarities="results/figures/sample_size/{dataset}.similarities.csv",
        data=report(
            "results/figures/sample_size/{dataset}.csv",
            caption="../report/sample_size_data.rst",
            category="Appendix",
            subcategory="App. C sample size",
            labels={"table": "App. C data", "dataset": "{dataset}"},
        ),
    params:
        models=MODELS,
        metrics=METRICS,
        samples_per_class=STRUCTURE["sample_size"]["samples_per_class"],
        seed=config["subset_seed"],
        device=config["device"],
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
        # the subset's rows of every model's features in memory, plus n x n statistics per model
        mem_mb=lambda wildcards, input, attempt: (4000 + 4 * subset_features_mb(wildcards, input)) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + subset_features_mb(wildcards, input) // 10) * attempt,
    log:
        "logs/sample_size/{dataset}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_sample_size.py"


rule sample_size_datasets:
    input:
        unpack(per_k_matrices),
    output:
        figure=report(
            "results/figures/sample_size/per_k_datasets.png",
            caption="../report/sample_size_datasets.rst",
            category="Appendix",
            subcategory="App. C sample size",
            labels={"figure": "App. C per-k datasets", "dataset": "per-k datasets"},
        ),
        data=report(
            "results/figures/sample_size/per_k_datasets.csv",
            caption="../report/sample_size_data.rst",
            category="Appendix",
            subcategory="App. C sample size",
            labels={"table": "App. C data", "dataset": "per-k datasets"},
        ),
    params:
        samples_per_class=[entry["samples_per_class"] for entry in PER_K_DATASETS],
        metrics=METRICS,
    log:
        "logs/sample_size_datasets.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/structure_sample_size_datasets.py"
