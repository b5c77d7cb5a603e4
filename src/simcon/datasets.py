"""Image datasets (scikit-learn's digits, generated domains, image folders) and their stimulus subsets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from simcon.scenes import SHAPES, draw_scene_of_shape

SPLITS = ("train", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


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


GENERATED_DOMAINS: dict[str, tuple[Callable[[np.random.Generator, int, int], np.ndarray], list[str]]] = {
    "shapes": (_draw_shape, ["circle", "square", "triangle", "cross", "ring", "diamond"]),
    "textures": (_draw_texture, ["horizontal", "vertical", "diagonal", "checker", "dots", "noise"]),
    "cells": (_draw_cells, ["sparse", "dense_small", "elongated", "clustered"]),
    "scenes": (draw_scene_of_shape, list(SHAPES)),  # the model zoo's training domain, labelled by shape
}


def _generated_split(spec: Mapping[str, Any], split: str) -> Split:
    draw, class_names = GENERATED_DOMAINS[spec["domain"]]
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
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    root = Path(spec["path"])
    class_names = _folder_classes(dataset_id, root / "train")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = root / split / name
        found = _image_files(folder) if folder.is_dir() else []
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
        except OSError as error:
            raise DatasetError(f"dataset '{dataset_id}': cannot read image {files[i]}: {error}") from error

    return Split(np.asarray(labels, dtype=np.int64), class_names, load)


# --------------------------------------------------------------------------- public API


def load_split(dataset_id: str, spec: Mapping[str, Any], split: str) -> Split:
    """The `split` ("train" or "test") of the dataset configured as `spec`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = spec["source"]
    if source == "sklearn_digits":
        return _digits_split(split)
    if source == "generated":
        return _generated_split(spec, split)
    if source == "image_folder":
        return _folder_split(dataset_id, spec, split)
    raise DatasetError(f"dataset '{dataset_id}': unknown source {source!r}")


def check_dataset(dataset_id: str, spec: Mapping[str, Any]) -> None:
    """Raise DatasetError naming the dataset if it is missing, or any split has fewer than two classes with images."""
    if spec["source"] == "generated" and spec["domain"] not in GENERATED_DOMAINS:
        raise DatasetError(
            f"dataset '{dataset_id}': unknown generated domain {spec['domain']!r}; "
            f"known: {sorted(GENERATED_DOMAINS)}"
        )
    if spec["source"] != "image_folder":
        return
    root = Path(spec["path"])
    if not root.is_dir():
        raise DatasetError(
            f"dataset '{dataset_id}': path {root} does not exist "
            "(expected train/<class>/*.png and test/<class>/*.png)"
        )
    for split in SPLITS:
        classes = _folder_classes(dataset_id, root / split)
        populated = [c for c in classes if _image_files(root / split / c)]
        if len(populated) < 2:
            raise DatasetError(
                f"dataset '{dataset_id}': {root / split} has {len(populated)} class folder(s) with images; "
                "at least two are needed"
            )


def stratified_subset(labels: np.ndarray, max_samples: int, seed: int = 42) -> np.ndarray:
    """Sorted indices of at most ceil(max_samples / n_classes) samples per class; all indices if len(labels) <= max_samples."""
    labels = np.asarray(labels)
    if len(labels) <= max_samples:
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = math.ceil(max_samples / len(classes))
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(members, size=min(per_class, len(members)), replace=False)
        for members in (np.flatnonzero(labels == c) for c in classes)
    ]
    return np.sort(np.concatenate(chosen))
