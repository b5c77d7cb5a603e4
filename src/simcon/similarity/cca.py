"""The CCA family, all pairs per call: mean canonical correlation, SVCCA and PWCCA, optionally with a ridge, and
the eigenspace overlap of the (uncentred) column spaces.

Each model's thin SVD X_c = U diag(s) Vᵀ is computed once (engine.spectrum). Its whitened basis is U, or
U diag(s / sqrt(s² + λ)) with a ridge λ; a pair's canonical correlations are the singular values of the product of
the two bases (docs/metrics.md, CCA).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine
from simcon.similarity.engine import Spectrum, progress_bar


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Mean CCA, SVCCA, PWCCA or eigenspace overlap of each pair of model indices."""
    models = sorted({m for pair in pairs for m in pair})
    centred = spec.statistic != "eigenspace_overlap"
    spectra = {
        m: whitened(spec, engine.spectrum(arrays[m], centred, device, right=spec.statistic == "pwcca"), arrays[m])
        for m in progress_bar(models, len(models), f"{spec.name} spectra", progress)
    }
    n = arrays[models[0]].shape[0] if models else 0
    values = []
    for a, b in progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress):
        (first, first_factors), (second, second_factors) = spectra[a], spectra[b]
        ranks = (first.basis.shape[1], second.basis.shape[1])
        if spec.regulariser == 0:
            engine.check_spans_apart(spec, (ids[a], ids[b]), ranks, n - 1 if centred else n)
        if spec.statistic == "eigenspace_overlap":
            # A sum of squares: float32 bases suffice (10⁻⁷), in half the time.
            product = engine.cross_product(first.basis.float(), second.basis.float())
            values.append(float(torch.sum(product**2)) / max(ranks))
            continue
        product = engine.cross_product(first.basis, second.basis)
        whitened_product = first_factors[:, None] * product * second_factors[None, :]
        if spec.statistic == "pwcca":
            values.append(projection_weighted(whitened_product, first, first_factors, second, second_factors))
        else:
            values.append(float(canonical_correlations(whitened_product).mean()))
    low, high = spec.value_range
    return [float(np.clip(value, low, high)) for value in values]


def whitened(spec: MetricSpec, full: Spectrum, x: np.ndarray) -> tuple[Spectrum, torch.Tensor]:
    """A model's spectrum as the measure uses it (SVCCA: its leading directions holding `variance_kept` of the
    variance), and the factors s / sqrt(s² + λ) that whiten its basis, λ = regulariser · ‖X_c‖²_F / d."""
    kept = full
    if spec.statistic == "svcca":
        assert spec.variance_kept is not None
        shares = torch.cumsum(full.values**2, dim=0) / torch.sum(full.values**2)
        # The fewest leading directions whose share of the variance reaches variance_kept.
        threshold = torch.tensor(spec.variance_kept, dtype=torch.float64, device=shares.device)
        count = min(int(torch.searchsorted(shares, threshold)) + 1, len(full.values))
        right = None if full.right is None else full.right[:, :count]
        kept = Spectrum(full.basis[:, :count], full.values[:count], right)
    ridge = spec.regulariser * float(torch.sum(full.values**2)) / x.shape[1]
    return kept, kept.values / torch.sqrt(kept.values**2 + ridge)


def canonical_correlations(product: torch.Tensor) -> torch.Tensor:
    """The min(r_a, r_b) singular values of a float64 matrix, from the eigenvalues of its narrower Gram matrix,
    clipped to [0, 1]."""
    narrow = product if product.shape[0] <= product.shape[1] else product.T
    return torch.linalg.eigvalsh(narrow @ narrow.T).clamp(0, 1).sqrt()


def projection_weighted(
    product: torch.Tensor, first: Spectrum, first_factors: torch.Tensor, second: Spectrum, second_factors: torch.Tensor
) -> float:
    """PWCCA of Morcos et al. (2018), symmetrised as repsim does: the mean over both directions of Σ w_i ρ_i, where
    w_i ∝ Σ_j |⟨h_i, x_j⟩| weighs canonical correlation ρ_i by how much of the model's own features x_j
    (centred) its canonical variate h_i accounts for."""
    left, correlations, right_t = torch.linalg.svd(product, full_matrices=False)
    correlations = correlations.clamp(0, 1)
    values = []
    for spectrum, factors, directions in ((first, first_factors, left), (second, second_factors, right_t.T)):
        assert spectrum.right is not None
        # h_i = U diag(f) L_i, so ⟨h_i, x_j⟩ = (L_iᵀ diag(f s) Vᵀ)_j.
        weights = torch.sum(torch.abs(directions.T @ ((factors * spectrum.values)[:, None] * spectrum.right.T)), dim=1)
        values.append(float(torch.sum(weights * correlations) / torch.sum(weights)))
    return sum(values) / 2
