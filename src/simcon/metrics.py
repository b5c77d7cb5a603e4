"""The registry of similarity metrics: names, properties and definitions, without the backend that computes them.

Torch-free, so that the workflow can check a config's metric names without loading torch. A new metric is one
MetricSpec in _registry() and its computation in the family's module of the package simcon.similarity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

RBF_SIGMAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
"""Absolute RBF bandwidths of the registered CKA RBF metrics."""

REFERENCE_METRIC = "cka_linear_unbiased"
"""The paper's reference metric, which Fig. 3 compares the others with."""


INVARIANCES: tuple[str, ...] = ("translation", "isotropic_scaling", "orthogonal")
"""Transforms of one model's features (the same for every sample) a metric may be invariant to:
adding a constant vector, multiplying by a positive scalar, and multiplying by an orthogonal
matrix from the right."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered similarity measure, its properties and its definition.

    `invariances` lists the INVARIANCES the measure has; it has none of the others.
    `neighbours` is k of the neighbourhood metrics, whose `knn_statistic` says what they
    compare: the shared fraction of neighbours (mutual), the Jaccard index of the neighbour
    sets, or CKNNA.
    """

    name: str
    symmetric: bool
    value_range: tuple[float, float]
    larger_is_more_similar: bool
    family: Literal["cka", "rsa", "knn", "procrustes"]
    min_samples: int
    invariances: frozenset[str] = frozenset()
    kernel: Literal["linear", "rbf"] | None = None
    sigma: float | None = None
    unbiased: bool = False
    rdm_comparison: Literal["spearman", "pearson"] | None = None
    neighbours: int | None = None
    knn_statistic: Literal["mutual", "jaccard", "cknna"] | None = None


def _registry() -> dict[str, MetricSpec]:
    specs: list[MetricSpec] = []
    for unbiased in (True, False):
        estimator = "unbiased" if unbiased else "biased"
        value_range = (-1.0, 1.0) if unbiased else (0.0, 1.0)
        min_samples = 4 if unbiased else 2
        specs.append(
            MetricSpec(
                f"cka_linear_{estimator}",
                True,
                value_range,
                True,
                "cka",
                min_samples,
                frozenset(INVARIANCES),
                kernel="linear",
                unbiased=unbiased,
            )
        )
        for sigma in RBF_SIGMAS:
            specs.append(
                MetricSpec(
                    f"cka_rbf{sigma}_{estimator}",
                    True,
                    value_range,
                    True,
                    "cka",
                    min_samples,
                    frozenset({"translation", "orthogonal"}),
                    kernel="rbf",
                    sigma=sigma,
                    unbiased=unbiased,
                )
            )
    for comparison in ("spearman", "pearson"):
        specs.append(
            MetricSpec(
                f"rsa_correlation_{comparison}",
                True,
                (-1.0, 1.0),
                True,
                "rsa",
                3,
                frozenset({"isotropic_scaling"}),
                rdm_comparison=comparison,
            )
        )
    specs.extend(_parsed_spec(f"{prefix}{DEFAULT_NEIGHBOURS}") for prefix in NAME_PATTERNS)
    specs.append(MetricSpec("procrustes", True, (0.0, 1.0), True, "procrustes", 2, frozenset(INVARIANCES)))
    return {spec.name: spec for spec in specs}


# --- Parametrised metric names ------------------------------------------------------------
# Each neighbourhood metric's name ends in its k (`mutual_knn10`). This table and
# _parsed_spec are the whole of the name parsing; the registry lists these metrics with
# k = DEFAULT_NEIGHBOURS, and get_metric accepts any k.

DEFAULT_NEIGHBOURS: int = 10
"""k of the registered neighbourhood metrics, the Platonic Representation Hypothesis's default."""

NAME_PATTERNS: Mapping[str, Literal["mutual", "jaccard", "cknna"]] = MappingProxyType(
    {
        "mutual_knn": "mutual",
        "jaccard_knn": "jaccard",
        "cknna": "cknna",
    }
)
"""Each neighbourhood metric's name prefix (followed by k >= 1) and its statistic."""


def _parsed_spec(name: str) -> MetricSpec | None:
    """The neighbourhood metric a name of the form <prefix><k> denotes; None for other names."""
    match = re.fullmatch(r"([a-z_]+?)([1-9][0-9]*)", name)
    if match is None or match.group(1) not in NAME_PATTERNS:
        return None
    statistic = NAME_PATTERNS[match.group(1)]
    k = int(match.group(2))
    if statistic != "cknna":
        return MetricSpec(
            name,
            True,
            (0.0, 1.0),
            True,
            "knn",
            k + 1,
            frozenset({"isotropic_scaling", "orthogonal"}),
            neighbours=k,
            knn_statistic=statistic,
        )
    if k < 2:
        return None
    # CKNNA is a ratio of HSIC estimates of neighbour-masked kernels whose masks differ between
    # numerator and denominator, so Cauchy–Schwarz does not bound it as it bounds CKA: no range
    # is claimed beyond the real line.
    return MetricSpec(
        name,
        True,
        (-math.inf, math.inf),
        True,
        "knn",
        max(k + 1, 4),
        frozenset({"isotropic_scaling", "orthogonal"}),
        neighbours=k,
        knn_statistic=statistic,
    )


METRICS: Mapping[str, MetricSpec] = MappingProxyType(_registry())
"""All registered metrics by name."""


def metric_names() -> list[str]:
    """Names of all registered metrics (neighbourhood metrics with k = DEFAULT_NEIGHBOURS)."""
    return list(METRICS)


def get_metric(name: str) -> MetricSpec:
    """The registered metric of this name; ValueError listing the known names otherwise."""
    spec = METRICS.get(name) or _parsed_spec(name)
    if spec is None:
        patterns = ", ".join(f"{prefix}<k>" for prefix in NAME_PATTERNS)
        raise ValueError(
            f"unknown similarity metric {name!r}; known metrics: "
            f"{', '.join(METRICS)} (and {patterns} for other k; cknna needs k >= 2)"
        )
    return spec


def require_samples(metric: str, n: int, where: str) -> None:
    """Raise ValueError if `metric` needs more samples than the `n` that `where` holds (e.g. "the similarity
    subset of dataset 'x'"), naming both, the metric's minimum and, for a neighbourhood metric, its k."""
    spec = get_metric(metric)
    if n < spec.min_samples:
        neighbours = f" (k = {spec.neighbours} neighbours of each)" if spec.neighbours else ""
        raise ValueError(f"{metric} needs at least {spec.min_samples} samples{neighbours}, but {where} has {n}")


def reference_metric(metrics: Sequence[str]) -> str:
    """The metric others are compared with in Fig. 3: the paper's CKA linear where configured, else the first."""
    return REFERENCE_METRIC if REFERENCE_METRIC in metrics else metrics[0]
