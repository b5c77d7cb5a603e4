"""Alignment and shape metrics, all pairs per call: orthogonal Procrustes (the nuclear norm of XᵀY of the
centred, unit-Frobenius-norm representations), its angular form, the aligned cosine similarity, and the shape
metrics with partial whitening (netrep's LinearMetric, from each model's SVD).

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
    """Procrustes, its angular form, the aligned cosine similarity or the shape metric of each pair of model
    indices."""
    models = sorted({m for pair in pairs for m in pair})
    scored = progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress)
    if spec.family == "shape":
        assert spec.alpha is not None
        spectra = {m: engine.spectrum(arrays[m], True, device) for m in models}
        scales = {m: partial_whitening(spectra[m].values, spec.alpha) for m in models}
        n = arrays[models[0]].shape[0] if models else 0
        values = []
        for a, b in scored:
            if spec.alpha == 0:
                ranks = (len(scales[a]), len(scales[b]))
                engine.check_spans_apart(spec, (ids[a], ids[b]), ranks, n - 1)
            product = engine.cross_product(spectra[a].basis, spectra[b].basis)
            whitened = scales[a][:, None] * product * scales[b][None, :]
            cosine = nuclear_norm(whitened) / float(
                torch.linalg.vector_norm(scales[a]) * torch.linalg.vector_norm(scales[b])
            )
            values.append(angular_similarity(cosine))
        return values
    if spec.family == "matching":
        standardised = {m: standardised_features(arrays[m], device) for m in models}
        match = soft_matching if spec.statistic == "soft" else hard_matching
        return [match(engine.cross_product(standardised[a], standardised[b]).cpu().numpy()) for a, b in scored]
    if spec.statistic == "aligned_cosine":
        raw = {m: torch.from_numpy(np.ascontiguousarray(arrays[m])).to(device).float() for m in models}
        norms = {m: torch.linalg.vector_norm(torch.from_numpy(arrays[m]).double(), dim=1).to(device) for m in models}
        return [aligned_cosine(raw[a], raw[b], norms[a], norms[b], ids[a], ids[b]) for a, b in scored]
    prepared = {m: normalised_shape(arrays[m], device) for m in models}
    values = [procrustes(prepared[a], prepared[b]) for a, b in scored]
    return [angular_similarity(v) for v in values] if spec.statistic == "angular" else values


def partial_whitening(values: torch.Tensor, alpha: float) -> torch.Tensor:
    """The singular values of a model's centred, unit-Frobenius-norm features after netrep's partial whitening
    (`netrep.utils.whiten`): s̃ (α + (1 - α) λ^(-1/2)) with λ = max(s̃², 10⁻⁷) the eigenvalues of X̃ᵀX̃, up to
    netrep's rescaling to the original variance, which the angle ignores."""
    unit = values / torch.linalg.vector_norm(values)
    return unit * (alpha + (1 - alpha) * unit.square().clamp_min(1e-7).rsqrt())


def nuclear_norm(product: torch.Tensor) -> float:
    """The sum of the singular values of a float64 matrix: the square roots of the eigenvalues of the Gram
    matrix of its narrower side. A singular value near 0 thereby errs by about sqrt(u) σ_max (u = 2⁻⁵³),
    1.5e-8 of the largest one."""
    narrow = product if product.shape[0] <= product.shape[1] else product.T
    return float(torch.linalg.eigvalsh(narrow @ narrow.T).clamp_min(0).sqrt().sum())


def procrustes(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖XᵀY‖_* of centred, unit-Frobenius-norm features X, Y (zero-padding the narrower model adds only zero
    singular values), clipped to [0, 1]."""
    return float(np.clip(nuclear_norm(engine.cross_product(x, y)), 0.0, 1.0))


def aligned_cosine(
    x: torch.Tensor, y: torch.Tensor, x_norms: torch.Tensor, y_norms: torch.Tensor, x_id: str, y_id: str
) -> float:
    """Mean over samples of the cosine between x_i Ω and y_i, Ω the orthogonal Procrustes map of the raw
    (uncentred, unnormalised) features X onto Y, the narrower model zero-padded: ReSi's aligned cosine
    similarity. Samples whose features are zero in either model are left out.

    With XᵀY = P Σ Qᵀ (thin SVD, float64), x_i Ω · y_i = (x_i P) · (y_i Q), and |x_i Ω| = |x_i|.
    """
    p, _, qt = torch.linalg.svd(engine.cross_product(x, y), full_matrices=False)
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


def standardised_features(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Each feature minus its mean over samples, divided by its norm (in float64), as float32: the inner product
    of two columns is their Pearson correlation. A constant feature stays zero (correlation 0 with every feature,
    as ReSi's scikit-learn cosine leaves it)."""
    wide = torch.from_numpy(np.ascontiguousarray(x)).to(device).double()
    wide -= wide.mean(dim=0)
    norms = torch.linalg.vector_norm(wide, dim=0)
    return (wide / torch.where(norms > 0, norms, 1.0)).float()


def hard_matching(correlations: np.ndarray) -> float:
    """The mean correlation of the best one-to-one matching of the narrower model's features to the other's
    (scipy's linear_sum_assignment): ReSi's hard correlation match."""
    import scipy.optimize  # only where an assignment is solved: similarity jobs start without SciPy

    rows, columns = scipy.optimize.linear_sum_assignment(correlations, maximize=True)
    return float(np.clip(correlations[rows, columns].mean(), -1.0, 1.0))


SOFT_MATCHING_ASSIGNMENT_SIZE: int = 4096
"""The largest lcm(d_X, d_Y) for which soft matching is solved as an assignment of replicated features; larger
ones are solved as a linear programme (HiGHS), which is slower at the widths where both apply."""


def soft_matching(correlations: np.ndarray) -> float:
    """max Σ_ij P_ij ρ_ij over transport plans P with row sums 1/d_X and column sums 1/d_Y: the soft matching of
    Khosla & Williams (2024) in its similarity form 1 - d²/2, d their distance between the standardised features.

    Exact either way: with L = lcm(d_X, d_Y), replicating each feature of X L/d_X times and each of Y L/d_Y times
    makes it an assignment of L to L (transport plans with integer masses have integer optima); equal widths make
    it the hard matching."""
    import scipy.optimize  # only where a transport plan is solved: similarity jobs start without SciPy
    import scipy.sparse

    width_x, width_y = correlations.shape
    size = math.lcm(width_x, width_y)
    if size <= SOFT_MATCHING_ASSIGNMENT_SIZE:
        replicated = np.repeat(np.repeat(correlations, size // width_x, axis=0), size // width_y, axis=1)
        rows, columns = scipy.optimize.linear_sum_assignment(replicated, maximize=True)
        return float(np.clip(replicated[rows, columns].mean(), -1.0, 1.0))
    constraints = scipy.sparse.vstack(
        [
            scipy.sparse.kron(scipy.sparse.eye(width_x), np.ones((1, width_y))),
            scipy.sparse.kron(np.ones((1, width_x)), scipy.sparse.eye(width_y)),
        ]
    ).tocsr()
    masses = np.concatenate([np.full(width_x, 1 / width_x), np.full(width_y, 1 / width_y)])
    plan = scipy.optimize.linprog(
        -correlations.ravel(), A_eq=constraints, b_eq=masses, bounds=(0, None), method="highs"
    )
    if not plan.success:
        raise RuntimeError(f"soft matching: the transport problem was not solved ({plan.message})")
    return float(np.clip(-plan.fun, -1.0, 1.0))
