rule probe:
    input:
        **{name: path for name, path in FEATURE_FILES.items() if name != "info"},
    output:
        "results/probes/{dataset}/{model}/seed{seed}.json",
    params:
        settings={key: value for key, value in config["probe"].items() if key != "seeds"},
        device=config["device"],
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
    log:
        "logs/probe/{dataset}/{model}/seed{seed}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/probe.py"
