"""The names the config, the analyses and the figures share: model categories and their values, dataset
categories, backends and dataset sources. Torch-free; the config schema's enums are tested against it."""

from __future__ import annotations

TRAINED_OBJECTIVES: tuple[str, ...] = ("Sup", "SSL", "Img-Txt")
"""Training objectives of pretrained models (and of the model zoo): supervised, self-supervised, image-text."""

OBJECTIVES: tuple[str, ...] = (*TRAINED_OBJECTIVES, "Untrained")
"""Every model's objective: a trained one, or an untrained control."""

ARCHITECTURE_CLASSES: tuple[str, ...] = ("CNN", "TX")
"""Convolutional network, or transformer."""

DATA_CLASSES: tuple[str, ...] = ("IN1k", "IN21k", "Large", "XLarge", "None")
"""Size of the pretraining data (paper Table 2); 'None' for untrained models."""

SIZE_LIMITS: tuple[tuple[float, str], ...] = ((100e6, "small"), (200e6, "medium"), (400e6, "large"))
"""Upper parameter-count limit of each size class below the largest (paper: <100M, <200M, <400M)."""

SIZE_CLASSES: tuple[str, ...] = (*(name for _, name in SIZE_LIMITS), "xlarge")
"""Model size classes, smallest first."""

MODEL_CATEGORIES: dict[str, str] = {
    "objective": "objective",
    "architecture": "architecture_class",
    "data": "data_class",
    "size": "size_class",
}
"""Category of model sets -> the metadata field that defines its sets."""

CATEGORY_TITLES: dict[str, str] = {
    "objective": "Training objective",
    "architecture": "Architecture",
    "data": "Training data",
    "size": "Model size",
}
"""Category of model sets -> its title in tables and figures."""

CATEGORY_VALUES: dict[str, tuple[str, ...]] = {
    "objective": OBJECTIVES,
    "architecture": ARCHITECTURE_CLASSES,
    "data": DATA_CLASSES,
    "size": SIZE_CLASSES,
}
"""Category of model sets -> the values its metadata field takes."""

DATASET_CATEGORIES: tuple[str, ...] = ("natural_multi_domain", "natural_single_domain", "specialized", "structured")
"""Dataset categories of the paper's Table 3, in the order the figures show them."""

BACKENDS: tuple[str, ...] = ("timm", "torchvision", "open_clip", "huggingface", "ssl_resnet50", "thingsvision")
"""Libraries that build a model."""

DATASET_SOURCES: tuple[str, ...] = ("sklearn_digits", "generated", "image_folder", "wds", "torchvision", "breeds")
"""Where a dataset's images come from."""

GENERATED_CLASSES: dict[str, tuple[str, ...]] = {
    "shapes": ("circle", "square", "triangle", "cross", "ring", "diamond"),
    "textures": ("horizontal", "vertical", "diagonal", "checker", "dots", "noise"),
    "cells": ("sparse", "dense_small", "elongated", "clustered"),
    "scenes": ("circle", "square", "triangle", "cross", "ring"),  # the model zoo's scenes, labelled by shape
}
"""Domains of the generated datasets and the names of their classes, in label order."""

GENERATED_DOMAINS: tuple[str, ...] = tuple(GENERATED_CLASSES)
"""Domains of the generated datasets."""

BREEDS_TASKS: tuple[str, ...] = ("entity30", "living17", "nonliving26")
"""BREEDS tasks built from ImageNet."""

LAYER_PRESETS: tuple[str, ...] = ("blocks",)
"""Named sets of layers a backend resolves for a network: 'blocks', the output of every residual stage or
transformer block, in depth order."""

TOKEN_POOLINGS: tuple[str, ...] = ("cls", "mean")
"""How a (B, T, D) token output becomes one vector per image: its first (CLS) token, or the mean over its tokens;
the first is the default."""


def size_class(parameters: float) -> str:
    """The paper's size class of a parameter count: small <100M, medium <200M, large <400M, else xlarge."""
    for limit, name in SIZE_LIMITS:
        if parameters < limit:
            return name
    return SIZE_CLASSES[-1]
