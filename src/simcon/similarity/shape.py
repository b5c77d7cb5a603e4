"""Alignment and shape metrics, all pairs per call: orthogonal Procrustes (the nuclear norm of XᵀY of the
centred, unit-Frobenius-norm representations) and its angular shape distance.

Each model's centred, normalised features are prepared once, and each pair is scored from one product XᵀY.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine
from simcon.similarity.engine import progress_bar


def angular_shape_distance(similarity: np.ndarray | float) -> np.ndarray | float:
    """The angular shape distance arccos(s) (radians, in [0, π/2]) of Procrustes similarities s.

    A metric on shapes (Williams et al. 2021): 0 for identical shapes, π/2 for orthogonal ones.
    The registry holds the similarity, which every analysis reads as larger = more similar.
    """
    return np.arccos(np.clip(similarity, 0.0, 1.0))


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """‖XᵀY‖_* of each pair's centred, unit-Frobenius-norm features X, Y.

    The product XᵀY runs in float32 over row chunks of engine.FEATURE_CHUNK_ROWS, summed in float64.
    Its singular values are the square roots of the eigenvalues of the float64 Gram matrix of
    its narrower side (zero-padding the narrower model adds only zero singular values). A
    singular value near 0 thereby errs by about sqrt(u) σ_max (u = 2⁻⁵³), 1.5e-8 of the
    largest one.
    """
    models = sorted({m for pair in pairs for m in pair})
    prepared = {m: normalised_shape(arrays[m], device) for m in models}
    values = []
    for a, b in progress_bar(pairs, len(pairs), "procrustes pairs", progress):
        x, y = prepared[a], prepared[b]
        if x.shape[1] > y.shape[1]:
            x, y = y, x
        product = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, device=device)
        for start in range(0, x.shape[0], engine.FEATURE_CHUNK_ROWS):
            stop = start + engine.FEATURE_CHUNK_ROWS
            product += x[start:stop].T @ y[start:stop]
        eigenvalues = torch.linalg.eigvalsh(product @ product.T)
        values.append(float(np.clip(float(eigenvalues.clamp_min(0).sqrt().sum()), 0.0, 1.0)))
    return values


def normalised_shape(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Features minus their mean over samples, divided by their Frobenius norm (both in
    float64), as float32 on the device."""
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    wide -= wide.mean(dim=0)
    wide /= torch.linalg.matrix_norm(wide)
    return wide.float()
