localrules:
    config,
    model_categories,


rule config:
    output:
        report(
            "results/config.yaml",
            caption="../report/config.rst",
            category="Configuration",
            labels={"file": "resolved config"},
        ),
    params:
        config=config,
    log:
        "logs/config.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/config.py"


rule model_categories:
    output:
        table="results/figures/model_categories.csv",
        table_html=report(
            "results/figures/model_categories.html",
            caption="../report/model_categories.rst",
            category="4.1 Setup",
            subcategory="models",
            labels={"table": "Table 1 models per category"},
        ),
    params:
        metadata=model_metadata(),
    log:
        "logs/model_categories.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/model_categories.py"
