"""Shared fixtures: small image folders, webdataset shards, BREEDS hierarchy files and the repository root;
the skipping of CUDA-only tests where there is no GPU."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
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
