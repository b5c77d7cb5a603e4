"""Alignment and shape metrics, all pairs per call: orthogonal Procrustes (the nuclear norm of XᵀY of the
centred, unit-Frobenius-norm representations), its angular form, and the aligned cosine similarity.

Each model's prepared features are computed once, and each pair is scored from one product XᵀY and its spectrum.
"""

from __future__ import annotations

import math
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


def angular_similarity(similarity: float) -> float:
    """The registered similarity form 1 - 2θ/π of the angular shape distance θ = arccos(s), in [0, 1]."""
    return 1.0 - 2.0 / math.pi * float(angular_shape_distance(similarity))


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Procrustes, its angular form or the aligned cosine similarity of each pair of model indices."""
    models = sorted({m for pair in pairs for m in pair})
    scored = progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress)
    if spec.statistic == "aligned_cosine":
        raw = {m: torch.from_numpy(np.ascontiguousarray(arrays[m])).to(device).float() for m in models}
        norms = {m: torch.linalg.vector_norm(torch.from_numpy(arrays[m]).double(), dim=1).to(device) for m in models}
        return [aligned_cosine(raw[a], raw[b], norms[a], norms[b], ids[a], ids[b]) for a, b in scored]
    prepared = {m: normalised_shape(arrays[m], device) for m in models}
    values = [procrustes(prepared[a], prepared[b]) for a, b in scored]
    return [angular_similarity(v) for v in values] if spec.statistic == "angular" else values


def cross_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """XᵀY in float64, from float32 products over row chunks of engine.FEATURE_CHUNK_ROWS."""
    product = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], engine.FEATURE_CHUNK_ROWS):
        stop = start + engine.FEATURE_CHUNK_ROWS
        product += x[start:stop].T @ y[start:stop]
    return product


def nuclear_norm(product: torch.Tensor) -> float:
    """The sum of the singular values of a float64 matrix: the square roots of the eigenvalues of the Gram
    matrix of its narrower side. A singular value near 0 thereby errs by about sqrt(u) σ_max (u = 2⁻⁵³),
    1.5e-8 of the largest one."""
    narrow = product if product.shape[0] <= product.shape[1] else product.T
    return float(torch.linalg.eigvalsh(narrow @ narrow.T).clamp_min(0).sqrt().sum())


def procrustes(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖XᵀY‖_* of centred, unit-Frobenius-norm features X, Y (zero-padding the narrower model adds only zero
    singular values), clipped to [0, 1]."""
    return float(np.clip(nuclear_norm(cross_product(x, y)), 0.0, 1.0))


def aligned_cosine(
    x: torch.Tensor, y: torch.Tensor, x_norms: torch.Tensor, y_norms: torch.Tensor, x_id: str, y_id: str
) -> float:
    """Mean over samples of the cosine between x_i Ω and y_i, Ω the orthogonal Procrustes map of the raw
    (uncentred, unnormalised) features X onto Y, the narrower model zero-padded: ReSi's aligned cosine
    similarity. Samples whose features are zero in either model are left out.

    With XᵀY = P Σ Qᵀ (thin SVD, float64), x_i Ω · y_i = (x_i P) · (y_i Q), and |x_i Ω| = |x_i|.
    """
    p, _, qt = torch.linalg.svd(cross_product(x, y), full_matrices=False)
    numerators = torch.sum((x @ p.float()).double() * (y @ qt.T.float()).double(), dim=1)
    kept = (x_norms > 0) & (y_norms > 0)
    if not kept.any():
        raise ValueError(f"aligned_cosine of {x_id!r} and {y_id!r} is undefined: no sample is non-zero in both")
    cosines = numerators[kept] / (x_norms[kept] * y_norms[kept])
    return float(cosines.mean().clamp(-1.0, 1.0))


def normalised_shape(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Features minus their mean over samples, divided by their Frobenius norm (both in
    float64), as float32 on the device."""
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    wide -= wide.mean(dim=0)
    wide /= torch.linalg.matrix_norm(wide)
    return wide.float()
