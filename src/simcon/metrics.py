"""The registry of similarity metrics: names, properties and definitions, without the backend that computes them.

Torch-free, so that the workflow can check a config's metric names without loading torch. A new metric is one
MetricSpec in _registry() and its computation in simcon.similarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

RBF_SIGMAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
"""Absolute RBF bandwidths of the registered CKA RBF metrics."""

REFERENCE_METRIC = "cka_linear_unbiased"
"""The paper's reference metric, which Fig. 3 compares the others with."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered similarity measure, its properties and its definition."""

    name: str
    symmetric: bool
    value_range: tuple[float, float]
    larger_is_more_similar: bool
    family: Literal["cka", "rsa"]
    min_samples: int
    kernel: Literal["linear", "rbf"] | None = None
    sigma: float | None = None
    unbiased: bool = False
    rdm_comparison: Literal["spearman", "pearson"] | None = None


def _registry() -> dict[str, MetricSpec]:
    specs: list[MetricSpec] = []
    for unbiased in (True, False):
        estimator = "unbiased" if unbiased else "biased"
        value_range = (-1.0, 1.0) if unbiased else (0.0, 1.0)
        min_samples = 4 if unbiased else 2
        specs.append(
            MetricSpec(f"cka_linear_{estimator}", True, value_range, True, "cka", min_samples,
                       kernel="linear", unbiased=unbiased)
        )
        for sigma in RBF_SIGMAS:
            specs.append(
                MetricSpec(f"cka_rbf{sigma}_{estimator}", True, value_range, True, "cka",
                           min_samples, kernel="rbf", sigma=sigma, unbiased=unbiased)
            )
    for comparison in ("spearman", "pearson"):
        specs.append(
            MetricSpec(f"rsa_correlation_{comparison}", True, (-1.0, 1.0), True, "rsa", 3,
                       rdm_comparison=comparison)
        )
    return {spec.name: spec for spec in specs}


METRICS: Mapping[str, MetricSpec] = MappingProxyType(_registry())
"""All registered metrics by name."""


def metric_names() -> list[str]:
    """Names of all registered metrics."""
    return list(METRICS)


def get_metric(name: str) -> MetricSpec:
    """The registered metric of this name; ValueError listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown similarity metric {name!r}; known metrics: {', '.join(METRICS)}"
        ) from None

def reference_metric(metrics: Sequence[str]) -> str:
    """The metric others are compared with in Fig. 3: the paper's CKA linear where configured, else the first."""
    return REFERENCE_METRIC if REFERENCE_METRIC in metrics else metrics[0]
