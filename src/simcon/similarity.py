"""Representational similarity of many models, all pairs per call: CKA (linear, RBF), RSA,
neighbourhood alignment (mutual k-NN, Jaccard k-NN, CKNNA) and orthogonal Procrustes.

Definitions (docs/design.md §3; docs/metrics.md for the neighbourhood and Procrustes metrics):
linear kernel K = XXᵀ; RBF kernel K_ij = exp(-‖x_i - x_j‖² / (2σ²)) with an absolute bandwidth
σ; HSIC biased (double centring) or unbiased (U-centring, Székely–Rizzo / Song et al. 2012);
CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). RSA: RDM = 1 - Pearson correlation
between samples; two RDMs are compared by Spearman or Pearson correlation over the upper
triangle. Neighbourhood metrics compare each sample's k nearest neighbours by cosine (self
excluded) in the two representations, as the Platonic Representation Hypothesis's code does
(Huh et al. 2024). Procrustes: the nuclear norm of XᵀY of the centred, unit-Frobenius-norm
representations.

CKA and RSA are evaluated as a normalised centred inner product C_ab / sqrt(C_aa C_bb) between
per-model statistics that are computed once per call: centred features (linear CKA in feature
space), streamed kernel / correlation tiles of all models at once (CKA, RSA Pearson), or ranks
of each RDM (RSA Spearman). The neighbourhood metrics compute each model's k-NN graph once and
score pairs from the graphs; Procrustes prepares each model's centred, normalised features
once and scores each pair from one product XᵀY. Large sums are accumulated in float64; matrix
products of features run in float32.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from simcon.metrics import MetricSpec, get_metric
from simcon.pair_cache import PairCache, array_digest

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


def angular_shape_distance(similarity: np.ndarray | float) -> np.ndarray | float:
    """The angular shape distance arccos(s) (radians, in [0, π/2]) of Procrustes similarities s.

    A metric on shapes (Williams et al. 2021): 0 for identical shapes, π/2 for orthogonal ones.
    The registry holds the similarity, which every analysis reads as larger = more similar.
    """
    return np.arccos(np.clip(similarity, 0.0, 1.0))


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
            raise ValueError(f"features of model {model!r} must be (n, d) with d >= 1, got shape {array.shape}")
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
            raise ValueError(
                f"features of model {model!r} are constant across samples (zero variance); its similarity is undefined"
            )
        if spec.family != "rsa":
            continue
        constant_samples = np.flatnonzero(np.ptp(array, axis=1) == 0)
        if constant_samples.size:
            raise ValueError(
                f"features of model {model!r} are constant within sample "
                f"{constant_samples[0]}; the correlation distance of its RDM "
                "is undefined"
            )
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
    if spec.family == "knn":
        return _neighbour_scores(spec, arrays, ids, pairs, device, progress)
    if spec.family == "procrustes":
        return _procrustes_scores(arrays, pairs, device, progress)
    rows = _covering_models(pairs)
    order = rows + sorted({m for pair in pairs for m in pair} - set(rows))
    local = {model: k for k, model in enumerate(order)}
    local_pairs = [(local[a], local[b]) if local[a] < len(rows) else (local[b], local[a]) for a, b in pairs]
    xs = [arrays[m] for m in order]
    if spec.rdm_comparison == "spearman":
        products = _rank_products(xs, len(rows), device, progress)
    elif spec.kernel == "linear" and _linear_strategy(xs, local_pairs, len(rows)) == "features":
        products = _linear_feature_products(xs, local_pairs, spec.unbiased, device, progress)
    else:
        products = _tile_products(spec, xs, len(rows), device, progress)
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
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False)


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
    correction = -(1 + 2 / (n - 2)) * (norms @ norms.T) + np.outer(totals, totals) / ((n - 1) * (n - 2))
    return _Products(raw_cross + correction, raw_self + np.diag(correction), raw_self)


def _tile_products(
    spec: MetricSpec,
    xs: Sequence[np.ndarray],
    n_rows: int,
    device: torch.device,
    progress: bool,
) -> _Products:
    """Centred inner products of all models' n × n kernels (or correlation matrices).

    The matrices are never held whole. Each row strip of height h of the upper triangle is
    computed as its h × h diagonal tile (counted once) and tiles of the columns right of it
    (counted twice), for all models at once with one batched float32 product. Each tile is
    reduced to the raw inner products of all pairs by float32 products over its rows, whose
    results are accumulated in float64 (see TILE_COLUMNS for the error). The estimator's
    centring then follows exactly from the per-model row sums: summed tile by tile (RBF), or
    in closed form from the features (linear kernel, correlations).
    """
    n = xs[0].shape[0]
    m = len(xs)
    rows, squared_norms = _tile_statistics(spec, xs, device)
    zero_diagonal = spec.unbiased or spec.family == "rsa"
    height = min(TILE_ROWS, n)
    height = math.ceil(n / math.ceil(n / height))
    width = max(height, min(TILE_COLUMNS, BLOCK_BYTES // (4 * m * height)))
    tiles: list[tuple[slice, slice]] = []
    for r in range(0, n, height):
        rs = slice(r, min(r + height, n))
        tiles.extend(_diagonal_block_tiles(rs))
        right = n - rs.stop
        if right:
            pieces = math.ceil(right / width)
            edges = [rs.stop + right * k // pieces for k in range(pieces + 1)]
            tiles.extend((rs, slice(a, b)) for a, b in zip(edges[:-1], edges[1:]))
    buffer = torch.empty(m * height * max(height, width), dtype=torch.float32, device=device)
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    row_sums = torch.zeros(m, n, dtype=torch.float64, device=device)
    # Every estimator is invariant to a constant added to the entries it uses (all entries,
    # or the off-diagonal ones when the diagonal is zeroed). Subtracting each model's mean
    # entry first keeps the raw inner products close to the centred ones, so the float32
    # partial sums carry no large cancelling part.
    entries = n * (n - 1) if zero_diagonal else n * n
    shift = torch.zeros(m, dtype=torch.float64, device=device)
    if squared_norms is None:
        # Linear kernel of the float32 rows: row i sums to x_i · Σ_j x_j, less x_i · x_i when
        # the diagonal is zeroed. These are O(n d) float32 products over d features, like
        # the kernel entries themselves, instead of n² tile entries summed.
        for k, model_rows in enumerate(rows):
            row_sums[k] = model_rows @ model_rows.sum(dim=0)
            if zero_diagonal:
                row_sums[k] -= torch.linalg.vector_norm(model_rows, dim=1).double() ** 2
        if spec.family == "rsa":
            # (Centred features already give kernels of mean zero, linear CKA needs no shift.)
            shift = (row_sums.sum(dim=1) / entries).float().double()
            row_sums -= shift[:, None] * (n - 1 if zero_diagonal else n)
    for rs, cs in _progress(tiles, len(tiles), f"{spec.name} tiles", progress):
        diagonal = rs == cs
        tile = buffer[: m * (rs.stop - rs.start) * (cs.stop - cs.start)].view(m, rs.stop - rs.start, cs.stop - cs.start)
        _kernel_tile(spec, rows, squared_norms, rs, cs, tile)
        if diagonal and zero_diagonal:
            tile.diagonal(dim1=1, dim2=2).zero_()
        if squared_norms is not None and rs.start == 0 and diagonal:
            size = rs.stop * rs.stop - (rs.stop if zero_diagonal else 0)
            shift = (tile.sum(dim=(1, 2), dtype=torch.float64) / max(size, 1)).float().double()
        if spec.family == "rsa" or squared_norms is not None:
            tile.sub_(shift.float()[:, None, None])
            if diagonal and zero_diagonal:
                tile.diagonal(dim1=1, dim2=2).zero_()
        weight = 1.0 if diagonal else 2.0
        cross, self_ = _tile_gram(tile, n_rows)
        raw_cross.add_(cross, alpha=weight)
        raw_self[n_rows:] += weight * self_
        if squared_norms is not None:
            # Float32 sums of one tile row (column), accumulated in float64.
            row_sums[:, rs] += tile.sum(dim=2).double()
            if not diagonal:
                row_sums[:, cs] += tile.sum(dim=1).double()
    raw_self[:n_rows] = raw_cross.diagonal()
    totals = row_sums.sum(dim=1)
    # Inner product of each unshifted kernel with itself, for the degeneracy check.
    unshifted_self = raw_self + 2 * shift * totals + shift**2 * entries
    sum_dots = row_sums[:n_rows] @ row_sums.T
    sum_self = torch.sum(row_sums * row_sums, dim=1)
    if spec.family == "rsa":
        # Pearson over off-diagonal entries (each upper-triangle entry counted twice).
        centred_cross = raw_cross - torch.outer(totals[:n_rows], totals) / (n * (n - 1))
        centred_self = raw_self - totals**2 / (n * (n - 1))
    elif spec.unbiased:
        # U-centred HSIC of Song et al. (2012), times n(n-3), with zero-diagonal kernels.
        centred_cross = raw_cross + torch.outer(totals[:n_rows], totals) / ((n - 1) * (n - 2)) - 2 / (n - 2) * sum_dots
        centred_self = raw_self + totals**2 / ((n - 1) * (n - 2)) - 2 / (n - 2) * sum_self
    else:
        # tr(KHLH) = tr(KL) - 2/n (K1)ᵀ(L1) + (1ᵀK1)(1ᵀL1)/n², times (n-1)².
        centred_cross = raw_cross - 2 / n * sum_dots + torch.outer(totals[:n_rows], totals) / n**2
        centred_self = raw_self - 2 / n * sum_self + totals**2 / n**2
    return _Products(centred_cross.cpu().numpy(), centred_self.cpu().numpy(), unshifted_self.cpu().numpy())


def _diagonal_block_tiles(rows: slice) -> list[tuple[slice, slice]]:
    """Tiles covering the upper triangle of the block rows × rows: diagonal tiles at most
    DIAGONAL_TILE_ROWS high and the off-diagonal tiles between them."""
    if rows.stop - rows.start <= DIAGONAL_TILE_ROWS:
        return [(rows, rows)]
    middle = (rows.start + rows.stop) // 2
    top, bottom = slice(rows.start, middle), slice(middle, rows.stop)
    return [*_diagonal_block_tiles(top), (top, bottom), *_diagonal_block_tiles(bottom)]


def _tile_gram(tile: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner products of the models' entries of an (m, rows, columns) float32 tile, in float64.

    Returns the products of the first n_rows models with all models, (n_rows, m), and the
    squared norms of the other models' entries. Each tile row gives one float32 product of
    `columns` terms; the rows' products are summed in float64.
    """
    m = tile.shape[0]
    pieces = tile.transpose(0, 1)
    if 2 * n_rows >= m:
        gram = torch.bmm(pieces, pieces.transpose(1, 2)).double().sum(dim=0)
        return gram[:n_rows], gram.diagonal()[n_rows:]
    cross = torch.bmm(pieces[:, :n_rows], pieces.transpose(1, 2)).double().sum(dim=0)
    squares = torch.linalg.vector_norm(tile[n_rows:], dim=2) ** 2
    return cross, squares.double().sum(dim=1)


def _tile_statistics(
    spec: MetricSpec, xs: Sequence[np.ndarray], device: torch.device
) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
    """Centred features (CKA) or standardised samples (RSA) of all models as float32, stacked
    (m, n, d) when all widths agree, and their squared norms (m, n) for the RBF kernel."""
    prepare = _standardised_samples if spec.family == "rsa" else _centred_features
    if len({x.shape[1] for x in xs}) == 1:
        rows: torch.Tensor | list[torch.Tensor] = torch.empty(len(xs), *xs[0].shape, dtype=torch.float32, device=device)
        for k, x in enumerate(xs):
            rows[k] = prepare(x)
    else:
        rows = [prepare(x).to(device) for x in xs]
    if spec.kernel != "rbf":
        return rows, None
    return rows, torch.stack([torch.sum(r.double() ** 2, dim=1).float() for r in rows])


def _centred_features(x: np.ndarray) -> torch.Tensor:
    """Features minus their mean over samples (the mean summed in float64), as float32."""
    features = torch.from_numpy(np.ascontiguousarray(x))
    mean = features.mean(dim=0, dtype=torch.float64).to(features.dtype)
    return (features - mean).float()


def _standardised_samples(x: np.ndarray) -> torch.Tensor:
    """Each sample's features minus their mean, divided by their norm, as float32."""
    centred = x.astype(np.float64) - x.mean(axis=1, dtype=np.float64, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    return torch.from_numpy(centred.astype(np.float32))


def _kernel_tile(
    spec: MetricSpec,
    rows: torch.Tensor | list[torch.Tensor],
    squared_norms: torch.Tensor | None,
    rs: slice,
    cs: slice,
    out: torch.Tensor,
) -> None:
    """One tile of every model's kernel (CKA) or sample correlation matrix (RSA) into `out`,
    an (m, rows, columns) float32 array."""
    if isinstance(rows, torch.Tensor):
        torch.bmm(rows[:, rs], rows[:, cs].transpose(1, 2), out=out)
    else:
        for k, r in enumerate(rows):
            torch.matmul(r[rs], r[cs].T, out=out[k])
    if squared_norms is None:
        return
    distances = out.mul_(-2).add_(squared_norms[:, rs, None]).add_(squared_norms[:, None, cs])
    distances.clamp_min_(0)
    if rs == cs:
        distances.diagonal(dim1=1, dim2=2).zero_()
    torch.exp_(distances.mul_(-0.5 / spec.sigma**2))


def _rank_products(xs: Sequence[np.ndarray], n_rows: int, device: torch.device, progress: bool) -> _Products:
    """Inner products of the centred ranks of all models' RDM upper triangles."""
    n = xs[0].shape[0]
    m = len(xs)
    length = n * (n - 1) // 2
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    with tempfile.TemporaryDirectory(prefix="simcon-ranks-") as folder:
        store = _RankStore(m, length, folder)
        for k, x in enumerate(_progress(xs, m, "RDM ranks", progress)):
            store.write(k, _centred_ranks(_upper_correlations(_standardised_samples(x).to(device))).cpu().numpy())
        chunk = max(1, BLOCK_BYTES // (8 * m))
        for start in _progress(range(0, length, chunk), math.ceil(length / chunk), "rank products", progress):
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
        return np.stack(
            [
                np.fromfile(self.path, dtype=np.int32, count=stop - start, offset=(k * self.length + start) * 4)
                for k in range(self.m)
            ]
        )


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


# --- Neighbourhood metrics -----------------------------------------------------------------


class _NeighbourGraph(NamedTuple):
    """Each sample's k nearest neighbours, indices ascending per row (n, k), and their cosines."""

    indices: torch.Tensor
    cosines: torch.Tensor


def _neighbour_graph(x: np.ndarray, k: int, device: torch.device) -> _NeighbourGraph:
    """The k nearest neighbours of every sample by cosine similarity, the sample itself excluded.

    Rows are normalised in float64 and compared in float32, strip by strip (at most
    BLOCK_BYTES of cosines at once). A row of zeros stays zero (cosine 0 with every sample, as
    torch's F.normalize leaves it in the PRH code). Of neighbours tied at the k-th largest
    cosine, the lower sample indices are taken.
    """
    features = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    wide = features.double()
    norms = torch.linalg.vector_norm(wide, dim=1, keepdim=True)
    unit = (wide / torch.where(norms > 0, norms, 1.0)).float()
    del wide
    n = unit.shape[0]
    height = max(1, min(n, BLOCK_BYTES // (4 * n)))
    indices = torch.empty(n, k, dtype=torch.int64, device=device)
    cosines = torch.empty(n, k, dtype=torch.float64, device=device)
    for start in range(0, n, height):
        rs = slice(start, min(start + height, n))
        strip = unit[rs] @ unit.T
        own = torch.arange(rs.stop - rs.start, device=device)
        strip[own, own + start] = -math.inf
        threshold = torch.topk(strip, k, dim=1).values[:, -1:]
        above = strip > threshold
        tied = strip == threshold
        chosen = above | tied
        # Rows with more than one neighbour at the threshold keep the lowest-indexed ones.
        surplus = torch.nonzero(chosen.sum(dim=1) > k).squeeze(1)
        if surplus.numel():
            wanted = k - above[surplus].sum(dim=1, keepdim=True)
            ties = tied[surplus]
            chosen[surplus] = above[surplus] | (ties & (torch.cumsum(ties, dim=1) <= wanted))
        columns = torch.nonzero(chosen)[:, 1].view(-1, k)
        indices[rs] = columns
        cosines[rs] = strip.gather(1, columns).double()
    return _NeighbourGraph(indices, cosines)


def _neighbour_scores(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Mutual k-NN, Jaccard k-NN or CKNNA of each pair, from each model's k-NN graph."""
    k = spec.neighbours
    assert k is not None
    models = sorted({m for pair in pairs for m in pair})
    graphs = {
        m: _neighbour_graph(arrays[m], k, device)
        for m in _progress(models, len(models), f"{spec.name} graphs", progress)
    }
    scored = _progress(pairs, len(pairs), f"{spec.name} pairs", progress)
    if spec.knn_statistic != "cknna":
        values = []
        for a, b in scored:
            shared = _matched(graphs[a], graphs[b]).sum(dim=1).double()
            per_sample = shared / k if spec.knn_statistic == "mutual" else shared / (2 * k - shared)
            values.append(float(per_sample.mean()))
        return values
    self_hsic = {m: _masked_hsic(graphs[m], graphs[m]) for m in models}
    for m, value in self_hsic.items():
        if not value > 0:
            raise ValueError(
                f"model {ids[m]!r} is degenerate under {spec.name}: the HSIC of its "
                "neighbour-masked kernel with itself is not positive, so the "
                "similarity is undefined"
            )
    return [_masked_hsic(graphs[a], graphs[b]) / math.sqrt(self_hsic[a] * self_hsic[b]) for a, b in scored]


def _matched(first: _NeighbourGraph, second: _NeighbourGraph) -> torch.Tensor:
    """(n, k) bool: whether each neighbour of `first` is also a neighbour of that sample in
    `second`."""
    k = second.indices.shape[1]
    positions = torch.searchsorted(second.indices, first.indices).clamp_max_(k - 1)
    return second.indices.gather(1, positions) == first.indices


def _masked_hsic(first: _NeighbourGraph, second: _NeighbourGraph) -> float:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of A = M ∘ K and B = M ∘ L, times n(n-3),
    symmetrised.

    K and L are the two models' cosine kernels and M_ij = 1 where j is among the k nearest
    neighbours of i in both (not symmetric). As in the PRH code, the estimator is applied to
    these non-symmetric matrices as written: tr(AB) + (1ᵀA1)(1ᵀB1)/((n-1)(n-2))
    - 2/(n-2) 1ᵀAB1, each term summed over the at most nk entries of M. Its last term is not
    symmetric in A and B (the PRH's value depends on the order of the two models); the mean
    of 1ᵀAB1 and 1ᵀBA1 is taken instead.
    """
    n, k = first.indices.shape
    positions = torch.searchsorted(second.indices, first.indices).clamp_max_(k - 1)
    shared = second.indices.gather(1, positions) == first.indices
    a = torch.where(shared, first.cosines, 0.0)
    b = torch.where(shared, second.cosines.gather(1, positions), 0.0)
    rows = torch.arange(n, device=a.device)[:, None]
    # Entry (i, j) has key i·n + j; rows ascend and so do the indices within a row, so the
    # keys are sorted. tr(AB) = Σ A_ij B_ji looks up (j, i).
    keys = (rows * n + first.indices).flatten()
    transposed = (first.indices * n + rows).flatten()
    found = torch.searchsorted(keys, transposed).clamp_max_(n * k - 1)
    b_transposed = torch.where(keys[found] == transposed, b.flatten()[found], 0.0)
    trace = torch.sum(a.flatten() * b_transposed)
    column_sums = torch.zeros(2, n, dtype=torch.float64, device=a.device).index_add_(
        1, first.indices.flatten(), torch.stack([a.flatten(), b.flatten()])
    )
    cross_sums = (torch.dot(column_sums[0], b.sum(dim=1)) + torch.dot(column_sums[1], a.sum(dim=1))) / 2
    value = trace + a.sum() * b.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * cross_sums
    return float(value)


# --- Orthogonal Procrustes -----------------------------------------------------------------


def _procrustes_scores(
    arrays: Sequence[np.ndarray],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """‖XᵀY‖_* of each pair's centred, unit-Frobenius-norm features X, Y.

    The product XᵀY runs in float32 over row chunks of FEATURE_CHUNK_ROWS, summed in float64.
    Its singular values are the square roots of the eigenvalues of the float64 Gram matrix of
    its narrower side (zero-padding the narrower model adds only zero singular values). A
    singular value near 0 thereby errs by about sqrt(u) σ_max (u = 2⁻⁵³), 1.5e-8 of the
    largest one.
    """
    models = sorted({m for pair in pairs for m in pair})
    prepared = {m: _normalised_shape(arrays[m], device) for m in models}
    values = []
    for a, b in _progress(pairs, len(pairs), "procrustes pairs", progress):
        x, y = prepared[a], prepared[b]
        if x.shape[1] > y.shape[1]:
            x, y = y, x
        product = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, device=device)
        for start in range(0, x.shape[0], FEATURE_CHUNK_ROWS):
            stop = start + FEATURE_CHUNK_ROWS
            product += x[start:stop].T @ y[start:stop]
        eigenvalues = torch.linalg.eigvalsh(product @ product.T)
        values.append(float(np.clip(float(eigenvalues.clamp_min(0).sqrt().sum()), 0.0, 1.0)))
    return values


def _normalised_shape(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Features minus their mean over samples, divided by their Frobenius norm (both in
    float64), as float32 on the device."""
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    wide -= wide.mean(dim=0)
    wide /= torch.linalg.matrix_norm(wide)
    return wide.float()
