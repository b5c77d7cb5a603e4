"""The paper's 23 datasets as config (Table 3), and Snakemake on datasets in the paper's formats."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO, TINY, make_wds, snakemake, write_hierarchy
from simcon.config import check_config, resolve_paths
from simcon.datasets import breeds_task

TABLE_3 = {
    "natural_multi_domain": {
        "caltech101",
        "cifar10",
        "cifar100",
        "country211",
        "imagenet1k",
        "stl10",
        "voc2007",
        "entity30",
        "living17",
        "nonliving26",
    },
    "natural_single_domain": {"cars", "fgvc_aircraft", "flowers", "gtsrb", "pets", "svhn"},
    "specialized": {"diabetic_retinopathy", "eurosat", "pcam", "resisc45"},
    "structured": {"fer2013", "dmlab", "dtd"},
}
TWO_MODELS = {model: TINY["models"][model] for model in ("resnet18_random", "vit_random")}


def read_config(name: str) -> dict:
    """The dataset options (data_root, datasets, metrics) of a config file under config/, without its models."""
    config = yaml.safe_load((REPO / "config" / name).read_text())
    return {key: config[key] for key in ("data_root", "datasets", "metrics") if key in config}


def checked(config: dict) -> dict:
    """The config as the workflow sees it: schema defaults, resolved paths, check_config."""
    config = {"models": copy.deepcopy(TWO_MODELS), **copy.deepcopy(config)}
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    config["datasets"] = {d: resolve_paths(spec, config["data_root"]) for d, spec in config["datasets"].items()}
    check_config(config)
    return config


def test_paper_datasets_are_table_3_with_its_categories():
    datasets = read_config("paper.yaml")["datasets"]
    assert len(datasets) == 23
    by_category = {c: {d for d, spec in datasets.items() if spec["category"] == c} for c in TABLE_3}
    assert by_category == TABLE_3


def test_paper_datasets_pass_the_checks_without_any_data():
    config = checked(read_config("paper.yaml"))
    datasets = config["datasets"]
    assert all(spec["max_samples"] == 10000 for spec in datasets.values())
    wds = {d: Path(spec["path"]) for d, spec in datasets.items() if spec["source"] == "wds"}
    assert len(wds) == 20 and all(
        path.name.startswith("wds_") and path.parent == Path("data/wds") for path in wds.values()
    )
    breeds = {d: spec for d, spec in datasets.items() if spec["source"] == "breeds"}
    assert {spec["task"] for spec in breeds.values()} == {"entity30", "living17", "nonliving26"}
    assert all(spec["imagenet"]["path"] == datasets["imagenet1k"]["path"] for spec in breeds.values())


def test_appendix_c_subsets_take_k_images_per_imagenet_class_whole():
    config = checked(read_config("paper-appendix-c.yaml"))
    datasets = config["datasets"]
    assert sorted(spec["samples_per_class"] for spec in datasets.values()) == [1, 5, 10, 20, 30, 40]
    assert all(spec["max_samples"] >= 1000 * spec["samples_per_class"] for spec in datasets.values())
    assert {spec["path"] for spec in datasets.values()} == {"data/wds/wds_imagenet1k"}
    assert config["metrics"][-1] == "cka_linear_unbiased" and len(config["metrics"]) == 5


# --------------------------------------------------------------------------- Snakemake


@pytest.mark.slow
@pytest.mark.workflow
def test_paper_datasets_plan_offline_without_any_data(tmp_path):
    config = {**read_config("paper.yaml"), "models": TWO_MODELS, "data_root": str(tmp_path / "absent")}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = dict(re.findall(r"^(subset|features)\s+(\d+)$", result.stdout, flags=re.M))
    assert jobs == {"subset": "23", "features": "46"}


@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_runs_on_wds_shards_and_a_breeds_task(tmp_path):
    """Similarity matrices of a webdataset-shard dataset and of a BREEDS task built from ImageNet-like shards."""
    root = tmp_path / "data"
    make_wds(
        root / "wds_toy", "train", [c for c in range(3) for _ in range(8)], per_shard=10, classnames=["a", "b", "c"]
    )
    make_wds(root / "wds_toy", "test", [c for c in range(3) for _ in range(3)], per_shard=10)
    leaves = [f"n0{5000000 + i:07d}" for i in range(8)]
    edges = [
        ("n00001740", "n00004258"),
        ("n00004258", "n01000001"),
        ("n01000001", "n01000002"),
        ("n01000002", "n01000003"),
        ("n01000003", "n02000001"),
        ("n01000003", "n02000002"),
    ]
    edges += [("n02000001", w) for w in leaves[:4]] + [("n02000002", w) for w in leaves[4:]]
    write_hierarchy(root / "breeds", edges, leaves, {"n02000001": "cats", "n02000002": "dogs"})
    per_leaf = [label for label in range(8) for _ in range(5)]
    make_wds(root / "wds_imagenet1k", "train", per_leaf, per_shard=16, classnames=[str(i) for i in range(8)])
    make_wds(root / "wds_imagenet1k", "test", per_leaf, per_shard=16)
    config = {
        "data_root": str(root),
        "image_size": 32,
        "batch_size": 16,
        "device": "cpu",
        "metrics": ["cka_linear_unbiased"],
        "models": TWO_MODELS,
        "datasets": {
            "toy": {"source": "wds", "path": "wds_toy", "category": "structured"},
            "living": {
                "source": "breeds",
                "task": "living17",
                "hierarchy": "breeds",
                "imagenet": {"source": "wds", "path": "wds_imagenet1k"},
                "category": "natural_multi_domain",
                "max_samples": 16,
            },
        },
    }
    targets = ["results/similarity/toy/cka_linear_unbiased.csv", "results/similarity/living/cka_linear_unbiased.csv"]
    result = snakemake(tmp_path, config, *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    task = breeds_task(root / "breeds", "living17")
    assert task.superclass_names == ["cats", "dogs"]
    features = tmp_path / "results/features/living/vit_random"
    subset = json.loads((tmp_path / "results/subsets/living.json").read_text())
    train_labels = np.load(features / "train_labels.npy")
    assert np.bincount(train_labels).tolist() == [10, 10]  # source subclasses: 2 x 5 images each, all extracted
    assert np.bincount(train_labels[subset["indices"]]).tolist() == [8, 8]  # max_samples 16: 8 of each superclass's 10
    assert np.bincount(np.load(features / "test_labels.npy")).tolist() == [10, 10]  # target subclasses: 2 x 5 each
    for name in ("toy", "living"):
        matrix = pd.read_csv(tmp_path / f"results/similarity/{name}/cka_linear_unbiased.csv", index_col=0)
        assert sorted(matrix.index) == sorted(TWO_MODELS) and np.allclose(np.diag(matrix), 1.0)
