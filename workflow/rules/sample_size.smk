# Similarity against the number of samples per class: paper App. C.
localrules:
    sample_size_per_k_datasets,


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
        skipped=SKIPPED["sample_size"],
        models=MODELS,
        metrics=METRICS,
        samples_per_class=STRUCTURE["sample_size"]["samples_per_class"],
        seed=config["subset_seed"],
        nested=STRUCTURE["sample_size"]["nested"],
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
        "../../scripts/sample_size.py"


rule sample_size_per_k_datasets:
    input:
        unpack(per_k_matrices),
    output:
        figure=report(
            "results/figures/sample_size/per_k_datasets.png",
            caption="../report/sample_size_per_k_datasets.rst",
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
        skipped=SKIPPED["sample_size_per_k_datasets"],
        samples_per_class=[entry["samples_per_class"] for entry in PER_K_DATASETS],
        metrics=METRICS,
    log:
        "logs/sample_size_per_k_datasets.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/sample_size_per_k_datasets.py"
