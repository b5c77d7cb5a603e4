"""Neighbourhood metrics, all pairs per call: mutual k-NN, Jaccard k-NN, CKNNA, second-order cosine similarity
and rank similarity.

Each sample's k nearest neighbours by cosine (self excluded) in each model, found as the Platonic Representation
Hypothesis's code finds them (Huh et al. 2024); each model's k-NN graph is computed once, and each pair is scored
from the two graphs (second-order cosine also from the cosines of each model at the other's neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine
from simcon.similarity.engine import progress_bar, unit_rows


class NeighbourGraph(NamedTuple):
    """Each sample's k nearest neighbours, indices ascending per row (n, k), and their cosines."""

    indices: torch.Tensor
    cosines: torch.Tensor


def neighbour_graph(x: np.ndarray, k: int, device: torch.device) -> NeighbourGraph:
    """The k nearest neighbours of every sample by cosine similarity, the sample itself excluded.

    Rows are normalised in float64 and compared in float32, strip by strip (at most
    engine.BLOCK_BYTES of cosines at once). A row of zeros stays zero (cosine 0 with every sample, as
    torch's F.normalize leaves it in the PRH code). Of neighbours tied at the k-th largest
    cosine, the lower sample indices are taken.
    """
    unit = unit_rows(x, device)
    n = unit.shape[0]
    height = max(1, min(n, engine.BLOCK_BYTES // (4 * n)))
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
    return NeighbourGraph(indices, cosines)


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Mutual k-NN, Jaccard k-NN, CKNNA, second-order cosine or rank similarity of each pair, from each
    model's k-NN graph."""
    k = spec.neighbours
    assert k is not None
    models = sorted({m for pair in pairs for m in pair})
    graphs = {
        m: neighbour_graph(arrays[m], k, device)
        for m in progress_bar(models, len(models), f"{spec.name} graphs", progress)
    }
    scored = progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress)
    if spec.knn_statistic == "second_order_cosine":
        partners: dict[int, list[int]] = {m: [] for m in models}
        for a, b in pairs:
            partners[a].append(b)
            partners[b].append(a)
        across = {}
        for m in progress_bar(models, len(models), f"{spec.name} cosines", progress):
            at = cosines_at(arrays[m], [graphs[other] for other in partners[m]], device)
            across |= {(m, other): values for other, values in zip(partners[m], at)}
        return [_second_order_cosine(graphs[a], graphs[b], across[(a, b)], across[(b, a)]) for a, b in scored]
    if spec.knn_statistic == "rank":
        ranks = {m: neighbour_ranks(graphs[m]) for m in models}
        return [_rank_similarity(graphs[a], graphs[b], ranks[a], ranks[b]) for a, b in scored]
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


def _matched(first: NeighbourGraph, second: NeighbourGraph) -> torch.Tensor:
    """(n, k) bool: whether each neighbour of `first` is also a neighbour of that sample in
    `second`."""
    k = second.indices.shape[1]
    positions = torch.searchsorted(second.indices, first.indices).clamp_max_(k - 1)
    return second.indices.gather(1, positions) == first.indices


def _masked_hsic(first: NeighbourGraph, second: NeighbourGraph) -> float:
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


def neighbour_ranks(graph: NeighbourGraph) -> torch.Tensor:
    """(n, k) int64: the rank (1 = nearest) of each neighbour of the graph among its row's neighbours, by
    descending cosine; neighbours of equal cosine are ranked by ascending sample index."""
    # A stable sort keeps the ascending indices of a row's tied cosines in order.
    order = torch.sort(-graph.cosines, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(1, order.shape[1] + 1, device=order.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _rank_similarity(
    first: NeighbourGraph, second: NeighbourGraph, first_ranks: torch.Tensor, second_ranks: torch.Tensor
) -> float:
    """Mean over samples of Σ_j 2 / ((1 + |r_X(j) - r_Y(j)|)(r_X(j) + r_Y(j))) over the shared neighbours j,
    divided by the harmonic number of their count (0 for a sample with none): Wang et al. (2020) as ReSi
    computes it."""
    k = second.indices.shape[1]
    positions = torch.searchsorted(second.indices, first.indices).clamp_max_(k - 1)
    shared = second.indices.gather(1, positions) == first.indices
    r_first = first_ranks.double()
    r_second = second_ranks.gather(1, positions).double()
    terms = torch.where(shared, 2 / ((1 + (r_first - r_second).abs()) * (r_first + r_second)), 0.0)
    count = shared.sum(dim=1)
    harmonic = torch.cumsum(1 / torch.arange(1, k + 1, dtype=torch.float64, device=terms.device), dim=0)
    normaliser = torch.where(count > 0, harmonic[(count - 1).clamp_min(0)], 1.0)
    return float((terms.sum(dim=1) / normaliser).mean())


def cosines_at(x: np.ndarray, others: Sequence[NeighbourGraph], device: torch.device) -> list[torch.Tensor]:
    """The cosines of one model's samples at each other graph's neighbours: for each graph, (n, k) float64 with
    entry (i, j) = c(i, j-th neighbour of i in that graph). From float32 strips of the cosine matrix as
    neighbour_graph computes them (at most engine.BLOCK_BYTES at once), one pass for all graphs."""
    unit = unit_rows(x, device)
    n = unit.shape[0]
    height = max(1, min(n, engine.BLOCK_BYTES // (4 * n)))
    values = [torch.empty(graph.indices.shape, dtype=torch.float32, device=device) for graph in others]
    for start in range(0, n, height):
        rs = slice(start, min(start + height, n))
        strip = unit[rs] @ unit.T
        for graph, out in zip(others, values):
            out[rs] = strip.gather(1, graph.indices[rs])
    return values


def _second_order_cosine(
    first: NeighbourGraph, second: NeighbourGraph, first_at_second: torch.Tensor, second_at_first: torch.Tensor
) -> float:
    """Mean over samples i of the cosine of the two vectors (1 - c_X(i, j))_j and (1 - c_Y(i, j))_j of cosine
    distances from i to the union j ∈ N_X(i) ∪ N_Y(i) of its neighbours (Hamilton et al. 2016, as ReSi computes
    it). Two zero vectors count as cosine 1, one zero vector as 0. Each model's cosines at its own neighbours come
    from its graph, those at the other model's neighbours from cosines_at."""
    k = first.indices.shape[1]
    positions = torch.searchsorted(first.indices, second.indices).clamp_max_(k - 1)
    only_second = first.indices.gather(1, positions) != second.indices
    first_at_second, second_at_first = first_at_second.double(), second_at_first.double()
    distances_first = torch.cat([1 - first.cosines, torch.where(only_second, 1 - first_at_second, 0.0)], dim=1)
    distances_second = torch.cat([1 - second_at_first, torch.where(only_second, 1 - second.cosines, 0.0)], dim=1)
    dot = torch.sum(distances_first * distances_second, dim=1)
    norms = torch.linalg.vector_norm(distances_first, dim=1) * torch.linalg.vector_norm(distances_second, dim=1)
    both_zero = (distances_first == 0).all(dim=1) & (distances_second == 0).all(dim=1)
    cosine = torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), both_zero.double())
    return float(cosine.mean())
