"""Runs with less than some analyses need (one dataset, one model, two models, classes too few or too small)
complete and build their report: each analysis that needs more writes placeholders that say what it needs, with a
line in its job's log and in the report, and no undefined statistic is written as a number."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, make_image_folder, snakemake
from simcon.needs import SKIPPED_COLUMN
from test_report import decoded, embedded_results

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

METRIC = "cka_linear_unbiased"
# A fourth model: four models make the case that crashed the permutation test on one dataset.
RESNET_B = {**TINY["models"]["resnet18_random"], "init_seed": 1}
# What the job logs of a skipped analysis say, per rule.
SKIP_LINE = r"^{rule} skipped: (needs at least .*)$"
# A number that is not one: an undefined statistic written as a value.
NOT_A_NUMBER = re.compile(r"(?<!\w)-?\.?(nan|inf|infinity)(?!\w)", flags=re.IGNORECASE)


def small_config(datasets: list[str], models: list[str]) -> dict:
    """TINY with only these datasets and models (`resnet18_random_b` another untrained ResNet-18)."""
    config = copy.deepcopy(TINY)
    every = {**TINY["models"], "resnet18_random_b": RESNET_B}
    config["models"] = {model: copy.deepcopy(every[model]) for model in models}
    config["datasets"] = {dataset: TINY["datasets"][dataset] for dataset in datasets}
    return config


def run_with_report(workdir: Path, config: dict) -> str:
    """Run the config and build its report; the report's HTML."""
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-5000:]
    report = snakemake(workdir, config, "--report", str(workdir / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    return (workdir / "report.html").read_text()


def skipped(workdir: Path) -> dict[str, set[str]]:
    """The reasons of every skipped job, by rule, from the job logs."""
    reasons: dict[str, set[str]] = {}
    for log in (workdir / "logs").rglob("*.log"):
        rule = log.relative_to(workdir / "logs").parts[0].removesuffix(".log")
        for reason in re.findall(SKIP_LINE.format(rule=rule), log.read_text(), flags=re.M):
            reasons.setdefault(rule, set()).add(reason)
    return reasons


def assert_no_undefined_number(workdir: Path) -> None:
    """No table, JSON or page of the run holds NaN or infinity written as a value (empty cells, null are fine)."""
    for path in (workdir / "results").rglob("*"):
        if path.suffix in (".csv", ".json", ".html", ".yaml"):
            found = NOT_A_NUMBER.search(path.read_text())
            assert found is None, f"{path}: {found.group(0)!r}"


def assert_skipped_in_report(report: str, reasons: dict[str, set[str]]) -> None:
    """The report's captions give the reason of every skipped analysis."""
    for rule, said in reasons.items():
        for reason in said:
            assert f"<strong>Skipped</strong>: this analysis {reason}." in report, rule


def test_one_dataset_with_four_models_and_one_model_with_layers(tmp_path):
    """The first experiment of many: one dataset. Nothing that compares datasets runs, the rest does."""
    config = small_config(["shapes"], ["lite0", "resnet18_random", "vit_random", "resnet18_random_b"])
    config["models"]["resnet18_random"]["layers"] = ["layer2"]
    report = run_with_report(tmp_path, config)
    reasons = skipped(tmp_path)
    one_dataset = "needs at least 2 datasets; this run has 1 dataset"
    expected = {
        rule: {one_dataset}
        for rule in (
            "mean_vs_std",
            "dataset_pairs",
            "headline_consistency",
            "consistency",
            "consistency_matrices",
            "permutation_test",
        )
    }
    expected |= {
        "metric_means": {"needs at least 2 metrics; this run has 1 metric"},
        "consistency_anchors": {
            "needs at least 2 datasets and 1 anchor model; this run has 1 dataset and 0 anchor models"
        },
        "consistency_bootstrap": {"needs at least 3 datasets; this run has 1 dataset"},
        "consistency_metrics": {"needs at least 2 datasets and 2 metrics; this run has 1 dataset and 1 metric"},
        "layer_best_pairs": {"needs at least 2 models with layers; this run has 1 model with layers"},
        "layer_consistency": {
            "needs at least 2 datasets and 3 models with layers; this run has 1 dataset and 1 model with layers"
        },
    }
    assert reasons == expected
    assert_skipped_in_report(report, reasons)
    table = pd.read_csv(tmp_path / f"results/consistency/{METRIC}/consistency.csv")
    assert table.to_dict("list") == {SKIPPED_COLUMN: [f"consistency skipped: {one_dataset}"]}
    assert_no_undefined_number(tmp_path)
    figures = tmp_path / "results/figures" / METRIC
    for name in ("similarity_matrices", "tsne", "similarity_vs_gap", "layer_grids/shapes"):  # these ran
        assert (figures / f"{name}.png").stat().st_size > 30_000, name
    assert len(pd.read_csv(tmp_path / "results/performance.csv")) == 4


def test_one_model(tmp_path):
    report = run_with_report(tmp_path, small_config(["shapes", "cells"], ["resnet18_random"]))
    reasons = skipped(tmp_path)
    assert reasons["mean_vs_std"] == reasons["sample_size"] == {"needs at least 2 models; this run has 1 model"}
    assert reasons["consistency"] == reasons["tsne"] == {"needs at least 3 models; this run has 1 model"}
    assert reasons["permutation_test"] == {"needs at least 4 models; this run has 1 model"}
    assert "similarity_matrices" not in reasons and "performance" not in reasons
    assert_skipped_in_report(report, reasons)
    assert_no_undefined_number(tmp_path)
    matrix = pd.read_csv(tmp_path / f"results/similarity/shapes/{METRIC}.csv", index_col=0)
    assert matrix.to_numpy().tolist() == [[pytest.approx(1.0)]]


def test_two_models(tmp_path):
    report = run_with_report(tmp_path, small_config(["shapes", "cells"], ["lite0", "resnet18_random"]))
    reasons = skipped(tmp_path)
    assert reasons["consistency"] == reasons["dataset_pairs"] == {"needs at least 3 models; this run has 2 models"}
    assert "mean_vs_std" not in reasons and "sample_size" not in reasons  # one model pair is enough for these
    assert_skipped_in_report(report, reasons)
    assert_no_undefined_number(tmp_path)
    table = pd.read_csv(tmp_path / f"results/figures/{METRIC}/mean_vs_std.csv")
    assert table[["model_a", "model_b"]].drop_duplicates().values.tolist() == [["lite0", "resnet18_random"]]


def test_classes_one_too_few_for_top5_and_a_class_too_small_for_two_sample_sizes(tmp_path):
    """An image folder of 5 classes (top-5 needs 6), the smallest of 4 images (App. C's sample sizes 1 and 5 need
    5): the probes leave top-5 empty, and the sample-size analysis of that dataset, which the job decides from its
    labels, writes placeholders; the other dataset's runs."""
    classes = {"ant": 4, "bee": 6, "cat": 6, "dog": 6, "eel": 6}
    folder = make_image_folder(tmp_path / "photos", classes)
    config = small_config(["shapes"], ["lite0", "resnet18_random", "vit_random"])
    config["datasets"]["photos"] = {"source": "image_folder", "path": str(folder), "category": "natural_multi_domain"}
    report = run_with_report(tmp_path, config)
    log = (tmp_path / "logs/sample_size/photos.log").read_text()
    reason = re.search(SKIP_LINE.format(rule="sample_size"), log, flags=re.M).group(1)
    assert "[1] of them here, where the smallest class of the similarity subset has 4 images" in reason
    assert "skipped" not in (tmp_path / "logs/sample_size/shapes.log").read_text()
    assert pd.read_csv(tmp_path / "results/figures/sample_size/photos.csv")[SKIPPED_COLUMN].tolist() == [
        f"sample_size skipped: {reason}"
    ]
    results = embedded_results(report)
    assert reason in decoded(results["results/figures/sample_size/photos.csv"]["data_uri"]).decode()
    performance = pd.read_csv(tmp_path / "results/performance.csv").set_index(["dataset", "model"])
    assert performance.loc["photos", "top5"].isna().all() and performance.loc["shapes", "top5"].notna().all()
    probe = json.loads((tmp_path / "results/probes/photos/lite0/seed0.json").read_text())
    assert probe["top5"] is None
    assert_no_undefined_number(tmp_path)
    assert pd.read_csv(tmp_path / f"results/consistency/{METRIC}/consistency.csv")["rho"].notna().any()
