"""RSA, all pairs per call: each model's RDM holds the correlation distance, the squared Euclidean distance or the
cosine distance of every two samples, and two RDMs are compared by Pearson or Spearman correlation or Kendall's
τ-a over the upper triangle.

Spearman: the centred ranks of each model's RDM are computed once, and each pair is one inner product of rank
vectors. Pearson: the streamed tiles of simcon.similarity.kernel. Kendall: the same ranks, and per pair an
O(N log N) count of discordant pairs of the N = n(n-1)/2 entries, which no per-model statistic replaces.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine, kernel
from simcon.similarity.engine import Products, progress_bar


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """RSA of each pair of model indices."""
    if spec.rdm_comparison == "kendall":
        return kendall_scores(spec, arrays, ids, pairs, device, progress)

    def products(xs: Sequence[np.ndarray], n_rows: int, local_pairs: Sequence[tuple[int, int]]) -> Products:
        if spec.rdm_comparison == "spearman":
            return rank_products(spec, xs, n_rows, device, progress)
        return kernel.tile_products(spec, xs, n_rows, device, progress)

    return engine.inner_product_scores(spec, arrays, ids, pairs, products)


def kendall_scores(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Kendall's τ-a of the RDM upper triangles of each pair: (concordant - discordant pairs of entries) / (N(N-1)/2),
    tied entries counting neither. From each model's ranks (computed once): scipy's τ-b of the two rank vectors
    times sqrt((N₀ - T_a)(N₀ - T_b)) / N₀, with T the pairs of entries tied within one RDM."""
    import scipy.stats  # only where Kendall's τ is computed: similarity jobs start without SciPy

    models = sorted({m for pair in pairs for m in pair})
    n = arrays[models[0]].shape[0] if models else 0
    length = n * (n - 1) // 2
    total = length * (length - 1) // 2
    with tempfile.TemporaryDirectory(prefix="simcon-ranks-") as folder:
        store = _RankStore(len(models), length, folder)
        ties = {}
        for k, m in enumerate(progress_bar(models, len(models), "RDM ranks", progress)):
            ranks = centred_ranks(_upper_similarities(spec, arrays[m], device)).cpu().numpy()
            counts = np.unique(ranks, return_counts=True)[1].astype(np.int64)
            ties[m] = int(np.sum(counts * (counts - 1) // 2))
            if ties[m] == total:
                raise ValueError(
                    f"model {ids[m]!r} is degenerate under {spec.name}: all entries of its RDM are equal, so the "
                    "similarity is undefined"
                )
            store.write(k, ranks)
        row = {m: k for k, m in enumerate(models)}
        values = []
        for a, b in progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress):
            tau_b = scipy.stats.kendalltau(store.row(row[a]), store.row(row[b])).statistic
            values.append(float(np.clip(tau_b * math.sqrt((total - ties[a]) * (total - ties[b])) / total, -1, 1)))
    return values


def rank_products(
    spec: MetricSpec, xs: Sequence[np.ndarray], n_rows: int, device: torch.device, progress: bool
) -> Products:
    """Inner products of the centred ranks of all models' RDM upper triangles."""
    n = xs[0].shape[0]
    m = len(xs)
    length = n * (n - 1) // 2
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    with tempfile.TemporaryDirectory(prefix="simcon-ranks-") as folder:
        store = _RankStore(m, length, folder)
        for k, x in enumerate(progress_bar(xs, m, "RDM ranks", progress)):
            store.write(k, centred_ranks(_upper_similarities(spec, x, device)).cpu().numpy())
        chunk = max(1, engine.BLOCK_BYTES // (8 * m))
        for start in progress_bar(range(0, length, chunk), math.ceil(length / chunk), "rank products", progress):
            ranks = torch.from_numpy(store.read(start, start + chunk)).to(device, torch.float64)
            raw_cross.addmm_(ranks[:n_rows], ranks.T)
            raw_self[n_rows:] += torch.linalg.vector_norm(ranks[n_rows:], dim=1) ** 2
    raw_self[:n_rows] = raw_cross.diagonal()
    # The similarities rank every model's RDM in reverse, which leaves their correlation as is.
    self_products = raw_self.cpu().numpy()
    return Products(raw_cross.cpu().numpy(), self_products, self_products)


def _upper_similarities(spec: MetricSpec, x: np.ndarray, device: torch.device) -> torch.Tensor:
    """The strict upper triangle, row by row, of the samples' similarities in float32, computed strip by strip:
    correlations, cosines, or minus the squared Euclidean distances (2 x_i·x_j - ‖x_i‖² - ‖x_j‖² of the centred
    features), each in the reverse order of the RDM's entries."""
    rows = kernel.rsa_rows(spec)(x).to(device)
    norms = torch.sum(rows.double() ** 2, dim=1).float() if spec.rdm == "euclidean" else None
    n = rows.shape[0]
    pieces = []
    for start in range(0, n, engine.TILE_ROWS):
        stop = min(start + engine.TILE_ROWS, n)
        strip = rows[start:stop] @ rows[start:].T
        if norms is not None:
            strip.mul_(2).sub_(norms[start:stop, None]).sub_(norms[None, start:]).clamp_max_(0)
        upper = torch.ones_like(strip, dtype=torch.bool).triu_(diagonal=1)
        pieces.append(strip[upper])
    return torch.cat(pieces)


class _RankStore:
    """Centred ranks of m models, each of N values, read back in column chunks.

    Held in memory up to engine.RANK_STORE_BYTES; larger stores live in a file under `folder`, read
    and written explicitly so that they occupy the page cache rather than process memory.
    """

    def __init__(self, m: int, length: int, folder: str) -> None:
        self.m = m
        self.length = length
        in_memory = m * length * 4 <= engine.RANK_STORE_BYTES
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

    def row(self, k: int) -> np.ndarray:
        """All ranks of model k."""
        if self.array is not None:
            return self.array[k]
        return np.fromfile(self.path, dtype=np.int32, count=self.length, offset=k * self.length * 4)

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


def centred_ranks(values: torch.Tensor) -> torch.Tensor:
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
