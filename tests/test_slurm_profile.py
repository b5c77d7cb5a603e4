"""The SLURM profile without a cluster: an entry for every compute rule, GPU requests that follow
SIMCON_SLURM_GPUS, and the grouping of each (model, dataset)'s feature and probe jobs into one sbatch job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
import yte

from conftest import REPO, rule_bodies, workflow_text
from test_workflow import TINY

PROFILE = REPO / "profiles/slurm/config.yaml"
ACTIONS = ("script", "shell", "run", "notebook", "wrapper", "cwl")
GROUP = "features_probes"
CHECKS = "checks"  # the check jobs, CHECKS_PER_JOB to an sbatch job
CHECKS_PER_JOB = 16
# The rules that hold a GPU on the cluster (similarity and sample_size may use one in local runs; on the
# cluster they run on CPUs, next to all of one dataset's features in memory).
CLUSTER_GPU_RULES = {"features", "features_thingsvision", "layer_features", "probe"}
# The rules whose jobs of one (model, dataset) share one sbatch job.
GROUPED_RULES = {"features", "features_thingsvision", "probe"}
TINY_SEEDS = {**TINY, "probe": {**TINY["probe"], "seeds": [0, 1, 2]}}


def local_rules() -> set[str]:
    """The rules named in a `localrules:` block or marked `localrule: True`."""
    text = workflow_text()
    blocks = re.findall(r"^localrules:\s*\n((?:[ \t]+.*\n)+)", text, flags=re.M)
    named = {name for block in blocks for name in re.findall(r"\w+", block)}
    return named | {name for name, body in rule_bodies().items() if re.search(r"^\s+localrule:\s*True", body, re.M)}


def compute_rules() -> set[str]:
    """The rules whose jobs go through sbatch: those with an action, less the local ones."""
    acting = {name for name, body in rule_bodies().items() if re.search(rf"^\s+({'|'.join(ACTIONS)}):", body, re.M)}
    return acting - local_rules()


def gpu_rules() -> set[str]:
    """The rules that declare a `gpu` resource in the workflow."""
    return {name for name, body in rule_bodies().items() if re.search(r"^\s+resources:\s*\n\s+gpu\s*=", body, re.M)}


def profile(monkeypatch, gpus: str | None = None) -> dict:
    """The profile as Snakemake reads it (yte evaluated), with SIMCON_SLURM_GPUS set to `gpus` or unset."""
    if gpus is None:
        monkeypatch.delenv("SIMCON_SLURM_GPUS", raising=False)
    else:
        monkeypatch.setenv("SIMCON_SLURM_GPUS", gpus)
    with PROFILE.open() as stream:
        return yte.process_yaml(stream, require_use_yte=True)


def test_the_rule_lists_are_read():
    assert {"subset", "features", "features_thingsvision", "probe", "similarity", "sample_size"} <= compute_rules()
    assert local_rules() and local_rules() <= set(rule_bodies())  # the aggregates, by their rule names
    assert "all" not in compute_rules()  # a target rule without an action runs in the main process
    assert CLUSTER_GPU_RULES <= gpu_rules()


def test_every_compute_rule_has_a_profile_entry(monkeypatch):
    settings = profile(monkeypatch)
    assert set(settings["set-resources"]) == compute_rules()  # no rule left to the defaults, no stale entry
    assert set(settings["set-threads"]) <= compute_rules()
    assert set(settings["groups"]) <= compute_rules()


@pytest.mark.parametrize("gpus", [None, "0", "1"])
def test_gpu_requests_follow_the_gpus_setting(monkeypatch, gpus):
    resources = profile(monkeypatch, gpus)["set-resources"]
    expected = 1 if gpus is None else int(gpus)  # one GPU unless SIMCON_SLURM_GPUS says otherwise
    for rule in compute_rules():
        assert resources[rule]["gpu"] == (expected if rule in CLUSTER_GPU_RULES else 0), rule
        if rule in CLUSTER_GPU_RULES and not expected:
            assert resources[rule]["gpu_model"] == "", rule


def test_grouped_jobs_run_one_at_a_time_in_their_group(monkeypatch):
    """Each job of a group takes the group job's one local `group_slot`, so a group job asks for its largest
    job's CPUs, memory and GPU (not their sum) whatever --cores is."""
    settings = profile(monkeypatch)
    assert settings["groups"] == {
        **{rule: GROUP for rule in GROUPED_RULES},
        "check_model": CHECKS,
        "check_layers": CHECKS,
        "check_dataset": CHECKS,
    }
    assert settings["group-components"] == {CHECKS: CHECKS_PER_JOB}
    assert settings["resources"] == {"group_slot": 1}
    assert settings["set-resource-scopes"] == {"group_slot": "local"}
    for rule in settings["groups"]:
        assert settings["set-resources"][rule]["group_slot"] == 1, rule


# Dry runs and submissions through the profile: Snakemake runs, hence the slow tier.


def dry_run(workdir: Path, configfile: Path) -> str:
    """`snakemake -n --profile slurm` (README's cluster command, dry) in the repository root; its output."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "8",
            "--profile",
            "slurm",
            "-d",
            str(workdir),
            "--configfile",
            str(configfile),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def submissions(output: str) -> tuple[Counter, list[list[tuple[str, str]]]]:
    """The sbatch jobs a dry run plans: their count per rule (a group counts as `group <name>`) and the jobs of
    each group as (rule, wildcards). A dry run prints a group job as a 'Group job NAME' header followed by its
    jobs, indented; an ungrouped job as an unindented 'rule NAME:' block. Local rules are left out."""
    counts: Counter = Counter()
    groups: list[list[tuple[str, str]]] = []
    local = local_rules() | {"all"}
    for line in output.splitlines():
        line = re.sub(r"^\[.*?\] ", "", line)
        if match := re.match(r"Group job (\w+) ", line):
            counts[f"group {match[1]}"] += 1
            groups.append([])
        elif match := re.match(r"rule (\w+):", line):
            if match[1] not in local:
                counts[match[1]] += 1
        elif match := re.match(r" {4}rule (\w+):", line):
            groups[-1].append((match[1], ""))
        elif match := re.match(r" {8}wildcards: (.*)", line):
            rule, _ = groups[-1][-1]
            groups[-1][-1] = (rule, match[1])
    return counts, groups


def parse_wildcards(text: str) -> dict[str, str]:
    """'dataset=a, model=b' (dry run) or 'dataset=a,model=b' (--target-jobs) as a dict."""
    return dict(item.strip().split("=", 1) for item in text.split(","))


def assert_one_group_per_model_and_dataset(groups: list[list[tuple[str, str]]], seeds: list[int]) -> None:
    """Each group holds one (model, dataset)'s feature job (of either backend) and its probe job of every seed."""
    pairs = set()
    for group in groups:
        jobs = [(rule, parse_wildcards(wildcards)) for rule, wildcards in group]
        (model,) = {wildcards["model"] for _, wildcards in jobs}
        (dataset,) = {wildcards["dataset"] for _, wildcards in jobs}
        rules = sorted(rule.replace("features_thingsvision", "features") for rule, _ in jobs)
        assert rules == ["features"] + ["probe"] * len(seeds), group
        assert sorted(int(wildcards["seed"]) for rule, wildcards in jobs if rule == "probe") == seeds, group
        pairs.add((model, dataset))
    assert len(pairs) == len(groups)


@pytest.mark.slow
def test_paper_config_submits_one_job_per_model_and_dataset_and_at_most_1600(tmp_path):
    """The paper's 64 models x 23 datasets x 3 seeds: 1,472 (model, dataset) groups instead of 5,888 jobs."""
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    counts, groups = submissions(dry_run(tmp_path, REPO / "config/paper.yaml"))
    pairs = len(config["models"]) * len(config["datasets"])
    checks = len(config["models"]) + len(config["datasets"])
    assert counts[f"group {GROUP}"] == pairs
    assert counts[f"group {CHECKS}"] == -(-checks // CHECKS_PER_JOB)  # 87 checks in 6 sbatch jobs
    assert not {"features", "probe", "check_model", "check_dataset"} & set(counts)
    # 1,472 groups + 23 subsets + 69 similarity + 23 sample_size + 6 check groups
    assert sum(counts.values()) <= 1600, counts
    feature_groups = [group for group in groups if group[0][0] in ("features", "probe")]
    assert_one_group_per_model_and_dataset(feature_groups, config["probe"]["seeds"])


FAKE_SBATCH = """#!/bin/sh
# Records its arguments, one call a line, and refuses the job: the submission is all the test wants.
echo "$*" >> "{calls}"
echo "sbatch: error: a fake sbatch" >&2
exit 1
"""


def group_jobs(call: str) -> list[tuple[str, str]]:
    """The jobs that an sbatch call of a group job runs, as (rule, wildcards), from its --target-jobs."""
    targets = re.search(r"--target-jobs ((?:'[^']*' ?)+)", call)[1]
    return [tuple(target.split(":", 1)) for target in re.findall(r"'([^']*)'", targets)]


@pytest.mark.slow
def test_a_group_job_requests_one_gpu_and_the_sum_of_its_runtimes(tmp_path):
    """The sbatch call of each (model, dataset) group with GPUs on: 1 GPU (its jobs take turns), its largest
    job's memory and CPUs, and the feature job's 60 minutes plus 30 for each of the three probes."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_SEEDS))
    subsets = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(config),
            "--until",
            "subset",
            "check_model",
            "check_dataset",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert subsets.returncode == 0, subsets.stderr[-3000:]  # the groups' inputs and checks, made locally
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "sbatch_calls.txt"
    (fake_bin / "sbatch").write_text(FAKE_SBATCH.format(calls=calls))
    (fake_bin / "sacct").write_text("#!/bin/sh\nexit 1\n")  # no account to guess
    # the plugin asks sinfo for the default partition; without sinfo a group job's submission fails inside the
    # plugin and the run waits forever (snakemake-executor-plugin-slurm: its error report of a group job fails)
    (fake_bin / "sinfo").write_text("#!/bin/sh\necho PARTITION\necho main*\n")
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "8",
            "--profile",
            "slurm",
            "-d",
            str(tmp_path),
            "--configfile",
            str(config),
            "--retries",
            "0",
            "--keep-going",
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--seconds-between-status-checks",
            "1",
        ],
        cwd=REPO,
        env={**os.environ, "SIMCON_SLURM_GPUS": "1", "PATH": f"{fake_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0  # every submission refused
    submitted = calls.read_text().splitlines()
    assert_one_group_per_model_and_dataset([group_jobs(call) for call in submitted], [0, 1, 2])
    assert len(submitted) == len(TINY["models"]) * len(TINY["datasets"]), result.stderr[-3000:]
    for call in submitted:
        assert re.search(r"(^| )--gpus=1( |$)", call), call
        assert re.search(r"(^| )-t '?150'?( |$)", call), call
        assert re.search(r"(^| )--mem 8000( |$)", call), call
        assert re.search(r"(^| )--cpus-per-gpu=4( |$)", call), call
        assert re.search(r"(^| )-p '?main'?( |$)", call), call  # sinfo's default partition
