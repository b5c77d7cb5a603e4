"""The registry of similarity metrics: names, properties and definitions, without the backend that computes them.

Torch-free, so that the workflow can check a config's metric names without loading torch. A new metric is one
MetricSpec in _registry() and its computation in the family's module of the package simcon.similarity.
"""

from __future__ import annotations

import difflib
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


INVARIANCES: tuple[str, ...] = (
    "translation",
    "isotropic_scaling",
    "anisotropic_scaling",
    "orthogonal",
    "permutation",
    "invertible_linear",
)
"""Transforms of one model's features (the same for every sample) a metric may be invariant to:
adding a constant vector, multiplying by a positive scalar, multiplying each feature by its own
positive scalar, multiplying by an orthogonal matrix from the right, permuting the features, and
multiplying by an invertible matrix from the right. Permutations are orthogonal, and scalings and
orthogonal maps are invertible: a metric invariant to a group is invariant to its subgroups."""

ROTATION_INVARIANT = frozenset({"isotropic_scaling", "orthogonal", "permutation"})
"""The invariances of a metric of the features' geometry up to rotation and scale, without centring."""

SHAPE_INVARIANT = ROTATION_INVARIANT | {"translation"}
"""The invariances of a metric of the centred features' geometry up to rotation and scale."""

LINEAR_INVARIANT = frozenset(INVARIANCES)
"""The invariances of a metric of the centred features' column space (exact CCA)."""

MATCHING_INVARIANT = frozenset({"translation", "isotropic_scaling", "anisotropic_scaling", "permutation"})
"""The invariances of a metric of the correlations between single features (matching)."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered similarity measure, its properties and its definition.

    `invariances` lists the INVARIANCES the measure has; it has none of the others.
    `family` names the module of simcon.similarity that scores it; the other fields define the
    measure within its family (docs/metrics.md):

    - `kernel`, `sigma`, `unbiased`: the kernel of CKA (linear, RBF of bandwidth sigma) or of the
      distance-matrix measures (distance: Euclidean distances), and whether HSIC is U-centred;
    - `rdm`, `rdm_comparison`: RSA's dissimilarity of two samples and its comparison of two RDMs;
    - `neighbours`, `knn_statistic`: k of the neighbourhood metrics and what they compare;
    - `statistic`: what the alignment, CCA, regression and matching measures report;
    - `alpha`: the partial whitening of shape metrics (0: whitened, CCA; 1: none, Procrustes);
    - `variance_kept`: the fraction of variance SVCCA keeps;
    - `regulariser`: the ridge of the CCA measures and of linear predictivity, relative to the mean
      eigenvalue of the covariance (0: none), and GULP's λ on features of unit total variance.
    """

    name: str
    symmetric: bool
    value_range: tuple[float, float]
    larger_is_more_similar: bool
    family: Literal["cka", "dcor", "rsm", "rsa", "knn", "procrustes", "shape", "cca", "regression", "matching"]
    min_samples: int
    invariances: frozenset[str] = frozenset()
    kernel: Literal["linear", "rbf", "distance"] | None = None
    sigma: float | None = None
    unbiased: bool = False
    rdm: Literal["correlation", "euclidean", "cosine"] | None = None
    rdm_comparison: Literal["spearman", "pearson", "kendall"] | None = None
    neighbours: int | None = None
    knn_statistic: Literal["mutual", "jaccard", "cknna", "second_order_cosine", "rank"] | None = None
    statistic: str | None = None
    alpha: float | None = None
    variance_kept: float | None = None
    regulariser: float = 0.0


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
                SHAPE_INVARIANT,
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
                    frozenset({"translation", "orthogonal", "permutation"}),
                    kernel="rbf",
                    sigma=sigma,
                    unbiased=unbiased,
                )
            )
    specs += [
        MetricSpec("distance_correlation", True, (0.0, 1.0), True, "dcor", 2, SHAPE_INVARIANT, kernel="distance"),
        MetricSpec(
            "distance_correlation_squared_unbiased",
            True,
            (-1.0, 1.0),
            True,
            "dcor",
            4,
            SHAPE_INVARIANT,
            kernel="distance",
            unbiased=True,
        ),
    ]
    rdm_invariances = {
        "correlation": frozenset({"isotropic_scaling", "permutation"}),
        "euclidean": SHAPE_INVARIANT,
        "cosine": ROTATION_INVARIANT,
    }
    for rdm, invariances in rdm_invariances.items():
        for comparison in ("spearman", "pearson", "kendall"):
            specs.append(
                MetricSpec(
                    f"rsa_{rdm}_{comparison}",
                    True,
                    (-1.0, 1.0),
                    True,
                    "rsa",
                    3,
                    invariances,
                    rdm=rdm,
                    rdm_comparison=comparison,
                )
            )
    specs.extend(_parsed_spec(f"{prefix}{DEFAULT_NEIGHBOURS}") for prefix in NAME_PATTERNS)
    specs += [
        MetricSpec("procrustes", True, (0.0, 1.0), True, "procrustes", 2, SHAPE_INVARIANT, statistic="procrustes"),
        MetricSpec("procrustes_angular", True, (0.0, 1.0), True, "procrustes", 2, SHAPE_INVARIANT, statistic="angular"),
        MetricSpec(
            "aligned_cosine", True, (-1.0, 1.0), True, "procrustes", 2, ROTATION_INVARIANT, statistic="aligned_cosine"
        ),
    ]
    specs += [_parametrised_spec(name) for name in ("cca", f"svcca{DEFAULT_VARIANCE_KEPT}", "pwcca")]
    specs.append(_parametrised_spec(f"shape{DEFAULT_ALPHA}"))
    specs += [_parametrised_spec("linreg"), _parametrised_spec(f"gulp{DEFAULT_GULP_LAMBDA}")]
    specs += [
        MetricSpec("soft_matching", True, (-1.0, 1.0), True, "matching", 2, MATCHING_INVARIANT, statistic="soft"),
        MetricSpec("hard_matching", True, (-1.0, 1.0), True, "matching", 2, MATCHING_INVARIANT, statistic="hard"),
        MetricSpec(
            "eigenspace_overlap",
            True,
            (0.0, 1.0),
            True,
            "cca",
            2,
            LINEAR_INVARIANT - {"translation"},
            statistic="eigenspace_overlap",
        ),
        MetricSpec("rsm_norm_difference", True, (0.0, 1.0), True, "rsm", 2, SHAPE_INVARIANT, kernel="distance"),
    ]
    return {spec.name: spec for spec in specs if spec is not None}


# --- Parametrised metric names ------------------------------------------------------------
# Each neighbourhood metric's name ends in its k (`mutual_knn10`). This table and
# _parsed_spec are the whole of the name parsing; the registry lists these metrics with
# k = DEFAULT_NEIGHBOURS, and get_metric accepts any k.

DEFAULT_NEIGHBOURS: int = 10
"""k of the registered neighbourhood metrics, the Platonic Representation Hypothesis's default."""

NAME_PATTERNS: Mapping[str, Literal["mutual", "jaccard", "cknna", "second_order_cosine", "rank"]] = MappingProxyType(
    {
        "mutual_knn": "mutual",
        "jaccard_knn": "jaccard",
        "cknna": "cknna",
        "second_order_cosine": "second_order_cosine",
        "rank_similarity": "rank",
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
            ROTATION_INVARIANT,
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
        ROTATION_INVARIANT,
        neighbours=k,
        knn_statistic=statistic,
    )


# Names with a real-valued parameter: the CCA family with an optional ridge (`cca`, `cca_ridge0.1`,
# `svcca0.99`, `svcca0.99_ridge0.1`, `pwcca`, `pwcca_ridge0.1`) and the shape metrics (`shape0.5`). A number
# is written in its shortest decimal form (`0.5`, not `0.50` or `5e-1`), so that one measure has one name.

DEFAULT_VARIANCE_KEPT: float = 0.99
"""The share of variance the registered SVCCA keeps (Raghu et al. 2017)."""

DEFAULT_ALPHA: float = 0.5
"""The partial whitening of the registered shape metric (0: CCA, 1: Procrustes)."""

DEFAULT_GULP_LAMBDA: float = 0.01
"""λ of the registered GULP, on features scaled to unit total variance."""

_NUMBER = r"(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?"

PARAMETRISED_PATTERNS: tuple[str, ...] = (
    "cca_ridge<ε>",
    "svcca<p>",
    "svcca<p>_ridge<ε>",
    "pwcca_ridge<ε>",
    "linreg_ridge<ε>",
    "shape<α>",
    "gulp<λ>",
)
"""The forms of the names with a real-valued parameter, for error messages."""


def _parametrised_spec(name: str) -> MetricSpec | None:
    """The CCA-family, regression or shape metric a name denotes; None for other names and parameters out of
    range."""
    if match := re.fullmatch(rf"gulp({_NUMBER})", name):
        gulp = float(match.group(1))
        return MetricSpec(
            name,
            True,
            (0.0, 1.0),
            True,
            "regression",
            3,
            LINEAR_INVARIANT if gulp == 0 else SHAPE_INVARIANT,
            statistic="gulp",
            regulariser=gulp,
        )
    if match := re.fullmatch(rf"linreg(?:_ridge({_NUMBER}))?", name):
        ridge = float(match.group(1)) if match.group(1) else 0.0
        if match.group(1) and ridge == 0:
            return None
        return MetricSpec(
            name, True, (0.0, 1.0), True, "regression", 3, SHAPE_INVARIANT, statistic="linreg", regulariser=ridge
        )
    if match := re.fullmatch(rf"shape({_NUMBER})", name):
        alpha = float(match.group(1))
        if alpha > 1:
            return None
        invariances = LINEAR_INVARIANT if alpha == 0 else SHAPE_INVARIANT
        return MetricSpec(name, True, (0.0, 1.0), True, "shape", 3, invariances, alpha=alpha)
    match = re.fullmatch(rf"(cca|pwcca|svcca({_NUMBER}))(?:_ridge({_NUMBER}))?", name)
    if match is None:
        return None
    variance_kept = float(match.group(2)) if match.group(2) else None
    ridge = float(match.group(3)) if match.group(3) else 0.0
    if (variance_kept is not None and not 0 < variance_kept <= 1) or (match.group(3) and ridge == 0):
        return None
    statistic = "svcca" if variance_kept is not None else match.group(1)
    if statistic == "pwcca":
        invariances = frozenset({"translation", "isotropic_scaling", "permutation"})
    elif statistic == "cca" and ridge == 0:
        invariances = LINEAR_INVARIANT
    else:
        invariances = SHAPE_INVARIANT
    statistic = "mean" if statistic == "cca" else statistic
    return MetricSpec(
        name,
        True,
        (0.0, 1.0),
        True,
        "cca",
        3,
        invariances,
        statistic=statistic,
        variance_kept=variance_kept,
        regulariser=ridge,
    )


METRICS: Mapping[str, MetricSpec] = MappingProxyType(_registry())
"""All registered metrics by name."""


def metric_names() -> list[str]:
    """Names of all registered metrics (neighbourhood metrics with k = DEFAULT_NEIGHBOURS)."""
    return list(METRICS)


def get_metric(name: str) -> MetricSpec:
    """The registered metric of this name; ValueError naming the closest and listing the known names otherwise."""
    spec = METRICS.get(name) or _parsed_spec(name) or _parametrised_spec(name)
    if spec is None:
        patterns = ", ".join(f"{prefix}<k>" for prefix in NAME_PATTERNS)
        closest = difflib.get_close_matches(name, list(METRICS), n=3, cutoff=0.6)
        raise ValueError(
            f"unknown similarity metric {name!r}"
            + (f"; closest: {', '.join(closest)}" if closest else "")
            + "; known metrics: "
            f"{', '.join(METRICS)} (and {patterns} for other k; cknna needs k >= 2; "
            f"{', '.join(PARAMETRISED_PATTERNS)} with 0 < p <= 1, ε > 0, 0 <= α <= 1, λ >= 0, "
            "numbers in their shortest decimal form)"
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
