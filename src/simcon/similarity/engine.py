"""The all-pairs engine's shared pieces: memory and tiling limits, the check of the inputs, progress bars, the
per-model statistics several families start from (centred features, standardised samples), and the scoring of the
families that are normalised centred inner products of per-model statistics (CKA, RSA).

The limits are read when a computation runs, so that a test can shrink them to exercise the tiling.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from simcon.metrics import MetricSpec, require_samples

T = TypeVar("T")

BLOCK_BYTES: int = 32 << 20
"""Working memory for one tile of kernel (or RDM) entries of all models, held in float32."""

RANK_STORE_BYTES: int = 4 << 30
"""RDM ranks of all models up to this size are held in memory, larger ones in a temporary file."""

TILE_ROWS: int = 512
"""Height of the tiles' row strips. The tiles right of a strip's diagonal block are as wide as
BLOCK_BYTES allows, so the batched matrix products stay large."""

DIAGONAL_TILE_ROWS: int = 128
"""Each strip's diagonal block is halved into two diagonal blocks and the tile between them
until the diagonal blocks are at most this high; those are computed whole, a fraction
DIAGONAL_TILE_ROWS / n of extra work."""

TILE_COLUMNS: int = 2048
"""Widest tile. Reducing a tile to inner products of models takes one float32 product per
tile row, a sum of at most TILE_COLUMNS terms, and accumulates those in float64. A float32
sum of K products errs by at most about K·u of the sum of their magnitudes (u = 2⁻²⁴; about
√K·u for random rounding errors), the same order as the error of the float32 kernel entries
themselves (products over d features). The n²/K partial sums are accumulated in float64 and
add no error of that order, so no n²-term sum is a long float32 sum, and the tiles need no
conversion to float64."""

FEATURE_CHUNK_ROWS: int = 2048
"""Rows per float32 product in feature-space sums; the partial products are summed in float64."""

DEGENERATE_TOLERANCE: float = 1e-12
"""A model whose centred self-similarity is below this fraction of its raw one is degenerate."""


def validated_features(features: Mapping[str, np.ndarray], spec: MetricSpec) -> list[np.ndarray]:
    """The feature arrays, after checking they are usable for `spec`."""
    arrays = {}
    for model, raw in features.items():
        array = np.asarray(raw)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"features of model {model!r} must be (n, d) with d >= 1, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"features of model {model!r} contain NaN or Inf")
        arrays[model] = array
    sizes = {model: array.shape[0] for model, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models have different numbers of samples: {sizes}")
    require_samples(spec.name, next(iter(sizes.values()), spec.min_samples), "each model's features")
    for model, array in arrays.items():
        if np.ptp(array, axis=0).max() == 0:
            raise ValueError(
                f"features of model {model!r} are constant across samples (zero variance); its similarity is undefined"
            )
        if spec.rdm == "correlation":
            constant_samples = np.flatnonzero(np.ptp(array, axis=1) == 0)
            if constant_samples.size:
                raise ValueError(
                    f"features of model {model!r} are constant within sample "
                    f"{constant_samples[0]}; the correlation distance of its RDM "
                    "is undefined"
                )
        if spec.rdm == "cosine":
            zero_samples = np.flatnonzero(~array.any(axis=1))
            if zero_samples.size:
                raise ValueError(
                    f"features of model {model!r} are zero in sample {zero_samples[0]}; the cosine distance of "
                    "its RDM is undefined"
                )
    return list(arrays.values())


class Products(NamedTuple):
    """Centred inner products of model statistics: rows × all models, and per model."""

    cross: np.ndarray
    centred_self: np.ndarray
    raw_self: np.ndarray


ProductsFunction = Callable[[Sequence[np.ndarray], int, Sequence[tuple[int, int]]], Products]
"""The Products of models xs (the first n_rows of them the rows of `cross`) for the given pairs of their indices."""


def inner_product_scores(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    compute_products: ProductsFunction,
) -> list[float]:
    """C_ab / sqrt(C_aa C_bb) of each pair, clipped to the metric's range, from the centred inner products C of
    per-model statistics; the models are ordered so that a small set of them covers every pair."""
    rows = covering_models(pairs)
    order = rows + sorted({m for pair in pairs for m in pair} - set(rows))
    local = {model: k for k, model in enumerate(order)}
    local_pairs = [(local[a], local[b]) if local[a] < len(rows) else (local[b], local[a]) for a, b in pairs]
    xs = [arrays[m] for m in order]
    products = compute_products(xs, len(rows), local_pairs)
    for k, model in enumerate(order):
        if not products.centred_self[k] > DEGENERATE_TOLERANCE * abs(products.raw_self[k]):
            raise ValueError(
                f"model {ids[model]!r} is degenerate under {spec.name}: its "
                "centred kernel/RDM is zero, so the similarity is undefined"
            )
    low, high = spec.value_range
    return [
        float(np.clip(products.cross[a, b] / math.sqrt(products.centred_self[a] * products.centred_self[b]), low, high))
        for a, b in local_pairs
    ]


def covering_models(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """A small set of models such that every pair contains one of them (greedy cover)."""
    remaining = set(pairs)
    cover: list[int] = []
    while remaining:
        counts: dict[int, int] = {}
        for pair in remaining:
            for model in pair:
                counts[model] = counts.get(model, 0) + 1
        best = max(counts, key=lambda model: (counts[model], -model))
        cover.append(best)
        remaining = {pair for pair in remaining if best not in pair}
    return cover


def progress_bar(iterable: Iterable[T], total: int, desc: str, enabled: bool) -> Iterable[T]:
    """The iterable, with a tqdm progress bar on stderr when enabled."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False)


def centred_features(x: np.ndarray) -> torch.Tensor:
    """Features minus their mean over samples (the mean summed in float64), as float32."""
    features = torch.from_numpy(np.ascontiguousarray(x))
    mean = features.mean(dim=0, dtype=torch.float64).to(features.dtype)
    return (features - mean).float()


def unit_rows(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Each sample's features divided by their norm (in float64), as float32 on the device; a row of zeros stays
    zero."""
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    norms = torch.linalg.vector_norm(wide, dim=1, keepdim=True)
    return (wide / torch.where(norms > 0, norms, 1.0)).float()


def standardised_samples(x: np.ndarray) -> torch.Tensor:
    """Each sample's features minus their mean, divided by their norm, as float32."""
    centred = x.astype(np.float64) - x.mean(axis=1, dtype=np.float64, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    return torch.from_numpy(centred.astype(np.float32))


class Spectrum(NamedTuple):
    """A model's thin SVD X = U diag(s) Vᵀ of its features (centred or raw), of numerical rank r, in float64 on the
    device: the left singular vectors U (n, r), the singular values s (r,) and, when asked for, the right singular
    vectors V (d, r). U is kept in float64 because the angular measures take arccos of values near 1, where a
    float32 rounding of 10⁻⁷ would move the angle by 5·10⁻⁴."""

    basis: torch.Tensor
    values: torch.Tensor
    right: torch.Tensor | None


def spectrum(x: np.ndarray, centred: bool, device: torch.device, right: bool = False) -> Spectrum:
    """The thin SVD of a model's features (minus their mean over samples when `centred`), in float64, from the
    eigendecomposition of the smaller Gram matrix (XᵀX or XXᵀ): about a third of the work of an SVD.

    An eigenvalue is accurate to about d · 2⁻⁵² of the largest, so singular values up to s_max · 10⁻⁶ count as
    zero and their vectors are dropped: a constant or repeated feature adds nothing. The other vectors are
    orthonormal to about 2⁻⁵² s_max / s_i ≤ 2·10⁻¹⁰.
    """
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    if centred:
        wide -= wide.mean(dim=0)
    features_side = wide.shape[0] >= wide.shape[1]
    values, vectors = torch.linalg.eigh(wide.T @ wide if features_side else wide @ wide.T)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    singular = values.sqrt()
    rank = int((singular > singular[0] * SPECTRUM_TOLERANCE).sum())
    singular, vectors = singular[:rank], vectors[:, :rank]
    if features_side:
        return Spectrum(wide @ vectors / singular, singular, vectors if right else None)
    return Spectrum(vectors, singular, wide.T @ vectors / singular if right else None)


SPECTRUM_TOLERANCE: float = 1e-6
"""Singular values below this fraction of a model's largest count as zero (engine.spectrum)."""


def cross_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """XᵀY of two (n, ·) matrices in float64, from products in their precision over row chunks of
    FEATURE_CHUNK_ROWS."""
    product = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], FEATURE_CHUNK_ROWS):
        stop = start + FEATURE_CHUNK_ROWS
        product += x[start:stop].T @ y[start:stop]
    return product


def check_spans_apart(spec: MetricSpec, ids: Sequence[str], ranks: Sequence[int], dimensions: int) -> None:
    """ValueError naming two models whose features span more than `dimensions` together, where an unregularised
    measure of their column spaces would be forced by the dimensions alone (docs/metrics.md, CCA)."""
    if ranks[0] + ranks[1] <= dimensions:
        return
    forced = ranks[0] + ranks[1] - dimensions
    raise ValueError(
        f"{spec.name} is degenerate for models {ids[0]!r} (rank {ranks[0]}) and {ids[1]!r} (rank {ranks[1]}): "
        f"together they span more than the {dimensions} dimensions their samples allow, so {forced} canonical "
        "correlation(s) are 1 whatever the features; use more samples or a regularised form (docs/metrics.md, CCA)"
    )
