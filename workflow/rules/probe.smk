rule probe:
    input:
        **{name: path for name, path in FEATURE_FILES.items() if name != "info"},
    output:
        "results/probes/{dataset}/{model}/seed{seed}.json",
    params:
        settings=PROBE_SETTINGS,
        memory_budget=config["probe"].get("memory_budget"),
        device=config["device"],
    resources:
        gpu=1,  # one device when the config's device resolves to CUDA: `--resources gpu=K` runs K at once
    log:
        "logs/probe/{dataset}/{model}/seed{seed}.log",
    conda:
        "../../envs/simcon.yaml"
    script:
        "../../scripts/probe.py"
