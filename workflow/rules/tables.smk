# Starting from similarity tables (config `similarities`, docs/configuration.md#starting-from-similarity-tables): the
# similarity matrices, and the probes' accuracies where a performance table is given, come from tables in place of
# features and probes; every analysis after them runs as from images. The tables are read when the workflow
# parses: each job's params carry a digest of its own rows, so a changed or added row reruns only the jobs it
# belongs to and what depends on them (the tables themselves are `ancient`: their time stamps rerun nothing).
from simcon.tables import paper_model_ids, read_performance, read_similarities, slice_digests, table_digest

TABLE_OPTIONS = {
    "layout": GIVEN["layout"],
    "rename": {
        **GIVEN["rename"],
        # the authors' layout names the paper's models by the authors' ids (resources/paper_models.csv)
        "models": {
            **(paper_model_ids(REPO / "resources/paper_models.csv") if GIVEN["layout"] == "authors" else {}),
            **GIVEN["rename"]["models"],
        },
    },
}
SIMILARITY_ROWS = slice_digests(
    read_similarities(GIVEN["tables"], models=MODELS, datasets=DATASETS, metrics=METRICS, **TABLE_OPTIONS),
    ["dataset", "metric"],
)
PERFORMANCE_ROWS = (
    table_digest(read_performance(GIVEN["performance"], models=MODELS, datasets=PROBE_DATASETS, **TABLE_OPTIONS))
    if PROBE_DATASETS
    else ""
)


ruleorder: similarity_table > similarity
ruleorder: performance_table > performance


localrules:
    similarity_table,
    performance_table,
    published_comparison,


rule similarity_table:
    input:
        tables=[ancient(path) for path in GIVEN["tables"]],
    output:
        matrix="results/similarity/{dataset}/{metric}.csv",
        pairs="results/similarity/{dataset}/{metric}.long.csv",
    params:
        rows=lambda wildcards: SIMILARITY_ROWS[(wildcards.dataset, wildcards.metric)],
        models=MODELS,
        options=TABLE_OPTIONS,
    log:
        "logs/similarity_table/{dataset}/{metric}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/similarity_table.py"


rule performance_table:
    input:
        table=ancient(GIVEN["performance"] or []),
    output:
        table=report(
            "results/performance.csv",
            caption="../report/performance_table.rst",
            category="4.7 Similarity and performance",
            labels={"table": "App. B top-1 accuracy (given)"},
        ),
        top1=report(
            "results/performance_top1.csv",
            caption="../report/performance_table.rst",
            category="4.7 Similarity and performance",
            labels={"table": "App. B top-1 per model and dataset (given)"},
        ),
    params:
        rows=PERFORMANCE_ROWS,
        models=MODELS,
        datasets=PROBE_DATASETS,
        options=TABLE_OPTIONS,
    log:
        "logs/performance_table.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/performance_table.py"


rule published_comparison:
    input:
        unpack(consistency_tables),
        published=[ancient(path) for path in GIVEN["consistency"]],
    output:
        table="results/published/consistency_comparison.csv",
        summary="results/published/consistency_comparison_summary.csv",
        summary_html=report(
            "results/published/consistency_comparison_summary.html",
            caption="../report/published_comparison.rst",
            category="4.5 Model categories",
            subcategory="published",
            labels={"table": "consistency: this run vs published"},
        ),
    params:
        metrics=METRICS,
        datasets=DATASETS,
        options=TABLE_OPTIONS,
    log:
        "logs/published_comparison.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/published_comparison.py"
