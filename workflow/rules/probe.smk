rule probe:
    input:
        "results/features/{dataset}/{model}.npz",
    output:
        "results/probes/{dataset}/{model}/seed{seed}.json",
    params:
        settings={key: value for key, value in config["probe"].items() if key != "seeds"},
        device=config["device"],
    log:
        "logs/probe/{dataset}/{model}/seed{seed}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/probe.py"
