localrules:
    run_config,


rule run_config:
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
        "logs/run_config.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/run_config.py"
