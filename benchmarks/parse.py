"""How long `snakemake -n` takes on the paper config, against the floor Snakemake itself sets: a synthetic
workflow with the same jobs (a check job per model and dataset, a features job per (model, dataset), a probe job
per (model, dataset, seed), a subset per dataset, a similarity job per (dataset, metric), `script:` rules like
ours) and nothing else: no config resolution, no input functions, no aggregates. The synthetic workflow runs twice:
with `script:` rules like ours, and with `shell:` rules, the lightest kind of rule (no per-job script lookup).

    python benchmarks/parse.py [--configfile config/paper.yaml] [--repeats 3]

Prints the best wall and CPU seconds of each and the ratios; the difference is what the workflow's own code
and its remaining rules cost.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

SYNTHETIC = """
MODELS = {models!r}
DATASETS = {datasets!r}
SEEDS = {seeds!r}
METRICS = {metrics!r}

wildcard_constraints:
    model="|".join(MODELS), dataset="|".join(DATASETS), seed=r"\\d+", metric="|".join(METRICS)

rule all:
    input:
        expand("probes/{{dataset}}/{{model}}/seed{{seed}}.json", dataset=DATASETS, model=MODELS, seed=SEEDS),
        expand("similarity/{{dataset}}/{{metric}}.csv", dataset=DATASETS, metric=METRICS),

rule check_model:
    output: "checks/models/{{model}}.json"
    {action}

rule check_dataset:
    output: "checks/datasets/{{dataset}}.json"
    {action}

rule subset:
    output: "subsets/{{dataset}}.json"
    {action}

rule features:
    input: "checks/models/{{model}}.json", "checks/datasets/{{dataset}}.json"
    output: "features/{{dataset}}/{{model}}/train.npy", "features/{{dataset}}/{{model}}/test.npy"
    params: model=lambda wildcards: wildcards.model
    {action}

rule probe:
    input: "features/{{dataset}}/{{model}}/train.npy", "features/{{dataset}}/{{model}}/test.npy"
    output: "probes/{{dataset}}/{{model}}/seed{{seed}}.json"
    params: seed=lambda wildcards: int(wildcards.seed)
    {action}

rule similarity:
    input:
        subset="subsets/{{dataset}}.json",
        features=expand("features/{{{{dataset}}}}/{{model}}/train.npy", model=MODELS),
    output: "similarity/{{dataset}}/{{metric}}.csv"
    {action}
"""


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and the job count of a `snakemake -n` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, flags=re.M)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(total[1]) if total else 0


def best(command: list[str], cwd: Path, repeats: int) -> tuple[float, float, int]:
    """The fastest of `repeats` runs."""
    return min((timed(command, cwd) for _ in range(repeats)), key=lambda run: run[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default="config/paper.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / args.configfile).read_text())
    defaults = yaml.safe_load((REPO / "config/config.yaml").read_text())
    snakemake = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules"]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        ours = best(
            [*snakemake, "-d", str(workdir / "ours"), "--configfile", str(REPO / args.configfile)], REPO, args.repeats
        )
        floors = {}
        for kind, action in (("script", 'script: "job.py"'), ("shell", 'shell: "true"')):
            synthetic = workdir / kind
            synthetic.mkdir()
            (synthetic / "job.py").write_text("")
            (synthetic / "Snakefile").write_text(
                SYNTHETIC.format(
                    models=list(config["models"]),
                    datasets=list(config["datasets"]),
                    seeds=(config.get("probe") or defaults["probe"])["seeds"],
                    metrics=config.get("metrics") or defaults["metrics"],
                    action=action,
                )
            )
            floors[kind] = best(snakemake, synthetic, args.repeats)
    print(f"{'workflow':<32}{'jobs':>8}{'wall s':>10}{'CPU s':>10}")
    print(f"{'this workflow, ' + Path(args.configfile).stem:<32}{ours[2]:>8}{ours[0]:>10.2f}{ours[1]:>10.2f}")
    for kind, floor in floors.items():
        print(f"{'synthetic, same jobs, ' + kind + ':':<32}{floor[2]:>8}{floor[0]:>10.2f}{floor[1]:>10.2f}")
    for kind, floor in floors.items():
        print(f"ratio (this / synthetic {kind}:): wall {ours[0] / floor[0]:.2f}, CPU {ours[1] / floor[1]:.2f}")


if __name__ == "__main__":
    main()
