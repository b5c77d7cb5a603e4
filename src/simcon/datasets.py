"""Image datasets and their stimulus subsets.

Sources: scikit-learn's digits, generated domains, image folders, CLIP-benchmark webdataset shards,
torchvision datasets from a local root, and the BREEDS tasks built from ImageNet.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
import re
import sys
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from simcon.dataset_sizes import IMAGE_SUFFIXES, is_image
from simcon.io import atomic_path
from simcon.scenes import draw_scene_of_shape
from simcon.vocabulary import GENERATED_CLASSES

SPLITS = ("train", "test")


class DatasetError(ValueError):
    """A dataset is missing, unreadable or unusable; the message names it."""


@dataclass(frozen=True)
class Split:
    """One split of a labelled image dataset: integer labels and a loader of RGB images by index."""

    labels: np.ndarray
    class_names: list[str]
    load_image: Callable[[int], Image.Image]

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- scikit-learn digits


def _digits_split(split: str) -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.25, stratify=digits.target, random_state=0
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    images, labels = pixels[idx], digits.target[idx].astype(np.int64)
    return Split(labels, [str(c) for c in range(10)], lambda i: Image.fromarray(images[i]).convert("RGB"))


# --------------------------------------------------------------------------- generated domains


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _draw_shape(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A single filled shape of random colour, size and position on a plain background."""
    image = Image.new("RGB", (size, size), _random_colour(rng, 0, 120))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.18, 0.32) * size
    cx, cy = rng.uniform(radius, size - radius, size=2)
    colour = _random_colour(rng, 130, 256)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if label == 0:
        draw.ellipse(box, fill=colour)
    elif label == 1:
        draw.rectangle(box, fill=colour)
    elif label == 2:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    elif label == 3:
        bar = radius / 3
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=colour)
    elif label == 4:
        draw.ellipse(box, outline=colour, width=max(2, int(radius / 3)))
    else:
        draw.polygon([(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)], fill=colour)
    return np.asarray(image)


def _draw_texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A full-frame periodic or random texture with random colours, frequency and phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    freq = rng.uniform(3, 8)
    phase = rng.uniform(0, 2 * np.pi)
    if label == 0:
        field = np.sin(2 * np.pi * freq * y + phase)
    elif label == 1:
        field = np.sin(2 * np.pi * freq * x + phase)
    elif label == 2:
        field = np.sin(2 * np.pi * freq * (x + y) / np.sqrt(2) + phase)
    elif label == 3:
        field = np.sign(np.sin(2 * np.pi * freq * x + phase) * np.sin(2 * np.pi * freq * y + phase))
    elif label == 4:
        field = np.cos(2 * np.pi * freq * x + phase) * np.cos(2 * np.pi * freq * y + phase)
        field = (field > 0.6).astype(np.float64) * 2 - 1
    else:
        field = rng.normal(size=(size, size))
    weight = ((field - field.min()) / (np.ptp(field) + 1e-12))[..., None]
    low, high = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    return (low + weight * (high - low)).astype(np.uint8)


def _draw_cells(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A fluorescence-microscopy-like field of blurred cells; the class is their morphology."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    field = np.zeros((size, size))
    count = {0: 3, 1: 14, 2: 4, 3: 8}[label] + int(rng.integers(0, 3))
    centre = rng.uniform(0.3, 0.7, size=2) * size
    for _ in range(count):
        if label == 3:
            cx, cy = centre + rng.normal(0, size * 0.08, size=2)
        else:
            cx, cy = rng.uniform(0.1, 0.9, size=2) * size
        radius = size * (0.035 if label == 1 else 0.07) * rng.uniform(0.8, 1.2)
        stretch = rng.uniform(2.5, 3.5) if label == 2 else 1.0
        angle = rng.uniform(0, np.pi)
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        field += np.exp(-((u / (radius * stretch)) ** 2 + (v / radius) ** 2))
    field = np.clip(field + rng.normal(0, 0.05, size=field.shape), 0, 1)
    tint = np.array([rng.uniform(0.2, 0.6), 1.0, rng.uniform(0.2, 0.8)])
    return (255 * field[..., None] * tint).astype(np.uint8)


GENERATED_DOMAINS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "shapes": _draw_shape,
    "textures": _draw_texture,
    "cells": _draw_cells,
    "scenes": draw_scene_of_shape,  # the model zoo's training domain, labelled by shape
}
"""The drawing of each generated domain's images (its classes: simcon.vocabulary.GENERATED_CLASSES)."""


def _generated_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    if spec["domain"] not in GENERATED_DOMAINS:
        raise DatasetError(
            f"dataset '{dataset_id}': unknown generated domain {spec['domain']!r}; known: {sorted(GENERATED_DOMAINS)}"
        )
    draw, class_names = GENERATED_DOMAINS[spec["domain"]], GENERATED_CLASSES[spec["domain"]]
    per_class = spec["train_per_class"] if split == "train" else spec["test_per_class"]
    size = spec["resolution"]
    rng = np.random.default_rng([spec["seed"], SPLITS.index(split)])
    labels = np.repeat(np.arange(len(class_names)), per_class)
    images = np.stack([draw(rng, int(label), size) for label in labels])
    return Split(labels.astype(np.int64), list(class_names), lambda i: Image.fromarray(images[i]))


# --------------------------------------------------------------------------- image folders


def _folder_classes(dataset_id: str, root: Path) -> list[str]:
    if not root.is_dir():
        raise DatasetError(f"dataset '{dataset_id}': folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return classes


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image(p))


def _folder_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    root = Path(spec["path"])
    class_names = _folder_classes(dataset_id, root / "train")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = root / split / name
        found = _image_files(folder) if folder.is_dir() else []
        if folder.is_dir() and not found:
            raise DatasetError(
                f"dataset '{dataset_id}': the {split} folder of class '{name}', {folder}, holds no images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); remove it or add images"
            )
        files += found
        labels += [label] * len(found)
    if split == "test":
        extra = set(_folder_classes(dataset_id, root / "test")) - set(class_names)
        if extra:
            raise DatasetError(f"dataset '{dataset_id}': test classes {sorted(extra)} have no train folder")

    def load(i: int) -> Image.Image:
        try:
            with Image.open(files[i]) as image:
                return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # unreadable, odd mode, too large
            raise DatasetError(f"dataset '{dataset_id}': cannot read image {files[i]}: {error}") from error

    return Split(np.asarray(labels, dtype=np.int64), class_names, load)


# --------------------------------------------------------------------------- CLIP-benchmark webdataset shards

WDS_IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
WDS_HOWTO = (
    "get the CLIP-benchmark shards with `huggingface-cli download --repo-type dataset clip-benchmark/{name} "
    "--local-dir {path}` (docs/datasets.md)"
)


def _wds_missing(dataset_id: str, root: Path, what: str) -> DatasetError:
    return DatasetError(f"dataset '{dataset_id}': {what}; " + WDS_HOWTO.format(name=root.name, path=root))


def _wds_shards(dataset_id: str, root: Path, split: str) -> list[Path]:
    """The split's tar shards in order: 0.tar … (n-1).tar as nshards.txt says, else every *.tar by number."""
    folder = root / split
    if not folder.is_dir():
        raise _wds_missing(dataset_id, root, f"shard folder {folder} does not exist")
    count_file = folder / "nshards.txt"
    if count_file.is_file():
        shards = [folder / f"{i}.tar" for i in range(int(count_file.read_text().strip()))]
    else:
        shards = sorted(folder.glob("*.tar"), key=lambda p: (len(p.stem), p.stem))
    missing = [s.name for s in shards if not s.is_file()]
    if not shards or missing:
        raise _wds_missing(dataset_id, root, f"{folder} lacks shards {missing or '*.tar'}")
    return shards


def _index_shard(dataset_id: str, shard: Path) -> list[tuple[int, int, int]]:
    """(byte offset, byte size, label) of every sample's image in one tar shard, in shard order."""
    samples: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, name = member.name.rpartition("/")
                stem, _, extension = name.partition(".")
                sample = samples.setdefault(f"{folder}/{stem}", {})
                if extension == "cls":
                    sample["label"] = int(tar.extractfile(member).read())
                elif extension.lower() in WDS_IMAGE_EXTENSIONS:
                    sample["image"] = (member.offset_data, member.size)
    except (OSError, tarfile.TarError, ValueError) as error:
        raise DatasetError(f"dataset '{dataset_id}': cannot read shard {shard}: {error}") from error
    incomplete = [key for key, sample in samples.items() if "image" not in sample or "label" not in sample]
    if incomplete:
        raise DatasetError(
            f"dataset '{dataset_id}': shard {shard} has samples without an image "
            f"({'/'.join(WDS_IMAGE_EXTENSIONS)}) or a .cls label, e.g. {incomplete[0]!r}"
        )
    return [(*sample["image"], sample["label"]) for sample in samples.values()]


def index_cache_dir() -> Path:
    """Where shard indices are cached: $SIMCON_CACHE_DIR/wds-index, default ~/.cache/simcon/wds-index."""
    return Path(os.environ.get("SIMCON_CACHE_DIR", Path.home() / ".cache" / "simcon")) / "wds-index"


def _shard_index(dataset_id: str, shard: Path) -> np.ndarray:
    """(offset, size, label) rows of a shard, cached by the shard's path, size and modification time: reading
    every tar header of ImageNet's train shards takes minutes on a network file system, and every job needs them."""
    stat = shard.stat()
    key = hashlib.sha1(f"{shard.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    cached = index_cache_dir() / f"{key}.npy"
    if cached.is_file():
        return np.load(cached)
    rows = np.asarray(_index_shard(dataset_id, shard), dtype=np.int64).reshape(-1, 3)
    try:
        with atomic_path(cached) as tmp:
            np.save(tmp, rows)
    except OSError as error:  # a read-only cache only costs time
        print(f"dataset '{dataset_id}': cannot cache the index of {shard} in {cached.parent}: {error}", file=sys.stderr)
    return rows


def _read_member(shard: Path, offset: int, size: int) -> bytes:
    with open(shard, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def _wds_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    root = Path(spec["path"])
    shards = _wds_shards(dataset_id, root, split)
    indices = [_shard_index(dataset_id, shard) for shard in tqdm(shards, desc=f"indexing {dataset_id} ({split})")]
    shard_of = np.repeat(np.arange(len(shards)), [len(index) for index in indices])
    offsets, sizes, labels = np.concatenate(indices).T
    if len(labels) == 0:
        raise _wds_missing(dataset_id, root, f"the shards of {root / split} hold no samples")
    names_file = root / "classnames.txt"
    if names_file.is_file():
        class_names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    else:
        class_names = [str(c) for c in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DatasetError(
            f"dataset '{dataset_id}': labels span {labels.min()}..{labels.max()} but {names_file} names "
            f"{len(class_names)} classes"
        )

    def load(i: int) -> Image.Image:
        shard = shards[shard_of[i]]
        try:
            with Image.open(io.BytesIO(_read_member(shard, offsets[i], sizes[i]))) as image:
                return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DatasetError(f"dataset '{dataset_id}': cannot read image {i} of {shard}: {error}") from error

    return Split(labels, class_names, load)


# --------------------------------------------------------------------------- torchvision datasets

# Constructor keywords of the train and test split where a dataset does not take split="train"/"test".
TORCHVISION_SPLITS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "CIFAR10": ({"train": True}, {"train": False}),
    "CIFAR100": ({"train": True}, {"train": False}),
    "MNIST": ({"train": True}, {"train": False}),
    "FashionMNIST": ({"train": True}, {"train": False}),
    "FGVCAircraft": ({"split": "trainval"}, {"split": "test"}),
    "OxfordIIITPet": ({"split": "trainval"}, {"split": "test"}),
    "ImageNet": ({"split": "train"}, {"split": "val"}),
}
TORCHVISION_LABEL_ATTRIBUTES = ("targets", "labels", "_labels", "y")


def _torchvision_class(name: str) -> Any:
    import torchvision.datasets

    return getattr(torchvision.datasets, name, None)


def _torchvision_kwargs(spec: Mapping[str, Any], split: str) -> dict[str, Any]:
    if split in spec.get("split_kwargs", {}):
        return dict(spec["split_kwargs"][split])
    train, test = TORCHVISION_SPLITS.get(spec["name"], ({"split": "train"}, {"split": "test"}))
    return dict(train if split == "train" else test)


def _torchvision_labels(dataset: Any) -> np.ndarray:
    """Every sample's label, from the dataset's label attribute where it has one, else by reading each sample."""
    for attribute in TORCHVISION_LABEL_ATTRIBUTES:
        if hasattr(dataset, attribute):
            return np.asarray(getattr(dataset, attribute), dtype=np.int64)
    if hasattr(dataset, "_samples"):
        return np.asarray([sample[1] for sample in dataset._samples], dtype=np.int64)
    return np.asarray([dataset[i][1] for i in tqdm(range(len(dataset)), desc="reading labels")], dtype=np.int64)


def _torchvision_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    name, root = spec["name"], spec["path"]
    dataset_class = _torchvision_class(name)
    if dataset_class is None:
        raise DatasetError(f"dataset '{dataset_id}': torchvision.datasets has no dataset named {name!r}")
    kwargs = _torchvision_kwargs(spec, split)
    downloads = "download" in inspect.signature(dataset_class).parameters
    if downloads:
        kwargs["download"] = False
    try:
        dataset = dataset_class(root, **kwargs)
    except (RuntimeError, OSError, ImportError, TypeError, ValueError) as error:
        arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        if downloads:
            fetch_arguments = arguments.replace("download=False", "download=True")
            how = (
                'get it on a machine with network: python -c "import torchvision; '
                f"torchvision.datasets.{name}('{root}', {fetch_arguments})\""
            )
        else:
            how = f"torchvision's {name} downloads nothing: put its files under {root} as its documentation says"
        raise DatasetError(
            f"dataset '{dataset_id}': torchvision {name}({arguments}) cannot load from {root}: {error}; {how}"
        ) from error
    labels = _torchvision_labels(dataset)
    classes = getattr(dataset, "classes", None) or range(int(labels.max()) + 1)
    class_names = [", ".join(c) if isinstance(c, tuple) else str(c) for c in classes]

    def load(i: int) -> Image.Image:
        try:
            return dataset[i][0].convert("RGB")
        except OSError as error:
            message = f"dataset '{dataset_id}': cannot read image {i} of torchvision {name}: {error}"
            raise DatasetError(message) from error

    return Split(labels, class_names, load)


# --------------------------------------------------------------------------- BREEDS (Santurkar et al., 2021)

BREEDS_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")
BREEDS_URL = "https://github.com/MadryLab/BREEDS-Benchmarks/tree/master/imagenet_class_hierarchy/modified"
BREEDS_ROOT = "n00001740"  # 'entity'
BREEDS_SEED = 2
# (level, ancestor, subclasses per superclass) of robustness.tools.breeds_helpers.make_entity30 etc.
BREEDS_TASKS: dict[str, tuple[int, str | None, int]] = {
    "entity30": (4, None, 8),
    "living17": (5, "n00004258", 4),
    "nonliving26": (5, "n00021939", 4),
}
WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class BreedsTask:
    """A BREEDS task: superclass names, and per superclass the ImageNet wnids of its source and target subclasses."""

    superclass_names: list[str]
    source: list[list[str]]
    target: list[list[str]]


class _Hierarchy:
    """The BREEDS class hierarchy restricted to the ancestors of the dataset's classes (its leaves)."""

    def __init__(self, folder: Path):
        class_info = json.loads((folder / "dataset_class_info.json").read_text())
        self.leaves = [wnid for _, wnid, _ in class_info]
        self.leaf_set = set(self.leaves)
        self.names = dict(
            line.split("\t", 1) for line in (folder / "node_names.txt").read_text().splitlines() if "\t" in line
        )
        parents_of: dict[str, list[str]] = {}
        for line in (folder / "class_hierarchy.txt").read_text().splitlines():
            if line.strip():
                parent, child = line.split()
                parents_of.setdefault(child, []).append(parent)
        self.children: dict[str, set[str]] = {}
        frontier = {leaf for leaf in self.leaves if leaf in parents_of}
        while frontier:  # upwards from the leaves: keep only edges that lead to a leaf
            upper = set()
            for node in frontier:
                for parent in parents_of.get(node, []):
                    self.children.setdefault(parent, set()).add(node)
                    upper.add(parent)
            frontier = upper
        self.level = self._longest_depths(BREEDS_ROOT)

    def _longest_depths(self, root: str) -> dict[str, int]:
        """Each node's depth below `root` along its longest path."""
        depth = {root: 0}
        for node in TopologicalSorter(self._parents()).static_order():
            if node in depth:
                for child in self.children.get(node, ()):
                    depth[child] = max(depth.get(child, 0), depth[node] + 1)
        return depth

    def _parents(self) -> dict[str, set[str]]:
        parents: dict[str, set[str]] = {}
        for parent, children in self.children.items():
            for child in children:
                parents.setdefault(child, set()).add(parent)
        return parents

    def descendants(self, node: str) -> set[str]:
        """`node` and every node below it."""
        found, frontier = {node}, [node]
        while frontier:
            frontier = [c for n in frontier for c in self.children.get(n, ()) if c not in found]
            found.update(frontier)
        return found

    def leaves_below(self, node: str) -> list[str]:
        """Sorted leaves reachable from `node`, not descending past a leaf; `node` itself if it is a leaf."""
        leaves, frontier = set(), [node]
        while frontier:
            below = [c for n in frontier for c in self.children.get(n, ())]
            leaves.update(c for c in below if c in self.leaf_set)
            frontier = [c for c in below if c not in self.leaf_set]
        if node in self.leaf_set:
            leaves.add(node)
        return sorted(leaves)


def breeds_task(folder: str | os.PathLike, task: str) -> BreedsTask:
    """The BREEDS task `task` (entity30, living17, nonliving26) from the BREEDS hierarchy files in `folder`.

    Follows robustness.tools.breeds_helpers (make_entity30 etc. with split="rand", balanced): superclasses are
    the nodes at the task's level (below its ancestor) with at least the task's number of subclasses; each
    superclass's subclasses are drawn at random (RandomState(2), one draw per superclass in wnid order) and
    split in half, the first half the source (train) domain, the second the target (test) domain.
    """
    level, ancestor, n_subclasses = BREEDS_TASKS[task]
    hierarchy = _Hierarchy(Path(folder))
    within = hierarchy.descendants(ancestor) if ancestor else None
    candidates = sorted(n for n, d in hierarchy.level.items() if d == level and (within is None or n in within))
    superclasses = [n for n in candidates if len(hierarchy.leaves_below(n)) >= n_subclasses]
    rng = np.random.RandomState(BREEDS_SEED)
    half = n_subclasses // 2
    source, target = [], []
    for superclass in superclasses:
        pool = sorted(leaf for child in hierarchy.children[superclass] for leaf in hierarchy.leaves_below(child))
        chosen = [str(w) for w in rng.choice(pool, 2 * half, replace=False)]
        source.append(chosen[:half])
        target.append(chosen[half:])
    return BreedsTask([hierarchy.names.get(n, n) for n in superclasses], source, target)


def _imagenet_wnids(dataset_id: str, split: Split, class_info: list[list[Any]]) -> list[str]:
    """The wnid of each of the ImageNet split's classes: its class names where they are wnids, else by class index."""
    if all(WNID.match(name) for name in split.class_names):
        return list(split.class_names)
    if len(split.class_names) == len(class_info):
        return [wnid for _, wnid, _ in sorted(class_info)]
    raise DatasetError(
        f"dataset '{dataset_id}': its ImageNet has {len(split.class_names)} classes that are not wnids; "
        f"expected wnid class names (n01440764, ...) or all {len(class_info)} classes in ImageNet's index order"
    )


def _breeds_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    if spec["task"] not in BREEDS_TASKS:
        raise DatasetError(
            f"dataset '{dataset_id}': unknown BREEDS task {spec['task']!r}; known: {sorted(BREEDS_TASKS)}"
        )
    folder = Path(spec["hierarchy"])
    missing = [name for name in BREEDS_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"dataset '{dataset_id}': BREEDS hierarchy files {missing} are missing in {folder}; "
            f"download {', '.join(BREEDS_FILES)} from {BREEDS_URL}"
        )
    task = breeds_task(folder, spec["task"])
    imagenet = load_split(dataset_id, spec["imagenet"], split)
    wnids = np.asarray(_imagenet_wnids(dataset_id, imagenet, json.loads((folder / BREEDS_FILES[0]).read_text())))
    domain = task.source if split == "train" else task.target
    superclass_of = {wnid: label for label, members in enumerate(domain) for wnid in members}
    image_wnids = wnids[imagenet.labels]
    indices = np.flatnonzero(np.isin(image_wnids, list(superclass_of)))
    labels = np.asarray([superclass_of[w] for w in image_wnids[indices]], dtype=np.int64)
    return Split(labels, task.superclass_names, lambda i: imagenet.load_image(int(indices[i])))


# --------------------------------------------------------------------------- k images per class


def per_class_subset(labels: np.ndarray, k: int, seed: int = 42) -> np.ndarray:
    """Sorted indices of k random samples of each class (all of a smaller class); nested: k < k' gives a subset."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def _per_class_split(split: Split, k: int) -> Split:
    indices = per_class_subset(split.labels, k)
    return Split(split.labels[indices], split.class_names, lambda i: split.load_image(int(indices[i])))


# --------------------------------------------------------------------------- public API


SOURCES: dict[str, Callable[[str, Mapping[str, Any], str], Split]] = {
    "sklearn_digits": lambda _id, _spec, split: _digits_split(split),
    "generated": _generated_split,
    "image_folder": _folder_split,
    "wds": _wds_split,
    "torchvision": _torchvision_split,
    "breeds": _breeds_split,
}


def load_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    """The `split` ("train" or "test") of the dataset configured as `spec`; a train split cut to
    `samples_per_class` images per class where the spec sets it."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if spec["source"] not in SOURCES:
        raise DatasetError(f"dataset '{dataset_id}': unknown source {spec['source']!r}; known: {sorted(SOURCES)}")
    data = SOURCES[spec["source"]](dataset_id, spec, split)
    if split == "train" and spec.get("samples_per_class"):
        data = _per_class_split(data, spec["samples_per_class"])
    return data


def check_dataset(dataset_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Raise DatasetError naming the dataset if it cannot be read (a missing folder, file or shard, an unknown
    torchvision class, BREEDS task or generated domain, a class folder of an image folder without images, test
    classes without a train folder), either split has images of fewer than two classes, or a class of the test
    split has no train images (the probe classifies into the train classes; the error names them); else the
    number of train and test images, of classes, and of train images per class by name. Reads the labels of both
    splits, not the images: the check job every features job waits for."""
    if spec["source"] == "image_folder" and not Path(spec["path"]).is_dir():
        raise DatasetError(
            f"dataset '{dataset_id}': path {spec['path']} does not exist "
            "(expected train/<class>/*.png and test/<class>/*.png)"
        )
    splits = {split: load_split(dataset_id, spec, split) for split in SPLITS}
    for split, data in splits.items():
        classes = len(np.unique(data.labels))
        if classes < 2:
            raise DatasetError(
                f"dataset '{dataset_id}': its {split} split has images of {classes} class(es); at least two are needed"
            )
    train, test = splits["train"], splits["test"]
    unseen = np.setdiff1d(test.labels, train.labels)
    if len(unseen):
        raise DatasetError(
            f"dataset '{dataset_id}': test class(es) {[test.class_names[c] for c in unseen]} have no train images; "
            "the linear probe classifies into the classes of the train split"
        )
    labels, counts = np.unique(train.labels, return_counts=True)
    return {
        "n_train": len(train),
        "n_test": len(test),
        "classes": len(train.class_names),
        "train_per_class": {train.class_names[label]: int(count) for label, count in zip(labels, counts)},
    }


def stratified_subset(labels: np.ndarray, max_samples: int, seed: int = 42) -> np.ndarray:
    """Sorted indices of at most ceil(max_samples / n_classes) samples per class; all indices if len(labels) <= max_samples."""
    labels = np.asarray(labels)
    if len(labels) <= max_samples:
        return np.arange(len(labels))
    return per_class_subset(labels, math.ceil(max_samples / len(np.unique(labels))), seed)
