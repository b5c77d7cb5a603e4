"""RSA, all pairs per call: each model's RDM is 1 - the Pearson correlation between samples, and two RDMs are
compared by Spearman or Pearson correlation over the upper triangle.

Spearman: the centred ranks of each model's RDM are computed once, and each pair is one inner product of rank
vectors. Pearson: the streamed correlation tiles of simcon.similarity.kernel.
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
from simcon.similarity.engine import Products, progress_bar, standardised_samples


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """RSA of each pair of model indices."""

    def products(xs: Sequence[np.ndarray], n_rows: int, local_pairs: Sequence[tuple[int, int]]) -> Products:
        if spec.rdm_comparison == "spearman":
            return rank_products(xs, n_rows, device, progress)
        return kernel.tile_products(spec, xs, n_rows, device, progress)

    return engine.inner_product_scores(spec, arrays, ids, pairs, products)


def rank_products(xs: Sequence[np.ndarray], n_rows: int, device: torch.device, progress: bool) -> Products:
    """Inner products of the centred ranks of all models' RDM upper triangles."""
    n = xs[0].shape[0]
    m = len(xs)
    length = n * (n - 1) // 2
    raw_cross = torch.zeros(n_rows, m, dtype=torch.float64, device=device)
    raw_self = torch.zeros(m, dtype=torch.float64, device=device)
    with tempfile.TemporaryDirectory(prefix="simcon-ranks-") as folder:
        store = _RankStore(m, length, folder)
        for k, x in enumerate(progress_bar(xs, m, "RDM ranks", progress)):
            store.write(k, centred_ranks(_upper_correlations(standardised_samples(x).to(device))).cpu().numpy())
        chunk = max(1, engine.BLOCK_BYTES // (8 * m))
        for start in progress_bar(range(0, length, chunk), math.ceil(length / chunk), "rank products", progress):
            ranks = torch.from_numpy(store.read(start, start + chunk)).to(device, torch.float64)
            raw_cross.addmm_(ranks[:n_rows], ranks.T)
            raw_self[n_rows:] += torch.linalg.vector_norm(ranks[n_rows:], dim=1) ** 2
    raw_self[:n_rows] = raw_cross.diagonal()
    # RDM = 1 - correlation reverses every model's ranks, which leaves their correlation as is.
    self_products = raw_self.cpu().numpy()
    return Products(raw_cross.cpu().numpy(), self_products, self_products)


def _upper_correlations(rows: torch.Tensor) -> torch.Tensor:
    """The strict upper triangle of rows @ rowsᵀ, row by row, computed strip by strip."""
    n = rows.shape[0]
    pieces = []
    for start in range(0, n, engine.TILE_ROWS):
        stop = min(start + engine.TILE_ROWS, n)
        strip = rows[start:stop] @ rows[start:].T
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
