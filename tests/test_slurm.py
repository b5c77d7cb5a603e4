"""The SLURM profile on a real cluster: `snakemake --profile slurm` typed in the repository root.

Skips where no SLURM cluster answers `sinfo`; fails instead when SIMCON_REQUIRE_SLURM=1 (CI, which
starts a one-node cluster with .ci/slurm-up.sh). The test cluster has no GPU and no accounting
database, hence SIMCON_SLURM_GPUS=0 and the squeue status command (see docs/cluster.md).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, job_counts, snakemake
from test_slurm_profile import CHECKS, CHECKS_PER_JOB, GROUP, assert_one_group_per_model_and_dataset

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

# What goes through sbatch: the check jobs' groups, subsets, (model, dataset) groups, similarities; the aggregates
# are localrules
SBATCH_RULES = {f"group_{CHECKS}", "subset", f"group_{GROUP}", "similarity", "sample_size"}

TEST_CLUSTER_ARGS = [
    "--slurm-status-command",
    "squeue",  # no slurmdbd: sacct knows no jobs
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--max-threads",
    "1",  # two 1-CPU jobs at once on a 2-CPU node
    "--seconds-between-status-checks",
    "2",  # short jobs: notice finished ones sooner
]
FLAKY_SNAKEFILE = """
rule all:
    input: "flaky.txt", "broken.txt"

rule flaky:  # fails on its first attempt only, after writing part of its output
    output: "flaky.txt"
    shell: "if [ -e first_attempt ]; then echo done > {output}; else touch first_attempt; echo partial > {output}; exit 1; fi"

rule broken:  # fails on every attempt, after writing part of its output
    output: "broken.txt"
    shell: "echo partial > {output}; exit 1"
"""


def slurm_answers() -> bool:
    """Whether a SLURM controller answers `sinfo`."""
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    if slurm_answers():
        return
    if os.environ.get("SIMCON_REQUIRE_SLURM") == "1":
        pytest.fail("SIMCON_REQUIRE_SLURM=1 but no SLURM cluster answers sinfo (start one with .ci/slurm-up.sh)")
    pytest.skip("no SLURM cluster answers sinfo")


def slurm_command(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> list[str]:
    """docs/cluster.md's `snakemake --cores 8 --profile slurm`, run in `workdir`, keeping every SLURM job's log."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "8",
        "--profile",
        "slurm",
        "-s",
        str(snakefile),
        "-d",
        str(workdir),
        *TEST_CLUSTER_ARGS,
        "--slurm-logdir",
        str(workdir / "slurm_logs"),
        "--slurm-keep-successful-logs",
        *args,
    ]


def slurm_env() -> dict[str, str]:
    """This environment with GPU requests off unless the caller asked for them."""
    return {"SIMCON_SLURM_GPUS": "0", **os.environ}


def run_slurm(
    workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile", timeout: int = 1200
) -> subprocess.CompletedProcess:
    """Run Snakemake through the slurm profile from the repository root, where `slurm` is the profile."""
    return subprocess.run(
        slurm_command(workdir, *args, snakefile=snakefile),
        cwd=REPO,
        env=slurm_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sbatch_jobs(workdir: Path) -> dict[str, int]:
    """SLURM jobs per rule, or per group as `group_NAME`, counted from the logs that sbatch's --output wrote
    (the plugin names a group's folder group_NAME_RULES, RULES the rules of the jobs it runs)."""
    counts: Counter = Counter()
    for folder in (workdir / "slurm_logs").iterdir():
        name = folder.name.removeprefix("rule_")
        group = next((f"group_{group}" for group in (GROUP, CHECKS) if name.startswith(f"group_{group}_")), name)
        counts[group] += len(list(folder.rglob("*.log")))
    return dict(counts)


def jobs_run_by(log: Path) -> list[tuple[str, str]]:
    """The jobs that the Snakemake inside one SLURM job ran, as (rule, wildcards), from its sbatch log."""
    return re.findall(r"^\s*rule (\w+):\n(?:\s+\w+:.*\n)*?\s+wildcards: (.*)$", log.read_text(), flags=re.M)


def queued_jobs(workdir: Path) -> list[str]:
    """Ids of the jobs of `workdir` that SLURM still has pending or running."""
    listing = subprocess.run(
        ["squeue", "-h", "-t", "PD,R,CG", "-o", "%i %Z"], check=True, capture_output=True, text=True
    ).stdout
    return [line.split()[0] for line in listing.splitlines() if line.split()[1] == str(workdir)]


def start_slurm(workdir: Path, log: Path, *args: str) -> subprocess.Popen:
    """Start `slurm_command` in the background, its output to `log`, with Ctrl-C (SIGINT) handled as in a
    terminal even where this process ignores it (a background job of a non-interactive shell, whose children
    would inherit the ignoring and never see `interrupt`)."""
    with log.open("w") as output:
        return subprocess.Popen(
            slurm_command(workdir, *args),
            cwd=REPO,
            env=slurm_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def interrupt(run: subprocess.Popen, log: Path) -> None:
    """Ctrl-C: Snakemake says so and scancels its jobs; wait for it to exit."""
    run.send_signal(signal.SIGINT)
    run.wait(timeout=300)
    assert "Terminating processes on user request" in log.read_text(), log.read_text()[-3000:]


def test_profile_resolves_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "8", "--profile", "slurm"],
        cwd=REPO,
        env=slurm_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in result.stderr


def test_cancelled_run_resumes_and_matches_a_local_run(tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    local.mkdir()
    cluster.mkdir()
    reference = snakemake(local, TINY)
    assert reference.returncode == 0, reference.stderr[-3000:]

    config = cluster / "config.yaml"
    config.write_text(yaml.safe_dump(TINY))
    features = [
        cluster / f"results/features/{dataset}/{model}/info.json"
        for dataset in TINY["datasets"]
        for model in TINY["models"]
    ]
    first_log = tmp_path / "first_run.log"
    first = start_slurm(cluster, first_log, "--configfile", str(config))
    deadline = time.monotonic() + 600
    while first_log.read_text().count("(Rule: features)") < 2 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(1)  # until Snakemake has seen two feature jobs finish: it deletes the outputs of running ones
    interrupt(first, first_log)
    if leftover := queued_jobs(cluster):
        subprocess.run(["scancel", *leftover], check=True)  # whatever Ctrl-C left behind
    deadline = time.monotonic() + 60
    while queued_jobs(cluster) and time.monotonic() < deadline:
        time.sleep(1)  # cancelled jobs pass through COMPLETING
    done = {path: path.stat().st_mtime_ns for path in features if path.exists()}
    # Cut off mid-run: at least two feature files, not every output (on a busy machine the other
    # feature jobs may finish before Ctrl-C lands; the probes and aggregates are then the ones cut off).
    assert len(done) >= 2 and not (cluster / "results/performance.csv").exists(), first_log.read_text()[-5000:]
    assert not queued_jobs(cluster)

    rerun = run_slurm(cluster, "--configfile", str(config))
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert job_counts(rerun.stdout + rerun.stderr).get("features", 0) == 6 - len(done)
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in done.items())

    jobs = sbatch_jobs(cluster)
    assert set(jobs) == SBATCH_RULES
    assert jobs[f"group_{GROUP}"] >= 6 and jobs["similarity"] >= 2  # cancelled jobs left logs too
    for dataset in TINY["datasets"]:
        expected = pd.read_csv(local / f"results/similarity/{dataset}/cka_linear_unbiased.csv", index_col=0)
        actual = pd.read_csv(cluster / f"results/similarity/{dataset}/cka_linear_unbiased.csv", index_col=0)
        pd.testing.assert_frame_equal(actual, expected, rtol=0, atol=1e-6)
    for probe in (local / "results/probes").rglob("*.json"):
        expected = yaml.safe_load(probe.read_text())
        actual = yaml.safe_load((cluster / probe.relative_to(local)).read_text())
        assert actual["top1"] == pytest.approx(expected["top1"], abs=1e-9)
    performance = [pd.read_csv(folder / "results/performance.csv") for folder in (local, cluster)]
    np.testing.assert_allclose(performance[1]["top1"], performance[0]["top1"], atol=1e-9)


def test_default_experiment_through_slurm_equals_a_local_run(tmp_path):
    """docs/cluster.md's cluster command on the default config: every compute job goes through sbatch, one SLURM
    job per (model, dataset) runs its feature job and its probes of every seed (the profile's group), and every
    similarity matrix and probe accuracy equals the one of a local `snakemake --cores 2` run.

    The two runs go one after the other (about 6 and 16 minutes on an idle machine): side by side on 2 cores
    their torch threads oversubscribe the CPUs, and both slow down more than they overlap."""
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    local.mkdir()
    cluster.mkdir()
    reference = snakemake(local, default, timeout=1800)
    assert reference.returncode == 0, reference.stderr[-3000:]
    planned = job_counts(reference.stdout + reference.stderr)

    result = run_slurm(cluster, "--configfile", str(REPO / "config/config.yaml"), timeout=2700)
    assert result.returncode == 0, result.stderr[-5000:]
    jobs = sbatch_jobs(cluster)
    assert set(jobs) == SBATCH_RULES
    planned[f"group_{GROUP}"] = planned["features"]  # one group job per (model, dataset)
    planned[f"group_{CHECKS}"] = -(-(planned["check_model"] + planned["check_dataset"]) // CHECKS_PER_JOB)
    assert all(jobs[rule] >= planned[rule] for rule in jobs), (jobs, planned)  # retries add logs, never remove
    logs = sorted((cluster / "slurm_logs").glob(f"group_{GROUP}_*/**/*.log"))
    assert_one_group_per_model_and_dataset([jobs_run_by(log) for log in logs], default["probe"]["seeds"])

    # The local run's config went through yaml.safe_dump, which sorts the model ids: compare by id.
    matrices = [path for path in (local / "results/similarity").rglob("*.csv") if not path.name.endswith(".long.csv")]
    assert len(matrices) == len(default["datasets"]) * len(default["metrics"])
    for expected_path in matrices:
        expected = pd.read_csv(expected_path, index_col=0)
        actual = pd.read_csv(cluster / expected_path.relative_to(local), index_col=0)
        pd.testing.assert_frame_equal(actual.loc[expected.index, expected.columns], expected, rtol=0, atol=1e-6)
    performance = [
        pd.read_csv(folder / "results/performance.csv").sort_values(["dataset", "model"], ignore_index=True)
        for folder in (local, cluster)
    ]
    assert len(performance[0]) == len(default["models"]) * len(default["datasets"])
    pd.testing.assert_frame_equal(performance[1], performance[0], rtol=0, atol=1e-9)
    for figure in (local / "results/figures").rglob("*.png"):
        assert (cluster / figure.relative_to(local)).stat().st_size > 0


def test_failed_job_is_retried_and_leaves_no_partial_output(tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(FLAKY_SNAKEFILE)
    result = run_slurm(tmp_path, "--keep-going", snakefile=snakefile)
    assert result.returncode != 0
    assert (tmp_path / "flaky.txt").read_text() == "done\n"
    assert not (tmp_path / "broken.txt").exists()
    assert sbatch_jobs(tmp_path) == {"flaky": 2, "broken": 3}  # retries: 2 in profiles/slurm
    assert "Error in rule broken" in result.stdout + result.stderr
