# Consistency of model sets' similarity across dataset pairs: Secs. 4.5-4.6, Figs. 6-7, App. E and F, and its
# bootstrap intervals and permutation tests.
localrules:
    consistency,
    consistency_anchors,
    consistency_matrices,
    consistency_bootstrap,
    permutation_test,
    consistency_metrics,


rule consistency:
    input:
        unpack(metric_matrices),
    output:
        table=report(
            "results/consistency/{metric}/consistency.csv",
            caption="../report/consistency_table.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"table": "consistency per set pair and dataset pair", "metric": "{metric}"},
        ),
        summary=report(
            "results/consistency/{metric}/summary.csv",
            caption="../report/consistency_summary.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"table": "consistency summary", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_by_category.png",
            caption="../report/consistency.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"figure": "Fig. 6 consistency by category", "metric": "{metric}"},
        ),
        figure_data="results/figures/{metric}/consistency_by_category.csv",
    params:
        skipped=SKIPPED["consistency"],
        datasets=DATASETS,
        metadata=model_metadata(),
        anchors=config["anchors"],
    log:
        "logs/consistency/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency.py"


rule consistency_anchors:
    input:
        consistency="results/consistency/{metric}/consistency.csv",
    output:
        table=report(
            "results/figures/{metric}/consistency_anchors.csv",
            caption="../report/consistency_anchors.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"table": "App. F anchors", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_anchors.png",
            caption="../report/consistency_anchors.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"figure": "App. F anchors", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["consistency_anchors"],
    log:
        "logs/consistency_anchors/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency_anchors.py"


rule consistency_matrices:
    input:
        consistency="results/consistency/{metric}/consistency.csv",
    output:
        table=report(
            "results/figures/{metric}/consistency_matrices.csv",
            caption="../report/consistency_matrices.rst",
            category="4.6 Dataset categories",
            subcategory="{metric}",
            labels={"table": "Fig. 7 consistency per dataset pair", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_matrices.png",
            caption="../report/consistency_matrices.rst",
            category="4.6 Dataset categories",
            subcategory="{metric}",
            labels={"figure": "Fig. 7 consistency per dataset pair", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["consistency_matrices"],
        datasets=DATASETS,
        categories=dataset_categories(),
        set_pairs=config["consistency"]["dataset_matrices"],
    log:
        "logs/consistency_matrices/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency_matrices.py"


rule consistency_bootstrap:
    input:
        consistency="results/consistency/{metric}/consistency.csv",
    output:
        table=report(
            "results/figures/{metric}/consistency_bootstrap.csv",
            caption="../report/consistency_bootstrap.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"table": "bootstrap intervals of median consistency", "metric": "{metric}"},
        ),
        figure=report(
            "results/figures/{metric}/consistency_bootstrap.png",
            caption="../report/consistency_bootstrap.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"figure": "bootstrap intervals of median consistency", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["consistency_bootstrap"],
        datasets=DATASETS,
        options=config["consistency"]["bootstrap"],
    log:
        "logs/consistency_bootstrap/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency_bootstrap.py"


rule permutation_test:
    input:
        unpack(metric_matrices),
    output:
        table=report(
            "results/consistency/{metric}/permutation_test.csv",
            caption="../report/permutation_test.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"table": "permutation tests", "metric": "{metric}"},
        ),
        null="results/figures/{metric}/permutation_test.csv",
        figure=report(
            "results/figures/{metric}/permutation_test.png",
            caption="../report/permutation_test.rst",
            category="4.5 Model categories",
            subcategory="{metric}",
            labels={"figure": "permutation tests", "metric": "{metric}"},
        ),
    params:
        skipped=SKIPPED["permutation_test"],
        datasets=DATASETS,
        metadata=model_metadata(),
        options=config["consistency"]["permutation"],
    log:
        "logs/permutation_test/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/permutation_test.py"


rule consistency_metrics:
    input:
        unpack(consistency_tables),
    output:
        table=report(
            "results/figures/consistency_metrics.csv",
            caption="../report/consistency_metrics.rst",
            category="Appendix",
            labels={"table": "App. E consistency under other metrics"},
        ),
        figure=report(
            "results/figures/consistency_metrics.png",
            caption="../report/consistency_metrics.rst",
            category="Appendix",
            labels={"figure": "App. E consistency under other metrics"},
        ),
    params:
        skipped=SKIPPED["consistency_metrics"],
        metrics=METRICS,
    log:
        "logs/consistency_metrics.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/consistency_metrics.py"
