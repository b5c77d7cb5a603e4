"""Regression measures, all pairs per call: linear predictivity (R² of a least-squares or ridge prediction of one
model's centred features from the other's, both directions averaged) and GULP (Boix-Adserà et al. 2022, the
distance between the two models' ridge predictors), in its similarity form.

Each model's thin SVD X_c = U diag(s) Vᵀ is computed once (engine.spectrum); a pair needs only C = U_aᵀU_b, since
a ridge prediction from X is H Y with H = U diag(s² / (s² + λ)) Uᵀ (docs/metrics.md, Regression).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from simcon.metrics import MetricSpec
from simcon.similarity import engine
from simcon.similarity.engine import progress_bar


def score_pairs(
    spec: MetricSpec,
    arrays: Sequence[np.ndarray],
    ids: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    device: torch.device,
    progress: bool,
) -> list[float]:
    """Linear predictivity or GULP of each pair of model indices."""
    models = sorted({m for pair in pairs for m in pair})
    spectra = {
        m: engine.spectrum(arrays[m], True, device)
        for m in progress_bar(models, len(models), f"{spec.name} spectra", progress)
    }
    shrinkage = {m: predictor_shrinkage(spec, spectra[m].values, arrays[m].shape[1]) for m in models}
    # Weighted sums of squares, unlike an arccos near 1, take float32 rounding of the bases as it comes (10⁻⁷),
    # and the products are half the time in float32.
    bases = {m: spectra[m].basis.float() for m in models}
    n = arrays[models[0]].shape[0] if models else 0
    values = []
    for a, b in progress_bar(pairs, len(pairs), f"{spec.name} pairs", progress):
        if spec.regulariser == 0:
            ranks = (len(shrinkage[a]), len(shrinkage[b]))
            engine.check_spans_apart(spec, (ids[a], ids[b]), ranks, n - 1)
        squares = engine.cross_product(bases[a], bases[b]) ** 2
        if spec.statistic == "gulp":
            values.append(gulp_similarity(squares, shrinkage[a], shrinkage[b]))
            continue
        explained = [
            predicted_share(squares, shrinkage[a], spectra[b].values),
            predicted_share(squares.T, shrinkage[b], spectra[a].values),
        ]
        values.append(float(np.clip(sum(explained) / 2, 0.0, 1.0)))
    return values


def predictor_shrinkage(spec: MetricSpec, values: torch.Tensor, width: int) -> torch.Tensor:
    """The eigenvalues w = s² / (s² + λ) of a model's ridge hat matrix H = U diag(w) Uᵀ.

    linreg: λ = regulariser · ‖X_c‖²_F / d, ε times the mean eigenvalue of X_cᵀX_c (0: least squares, w = 1).
    GULP: λ = regulariser on the covariance of the features scaled to unit total variance, s² / ‖s‖², as the
    GULP code scales them.
    """
    squares = values**2
    if spec.statistic == "gulp":
        shares = squares / torch.sum(squares)
        return shares / (shares + spec.regulariser)
    return squares / (squares + spec.regulariser * float(torch.sum(squares)) / width)


def predicted_share(squares: torch.Tensor, shrinkage: torch.Tensor, target_values: torch.Tensor) -> float:
    """R² = 1 - ‖Y_c - H Y_c‖²_F / ‖Y_c‖²_F of the ridge prediction H Y_c of the centred target from the predictor
    (rows of `squares` = (U_predictorᵀ U_target)²): Σ_ij (2 w_i - w_i²) C_ij² t_j² / Σ t_j²."""
    targets = target_values**2
    return float(((2 * shrinkage - shrinkage**2) @ squares @ targets) / torch.sum(targets))


def gulp_similarity(squares: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> float:
    """1 / (1 + d) of the GULP distance d, d² = ‖H_X‖²_F + ‖H_Y‖²_F - 2 ⟨H_X, H_Y⟩ with ⟨H_X, H_Y⟩ = Σ_ij w_i C_ij² v_j."""
    distance_squared = float(torch.sum(first**2) + torch.sum(second**2) - 2 * (first @ squares @ second))
    return 1.0 / (1.0 + math.sqrt(max(distance_squared, 0.0)))
