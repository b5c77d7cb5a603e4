"""Representational similarity of many models: CKA (linear, RBF) and RSA, all pairs per call.

Definitions (DESIGN.md §4): linear kernel K = XXᵀ; RBF kernel K_ij = exp(-‖x_i - x_j‖² / (2σ²))
with an absolute bandwidth σ; HSIC biased (double centring) or unbiased (U-centring,
Székely–Rizzo / Song et al. 2012); CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
RSA: RDM = 1 - Pearson correlation between samples; two RDMs are compared by Spearman or
Pearson correlation over the upper triangle.

Every metric is evaluated as a normalised centred inner product
C_ab / sqrt(C_aa C_bb) between per-model statistics that are computed once per call:
centred features (linear CKA in feature space), streamed kernel / correlation tiles of all
models at once (CKA, RSA Pearson), or ranks of each RDM (RSA Spearman). Large sums are
accumulated in float64; matrix products of features run in float32.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from simcon.pair_cache import PairCache, array_digest

T = TypeVar("T")

RBF_SIGMAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
"""Absolute RBF bandwidths of the registered CKA RBF metrics."""

BLOCK_BYTES: int = 1 << 30
"""Working memory for one tile of kernel (or RDM) entries of all models, held in float64."""

RANK_STORE_BYTES: int = 4 << 30
"""RDM ranks of all models up to this size are held in memory, larger ones in a temporary file."""

TILE_ROWS: int = 2048
"""Largest tile edge: diagonal tiles are computed whole (smaller tiles waste less of that),
but small matrix products run far below peak on a busy 2-core CPU (512 rows: 2.5x slower)."""

FEATURE_CHUNK_ROWS: int = 2048
"""Rows per float32 product in feature-space sums; the partial products are summed in float64."""

DEGENERATE_TOLERANCE: float = 1e-12
"""A model whose centred self-similarity is below this fraction of its raw one is degenerate."""


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
    arrays = _validated(features, spec)
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
        scores = _score_pairs(spec, arrays, ids, missing, torch.device(device), progress)
        for (a, b), score in zip(missing, scores):
            values[a, b] = values[b, a] = score
            if cache:
                cache.put(digests[a], digests[b], score)
    matrix = pd.DataFrame(values, index=pd.Index(ids), columns=pd.Index(ids))
    return SimilarityResult(matrix=matrix, computed_pairs=len(missing))


def to_long(matrix: pd.DataFrame) -> pd.DataFrame:
    """Tidy table of the pairs a < b (in matrix order): model_a, model_b, similarity."""
    rows, cols = np.triu_indices(len(matrix), k=1)
    return pd.DataFrame(
        {
            "model_a": matrix.index[rows],
            "model_b": matrix.columns[cols],
            "similarity": matrix.to_numpy()[rows, cols],
        }
    )


def _validated(features: Mapping[str, np.ndarray], spec: MetricSpec) -> list[np.ndarray]:
    """The feature arrays, after checking they are usable for `spec`."""
    arrays = {}
    for model, raw in features.items():
        array = np.asarray(raw)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"features of model {model!r} must be (n, d) with d >= 1, "
                             f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"features of model {model!r} contain NaN or Inf")
        arrays[model] = array
    sizes = {model: array.shape[0] for model, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models have different numbers of samples: {sizes}")
    n = next(iter(sizes.values()), spec.min_samples)
    if n < spec.min_samples:
        raise ValueError(f"{spec.name} needs at least {spec.min_samples} samples, got {n}")
    for model, array in arrays.items():
        if np.ptp(array, axis=0).max() == 0:
            raise ValueError(f"features of model {model!r} are constant across samples "
                             "(zero variance); its similarity is undefined")
        constant_samples = np.flatnonzero(np.ptp(array, axis=1) == 0)
        if spec.family == "rsa" and constant_samples.size:
            raise ValueError(f"features of model {model!r} are constant within sample "
                             f"{constant_samples[0]}; the correlation distance of its RDM "
                             "is undefined")
    return list(arrays.values())


class _Products(NamedTuple):
    """Centred inner products of model statistics: rows × all models, and per model."""

    cross: np.ndarray
    centred_self: np.ndarray
    raw_self: np.ndarray


def _score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """The metric's value for each pair of model indices."""
    rows = _covering_models(pairs)
    order = rows + sorted({m for pair in pairs for m in pair} - set(rows))
    local = {model: k for k, model in enumerate(order)}
    local_pairs = [
        (local[a], local[b]) if local[a] < len(rows) else (local[b], local[a]) for a, b in pairs
    ]
    xs = [arrays[m] for m in order]
    if spec.rdm_comparison == "spearman":
        products = _rank_products(xs, len(rows), device, progress)
    elif spec.kernel == "linear" and _linear_strategy(xs, local_pairs, len(rows)) == "features":
        products = _linear_feature_products(xs, local_pairs, spec.unbiased, device, progress)
    else:
        products = _tile_products(spec, xs, len(rows), device, progress)
    for k, model in enumerate(order):
        if not products.centred_self[k] > DEGENERATE_TOLERANCE * abs(products.raw_self[k]):
            raise ValueError(f"model {ids[model]!r} is degenerate under {spec.name}: its "
                             "centred kernel/RDM is zero, so the similarity is undefined")
    low, high = spec.value_range
    return [
        float(np.clip(products.cross[a, b] / math.sqrt(products.centred_self[a]
                                                       * products.centred_self[b]), low, high))
        for a, b in local_pairs
    ]


def _covering_models(pairs: Sequence[tuple[int, int]]) -> list[int]:
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


def _linear_strategy(
    xs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], n_rows: int
) -> Literal["features", "tiles"]:
    """Whether linear CKA is cheaper from feature products XᵀY or from streamed Gram tiles."""
    n = xs[0].shape[0]
    widths = [x.shape[1] for x in xs]
    feature_cost = n * (sum(widths[a] * widths[b] for a, b in pairs) + sum(w * w for w in widths))
    tile_cost = n * n / 2 * (sum(widths) + 2 * n_rows * len(xs) + 16 * len(xs))
    return "features" if feature_cost <= tile_cost else "tiles"


def _progress(iterable: Iterable[T], total: int, desc: str, enabled: bool) -> Iterable[T]:
    """The iterable, with a tqdm progress bar on stderr when enabled."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr,
                leave=False)


def _linear_feature_products(
    xs: Sequence[np.ndarray],
    pairs: Sequence[tuple[int, int]],
    unbiased: bool,
    device: torch.device,
    progress: bool,
) -> _Products:
    """Linear-kernel HSIC products from centred features: ‖X_aᵀX_b‖²_F with estimator terms."""
    n = xs[0].shape[0]
    centred = [_centred_features(x).to(device) for x in xs]

    def frobenius_squared(a: torch.Tensor, b: torch.Tensor) -> float:
        total = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64, device=device)
        for start in range(0, n, FEATURE_CHUNK_ROWS):
            stop = start + FEATURE_CHUNK_ROWS
            total += a[start:stop].T @ b[start:stop]
        return float(torch.sum(total * total))

    m = len(xs)
    raw_self = np.array([frobenius_squared(x, x) for x in centred])
    raw_cross = np.full((m, m), np.nan)
    for a, b in _progress(pairs, len(pairs), "linear CKA pairs", progress):
        raw_cross[a, b] = frobenius_squared(centred[a], centred[b])
    if not unbiased:
        return _Products(raw_cross, raw_self, raw_self)
    # Centred Gram K = X_c X_cᵀ has zero row sums; with its diagonal k_i = ‖x_i‖² removed,
    # the U-statistic terms of Song et al. (2012) reduce to these per-model vectors.
    norms = np.stack([torch.sum(c.double() ** 2, dim=1).cpu().numpy() for c in centred])
    totals = norms.sum(1)
    correction = (-(1 + 2 / (n - 2)) * (norms @ norms.T)
                  + np.outer(totals, totals) / ((n - 1) * (n - 2)))
    return _Products(raw_cross + correction, raw_self + np.diag(correction), raw_self)


def _tile_products(
    spec: MetricSpec,
    xs: Sequence[np.ndarray],
    n_rows: int,
    device: torch.device,
    progress: bool,
) -> _Products:
    """Centred inner products of all models' n × n kernels (or correlation matrices).

    The matrices are never held whole: tiles of the upper block triangle are computed for all
    models at once and reduced in float64 to raw inner products, row sums and totals, from
    which the estimator's centring follows exactly.
    """
    n = xs[0].shape[0]
    m = len(xs)
    statistics = [_tile_statistics(spec, x, device) for x in xs]
    zero_diagonal = spec.unbiased or spec.family == "rsa"
    block = max(1, min(TILE_ROWS, math.isqrt(BLOCK_BYTES // (8 * m))))
    block = math.ceil(n / math.ceil(n / block))
    starts = range(0, n, block)
    tiles = [(r, c) for r in starts for c in starts if c >= r]
    buffer = torch.empty(m, block * block, dtype=torch.float64, device=device)
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    row_sums = torch.zeros(m, n, dtype=torch.float64, device=device)
    for r, c in _progress(tiles, len(tiles), f"{spec.name} tiles", progress):
        rs, cs = slice(r, min(r + block, n)), slice(c, min(c + block, n))
        height, width = rs.stop - r, cs.stop - c
        flat = buffer[:, : height * width]
        tile = flat.view(m, height, width)
        for k, stats in enumerate(statistics):
            tile[k] = _kernel_tile(spec, stats, rs, cs)
        if r == c and zero_diagonal:
            tile.diagonal(dim1=1, dim2=2).zero_()
        weight = 1.0 if r == c else 2.0
        raw_cross.addmm_(flat[:n_rows], flat.T, alpha=weight)
        raw_self[n_rows:] += weight * torch.linalg.vector_norm(flat[n_rows:], dim=1) ** 2
        row_sums[:, rs] += tile.sum(dim=2)
        if r != c:
            row_sums[:, cs] += tile.sum(dim=1)
    raw_self[:n_rows] = raw_cross.diagonal()
    totals = row_sums.sum(dim=1)
    sum_dots = row_sums[:n_rows] @ row_sums.T
    sum_self = torch.sum(row_sums * row_sums, dim=1)
    if spec.family == "rsa":
        # Pearson over off-diagonal entries (each upper-triangle entry counted twice).
        centred_cross = raw_cross - torch.outer(totals[:n_rows], totals) / (n * (n - 1))
        centred_self = raw_self - totals**2 / (n * (n - 1))
    elif spec.unbiased:
        # U-centred HSIC of Song et al. (2012), times n(n-3), with zero-diagonal kernels.
        centred_cross = (raw_cross + torch.outer(totals[:n_rows], totals) / ((n - 1) * (n - 2))
                         - 2 / (n - 2) * sum_dots)
        centred_self = raw_self + totals**2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * sum_self
    else:
        # tr(KHLH) = tr(KL) - 2/n (K1)ᵀ(L1) + (1ᵀK1)(1ᵀL1)/n², times (n-1)².
        centred_cross = raw_cross - 2 / n * sum_dots + torch.outer(totals[:n_rows], totals) / n**2
        centred_self = raw_self - 2 / n * sum_self + totals**2 / n**2
    return _Products(centred_cross.cpu().numpy(), centred_self.cpu().numpy(),
                     raw_self.cpu().numpy())


class _TileStatistics(NamedTuple):
    """Per-model inputs of kernel tiles: float32 rows on the device (and squared norms, RBF)."""

    rows: torch.Tensor
    squared_norms: torch.Tensor | None


def _tile_statistics(spec: MetricSpec, x: np.ndarray, device: torch.device) -> _TileStatistics:
    """Centred features (CKA) or standardised samples (RSA), ready for tile products."""
    prepare = _standardised_samples if spec.family == "rsa" else _centred_features
    rows32 = prepare(x).to(device)
    if spec.kernel != "rbf":
        return _TileStatistics(rows32, None)
    return _TileStatistics(rows32, torch.sum(rows32.double() ** 2, dim=1).float())


def _centred_features(x: np.ndarray) -> torch.Tensor:
    """Features minus their mean over samples, as float32."""
    centred = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    return torch.from_numpy(centred.astype(np.float32))


def _standardised_samples(x: np.ndarray) -> torch.Tensor:
    """Each sample's features minus their mean, divided by their norm, as float32."""
    centred = x.astype(np.float64) - x.mean(axis=1, dtype=np.float64, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    return torch.from_numpy(centred.astype(np.float32))


def _kernel_tile(spec: MetricSpec, stats: _TileStatistics, rs: slice, cs: slice) -> torch.Tensor:
    """One tile of the model's kernel (CKA) or sample correlation matrix (RSA), float32."""
    products = stats.rows[rs] @ stats.rows[cs].T
    if spec.kernel != "rbf":
        return products
    distances = (stats.squared_norms[rs, None] + stats.squared_norms[None, cs]
                 - 2 * products).clamp_min_(0)
    if rs == cs:
        distances.fill_diagonal_(0)
    return torch.exp_(distances.mul_(-0.5 / spec.sigma**2))


def _rank_products(
    xs: Sequence[np.ndarray], n_rows: int, device: torch.device, progress: bool
) -> _Products:
    """Inner products of the centred ranks of all models' RDM upper triangles."""
    n = xs[0].shape[0]
    m = len(xs)
    length = n * (n - 1) // 2
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    with tempfile.TemporaryDirectory(prefix="simcon-ranks-") as folder:
        store = _RankStore(m, length, folder)
        for k, x in enumerate(_progress(xs, m, "RDM ranks", progress)):
            store.write(k, _centred_ranks(_upper_correlations(
                _standardised_samples(x).to(device))).cpu().numpy())
        chunk = max(1, BLOCK_BYTES // (8 * m))
        for start in _progress(range(0, length, chunk), math.ceil(length / chunk),
                               "rank products", progress):
            ranks = torch.from_numpy(store.read(start, start + chunk)).to(device, torch.float64)
            raw_cross.addmm_(ranks[:n_rows], ranks.T)
            raw_self[n_rows:] += torch.linalg.vector_norm(ranks[n_rows:], dim=1) ** 2
    raw_self[:n_rows] = raw_cross.diagonal()
    # RDM = 1 - correlation reverses every model's ranks, which leaves their correlation as is.
    self_products = raw_self.cpu().numpy()
    return _Products(raw_cross.cpu().numpy(), self_products, self_products)


def _upper_correlations(rows: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of rows @ rowsᵀ, row by row, computed strip by strip."""
    n = rows.shape[0]
    pieces = []
    for start in range(0, n, TILE_ROWS):
        stop = min(start + TILE_ROWS, n)
        strip = rows[start:stop] @ rows[start:].T
        upper = torch.ones_like(strip, dtype=torch.bool).triu_(diagonal=1)
        pieces.append(strip[upper])
    return torch.cat(pieces)


class _RankStore:
    """Centred ranks of m models, each of N values, read back in column chunks.

    Held in memory up to RANK_STORE_BYTES; larger stores live in a file under `folder`, read
    and written explicitly so that they occupy the page cache rather than process memory.
    """

    def __init__(self, m: int, length: int, folder: str) -> None:
        self.m = m
        self.length = length
        in_memory = m * length * 4 <= RANK_STORE_BYTES
        self.array = np.empty((m, length), dtype=np.int32) if in_memory else None
        self.path = os.path.join(folder, "ranks.int32")

    def write(self, k: int, ranks: np.ndarray) -> None:
        """Store model k's ranks."""
        if self.array is not None:
            self.array[k] = ranks
            return
        with open(self.path, "ab") as handle:
            assert handle.tell() == k * self.length * 4, "ranks are written in model order"
            ranks.astype(np.int32, copy=False).tofile(handle)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Ranks of all models at positions start..stop-1, as an (m, stop - start) array."""
        stop = min(stop, self.length)
        if self.array is not None:
            return self.array[:, start:stop]
        return np.stack([
            np.fromfile(self.path, dtype=np.int32, count=stop - start,
                        offset=(k * self.length + start) * 4)
            for k in range(self.m)
        ])


def _centred_ranks(values: torch.Tensor) -> torch.Tensor:
    """2 × (average rank, ties shared) - (N + 1) of each of N float32 values, as int32."""
    length = values.numel()
    # Order-preserving integer keys of the floats (-0.0 folded onto 0.0), packed with each
    # value's position so that one integer sort yields both the order and the permutation.
    bits = (values + 0.0).view(torch.int32)
    keys = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)
    packed = (keys << 32) | torch.arange(length, dtype=torch.int64, device=values.device)
    if packed.is_cuda:
        packed = torch.sort(packed).values
    else:
        packed = torch.from_numpy(np.sort(packed.numpy()))
    positions = packed & 0xFFFFFFFF
    sorted_keys = packed >> 32
    del packed
    starts_group = torch.ones(length, dtype=torch.bool, device=values.device)
    starts_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    del sorted_keys
    group_starts = torch.nonzero(starts_group).squeeze(1)
    group_ends = torch.cat([group_starts[1:], group_starts.new_tensor([length])]) - 1
    group = torch.cumsum(starts_group, dim=0) - 1
    centred = torch.empty(length, dtype=torch.int32, device=values.device)
    centred[positions] = (group_starts + group_ends + 1 - length)[group].to(torch.int32)
    return centred
