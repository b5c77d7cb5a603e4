"""CKA with linear and RBF kernels, biased and unbiased HSIC, distance correlation (HSIC of Euclidean distance
matrices) and the RSM norm difference (the cosine of two Euclidean distance matrices), all pairs per call; the streamed kernel tiles also serve RSA's Pearson comparison (tiles of the sample
correlation matrices).

Linear CKA is computed in feature space (‖X_aᵀX_b‖²_F with the estimator's terms) or from streamed Gram tiles,
whichever costs less; RBF CKA and distance correlation from streamed tiles of all models' kernels (distance
matrices) at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine
from simcon.similarity.engine import Products, centred_features, progress_bar, standardised_samples, unit_rows


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """CKA, distance correlation or the RSM norm difference's similarity form of each pair of model indices.

    Distance correlation is CKA of the Euclidean distance matrices: double centring of a distance
    matrix is the biased HSIC's centring H D H, and the bias-corrected form of Székely and Rizzo
    (2014) is its U-centring. The biased form reports dCor = sqrt(dCor²), the bias-corrected one
    dCor² itself, which can be negative.
    """

    def products(xs: Sequence[np.ndarray], n_rows: int, local_pairs: Sequence[tuple[int, int]]) -> Products:
        if spec.kernel == "linear" and linear_strategy(xs, local_pairs, n_rows) == "features":
            return linear_feature_products(xs, local_pairs, spec.unbiased, device, progress)
        return tile_products(spec, xs, n_rows, device, progress)

    scores = engine.inner_product_scores(spec, arrays, ids, pairs, products)
    if spec.family == "dcor" and not spec.unbiased:
        return [math.sqrt(score) for score in scores]
    return scores


def linear_strategy(
    xs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], n_rows: int
) -> Literal["features", "tiles"]:
    """Whether linear CKA is cheaper from feature products XᵀY or from streamed Gram tiles."""
    n = xs[0].shape[0]
    widths = [x.shape[1] for x in xs]
    feature_cost = n * (sum(widths[a] * widths[b] for a, b in pairs) + sum(w * w for w in widths))
    tile_cost = n * n / 2 * (sum(widths) + 2 * n_rows * len(xs) + 16 * len(xs))
    return "features" if feature_cost <= tile_cost else "tiles"


def linear_feature_products(
    xs: Sequence[np.ndarray],
    pairs: Sequence[tuple[int, int]],
    unbiased: bool,
    device: torch.device,
    progress: bool,
) -> Products:
    """Linear-kernel HSIC products from centred features: ‖X_aᵀX_b‖²_F with estimator terms."""
    n = xs[0].shape[0]
    centred = [centred_features(x).to(device) for x in xs]

    def frobenius_squared(a: torch.Tensor, b: torch.Tensor) -> float:
        total = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64, device=device)
        for start in range(0, n, engine.FEATURE_CHUNK_ROWS):
            stop = start + engine.FEATURE_CHUNK_ROWS
            total += a[start:stop].T @ b[start:stop]
        return float(torch.sum(total * total))

    m = len(xs)
    raw_self = np.array([frobenius_squared(x, x) for x in centred])
    raw_cross = np.full((m, m), np.nan)
    for a, b in progress_bar(pairs, len(pairs), "linear CKA pairs", progress):
        raw_cross[a, b] = frobenius_squared(centred[a], centred[b])
    if not unbiased:
        return Products(raw_cross, raw_self, raw_self)
    # Centred Gram K = X_c X_cᵀ has zero row sums; with its diagonal k_i = ‖x_i‖² removed,
    # the U-statistic terms of Song et al. (2012) reduce to these per-model vectors.
    norms = np.stack([torch.sum(c.double() ** 2, dim=1).cpu().numpy() for c in centred])
    totals = norms.sum(1)
    correction = -(1 + 2 / (n - 2)) * (norms @ norms.T) + np.outer(totals, totals) / ((n - 1) * (n - 2))
    return Products(raw_cross + correction, raw_self + np.diag(correction), raw_self)


def tile_products(
    spec: MetricSpec,
    xs: Sequence[np.ndarray],
    n_rows: int,
    device: torch.device,
    progress: bool,
) -> Products:
    """Centred inner products of all models' n × n kernels (or correlation matrices).

    The matrices are never held whole. Each row strip of height h of the upper triangle is
    computed as its h × h diagonal tile (counted once) and tiles of the columns right of it
    (counted twice), for all models at once with one batched float32 product. Each tile is
    reduced to the raw inner products of all pairs by float32 products over its rows, whose
    results are accumulated in float64 (see engine.TILE_COLUMNS for the error). The estimator's
    centring then follows exactly from the per-model row sums: summed tile by tile (RBF), or
    in closed form from the features (linear kernel, correlations).
    """
    n = xs[0].shape[0]
    m = len(xs)
    rows, squared_norms = _tile_statistics(spec, xs, device)
    zero_diagonal = spec.unbiased or spec.family == "rsa"
    height = min(engine.TILE_ROWS, n)
    height = math.ceil(n / math.ceil(n / height))
    width = max(height, min(engine.TILE_COLUMNS, engine.BLOCK_BYTES // (4 * m * height)))
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
    for rs, cs in progress_bar(tiles, len(tiles), f"{spec.name} tiles", progress):
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
    if spec.family == "rsm":
        # No centring: the inner products of the unshifted matrices.
        centred_cross = (
            raw_cross
            + torch.outer(shift[:n_rows], totals)
            + torch.outer(totals[:n_rows], shift)
            + entries * torch.outer(shift[:n_rows], shift)
        )
        centred_self = unshifted_self
    elif spec.family == "rsa":
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
    return Products(centred_cross.cpu().numpy(), centred_self.cpu().numpy(), unshifted_self.cpu().numpy())


def _diagonal_block_tiles(rows: slice) -> list[tuple[slice, slice]]:
    """Tiles covering the upper triangle of the block rows × rows: diagonal tiles at most
    engine.DIAGONAL_TILE_ROWS high and the off-diagonal tiles between them."""
    if rows.stop - rows.start <= engine.DIAGONAL_TILE_ROWS:
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


def rsa_rows(spec: MetricSpec) -> Callable[[np.ndarray], torch.Tensor]:
    """The float32 rows whose inner products (correlation, cosine) or squared distances (euclidean) give RSA's
    RDM: standardised samples, unit samples, or centred features."""
    if spec.rdm == "correlation":
        return standardised_samples
    if spec.rdm == "cosine":
        return lambda x: unit_rows(x, torch.device("cpu"))
    return centred_features


def _tile_statistics(
    spec: MetricSpec, xs: Sequence[np.ndarray], device: torch.device
) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
    """Centred features (CKA, distance correlation) or RSA's rows (rsa_rows) of all models as float32, stacked
    (m, n, d) when all widths agree, and their squared norms (m, n) for the RBF and distance kernels and RSA's
    Euclidean RDM."""
    prepare = rsa_rows(spec) if spec.family == "rsa" else centred_features
    if len({x.shape[1] for x in xs}) == 1:
        rows: torch.Tensor | list[torch.Tensor] = torch.empty(len(xs), *xs[0].shape, dtype=torch.float32, device=device)
        for k, x in enumerate(xs):
            rows[k] = prepare(x)
    else:
        rows = [prepare(x).to(device) for x in xs]
    if spec.kernel not in ("rbf", "distance") and spec.rdm != "euclidean":
        return rows, None
    return rows, torch.stack([torch.sum(r.double() ** 2, dim=1).float() for r in rows])


def _kernel_tile(
    spec: MetricSpec,
    rows: torch.Tensor | list[torch.Tensor],
    squared_norms: torch.Tensor | None,
    rs: slice,
    cs: slice,
    out: torch.Tensor,
) -> None:
    """One tile of every model's kernel (CKA), distance matrix (distance correlation) or RSA's sample correlations,
    cosines or squared distances into `out`, an (m, rows, columns) float32 array."""
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
    if spec.kernel == "distance":
        torch.sqrt_(distances)
    elif spec.kernel == "rbf":
        assert spec.sigma is not None
        torch.exp_(distances.mul_(-0.5 / spec.sigma**2))
