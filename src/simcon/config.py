"""Checks of the workflow config beyond its JSON schema, run before any job starts."""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from typing import Any

import yaml

from simcon.datasets import check_dataset
from simcon.models import check_model_spec

SIZE_CLASSES = ((100e6, "small"), (200e6, "medium"), (400e6, "large"))


class ConfigError(ValueError):
    """The config is invalid; the message names the culprit."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{node.start_mark.name}: duplicate id {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_unique_keys(paths: Iterable[str | os.PathLike]) -> None:
    """Raise ConfigError naming the file and key if any config file repeats a key within one mapping."""
    for path in paths:
        with open(path) as handle:
            yaml.load(handle, Loader=_UniqueKeyLoader)


def size_class(parameters: float) -> str:
    """The paper's size class of a parameter count: small <100M, medium <200M, large <400M, else xlarge."""
    for limit, name in SIZE_CLASSES:
        if parameters < limit:
            return name
    return "xlarge"


def check_config(config: MutableMapping[str, Any], known_metrics: Iterable[str]) -> None:
    """Validate what the schema cannot (models, datasets, metrics, anchors) and fill in derived metadata."""
    known = list(known_metrics)
    unknown = [m for m in config["metrics"] if m not in known]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; known metrics: {known}")
    missing = [a for a in config["anchors"] if a not in config["models"]]
    if missing:
        raise ConfigError(f"anchor model(s) {missing} are not in models")
    for model_id, spec in config["models"].items():
        check_model_spec(model_id, spec)
        spec["metadata"].setdefault("size_class", size_class(spec["metadata"]["parameters"]))
    for dataset_id, spec in config["datasets"].items():
        check_dataset(dataset_id, spec)
