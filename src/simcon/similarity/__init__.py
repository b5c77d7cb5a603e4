"""Representational similarity of many models, all pairs per call: CKA (linear, RBF), distance correlation, RSA,
neighbourhood alignment (mutual k-NN, Jaccard k-NN, CKNNA, second-order cosine, rank similarity), Procrustes and
shape metrics, aligned cosine, the CCA family, linear predictivity, GULP, matching of single features, eigenspace
overlap and the RSM norm difference.

One module a family of measures; each computes its per-model statistics once per call and scores every pair from
them (docs/metrics.md):

- kernel: CKA, linear and RBF kernels, biased and unbiased HSIC; distance correlation; RSM norm difference;
- rsa: RDMs of correlation, squared Euclidean or cosine distance compared by Pearson, Spearman or Kendall's τ-a;
- neighbourhood: mutual k-NN, Jaccard k-NN, CKNNA, second-order cosine, rank similarity;
- shape: orthogonal Procrustes, its angular form, aligned cosine, shape metrics with partial whitening, soft and
  hard matching of single features;
- cca: mean CCA, SVCCA, PWCCA (optionally with a ridge), eigenspace overlap;
- regression: linear predictivity (R², optionally ridge), GULP;
- engine: what they share (limits, input checks, centred features, normalised inner products).

The registry of names and properties is simcon.metrics (torch-free); SCORERS maps each of its families to the
function that scores pairs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from simcon.metrics import MetricSpec, get_metric
from simcon.pair_cache import PairCache, array_digest
from simcon.similarity import cca, kernel, neighbourhood, regression, rsa, shape
from simcon.similarity.engine import validated_features
from simcon.similarity.shape import angular_shape_distance

__all__ = ["SCORERS", "SimilarityResult", "angular_shape_distance", "compute_similarity"]

PairScorer = Callable[
    [MetricSpec, Sequence[np.ndarray], Sequence[str], Sequence[tuple[int, int]], torch.device, bool], list[float]
]
"""Scores pairs of model indices: (spec, arrays, ids, pairs, device, progress) -> one value a pair."""

SCORERS: Mapping[str, PairScorer] = {
    "cka": kernel.score_pairs,
    "dcor": kernel.score_pairs,
    "rsm": kernel.score_pairs,
    "rsa": rsa.score_pairs,
    "knn": neighbourhood.score_pairs,
    "procrustes": shape.score_pairs,
    "shape": shape.score_pairs,
    "matching": shape.score_pairs,
    "cca": cca.score_pairs,
    "regression": regression.score_pairs,
}
"""The pair scorer of each metric family of the registry."""


@dataclass
class SimilarityResult:
    """All-pairs similarity matrix and how many pairs this call computed (not from cache)."""

    matrix: pd.DataFrame
    computed_pairs: int


def compute_similarity(
    features: Mapping[str, np.ndarray],
    metric: str,
    *,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    context_key: str = "",
    progress: bool = False,
) -> SimilarityResult:
    """Similarity of every pair of models under `metric`.

    `features` maps model id to an (n, d_model) array; all share the same n samples. The
    result's matrix is indexed by model id in input order, symmetric, with the metric's
    self-similarity (1) on the diagonal. With `cache_dir`, each pair's value is stored under
    the content of both feature arrays, `context_key` and the metric, and pairs already
    stored are read instead of computed.
    """
    spec = get_metric(metric)
    ids = list(features)
    arrays = validated_features(features, spec)
    values = np.eye(len(ids))
    cache = None if cache_dir is None else PairCache(cache_dir, spec.name, context_key)
    digests = [array_digest(np.asarray(features[i])) for i in ids] if cache else []
    missing: list[tuple[int, int]] = []
    for a, b in combinations(range(len(ids)), 2):
        stored = cache.get(digests[a], digests[b]) if cache else None
        if stored is None:
            missing.append((a, b))
        else:
            values[a, b] = values[b, a] = stored
    if missing:
        scores = SCORERS[spec.family](spec, arrays, ids, missing, torch.device(device), progress)
        for (a, b), score in zip(missing, scores):
            values[a, b] = values[b, a] = score
            if cache:
                cache.put(digests[a], digests[b], score)
    matrix = pd.DataFrame(values, index=pd.Index(ids), columns=pd.Index(ids))
    return SimilarityResult(matrix=matrix, computed_pairs=len(missing))
