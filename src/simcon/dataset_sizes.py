"""The sizes of a dataset's train split that are known before any job runs: from the config alone (generated
domains, scikit-learn's digits) or by counting an image folder's files (no image is opened), and the size of the
similarity subset drawn from it (simcon.datasets.stratified_subset).

Torch- and PIL-free: the workflow's parse-time checks (simcon.config.check_sample_sizes) use it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simcon.vocabulary import GENERATED_CLASSES

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""The file suffixes (any case) of the images of an image folder."""

DIGITS_TRAIN_PER_CLASS: tuple[int, ...] = (133, 136, 133, 137, 136, 136, 136, 134, 131, 135)
"""Images of each digit 0-9 in the train split of scikit-learn's digits (simcon.datasets: a stratified 75 %)."""


def is_image(path: str | os.PathLike) -> bool:
    """Whether a file of an image folder is an image, by its suffix."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def count_images(folder: str | os.PathLike, limit: int | None = None) -> int:
    """The number of images in `folder` (not below it), counting at most `limit`; 0 if it is no folder."""
    count = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                count += is_image(entry.name)
                if limit is not None and count >= limit:
                    break
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return count


def train_class_counts(spec: Mapping[str, Any], capped: bool = False) -> dict[str, int] | None:
    """Images of each class of a dataset's train split, before `samples_per_class` cuts it: from the config for
    generated domains and digits, by counting the files of an image folder; None where they are unknown before
    a job reads the dataset (other sources, an image folder that does not exist yet).

    `capped` counts each class of an image folder up to max(2, ceil(max_samples / classes)) images, about
    max_samples files in all however large the folder: the counts, and the sizes subset_size and the probe's
    split take from them, are then at most the true ones, and settle a check that they pass."""
    if spec["source"] == "generated":
        return dict.fromkeys(GENERATED_CLASSES[spec["domain"]], spec["train_per_class"])
    if spec["source"] == "sklearn_digits":
        return {str(digit): count for digit, count in enumerate(DIGITS_TRAIN_PER_CLASS)}
    if spec["source"] != "image_folder" or not (Path(spec["path"]) / "train").is_dir():
        return None
    train = Path(spec["path"]) / "train"
    classes = sorted(entry.name for entry in os.scandir(train) if entry.is_dir())
    limit = max(2, math.ceil(spec["max_samples"] / len(classes))) if capped and classes else None
    return {name: count_images(train / name, limit) for name in classes}


def cut_counts(counts: Mapping[str, int], samples_per_class: int | None) -> dict[str, int]:
    """The class counts after load_split's cut of the train split to `samples_per_class` images per class."""
    return {name: min(count, samples_per_class or count) for name, count in counts.items()}


def subset_size(counts: Mapping[str, int], max_samples: int) -> int:
    """The number of images of the similarity subset of a train split with these class counts
    (simcon.datasets.stratified_subset): all where they are at most max_samples, else at most
    ceil(max_samples / classes) of each class."""
    present = [count for count in counts.values() if count]
    if sum(present) <= max_samples:
        return sum(present)
    cap = math.ceil(max_samples / len(present))
    return sum(min(count, cap) for count in present)
