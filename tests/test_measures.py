"""The measures of docs/metrics.md beyond CKA, RSA of correlation distances, k-NN and Procrustes, each against an
independent implementation on the same inputs: the pinned reference packages of requirements-test.txt (dcor, repsim,
cca-zoo, POT, rsatoolbox) where one exists, and float64 references written here from the definitions (ReSi's
conventions) where none does. Inputs: random features with d < n and d > n, mixed widths, tied samples, and
features of random-weight timm models on generated images."""

from __future__ import annotations

import math
import zlib
from itertools import combinations

import numpy as np
import pytest
import scipy.linalg
import torch

from simcon.datasets import load_split
from simcon.extract import extract_features
from simcon.metrics import get_metric
from simcon.models import build_model
from simcon.similarity import compute_similarity, engine

TOLERANCE = 1e-5


# --- data ---------------------------------------------------------------------------------------------


def dataset(case: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    if case == "d_lt_n":
        return {m: rng.standard_normal((40, d)).astype(np.float32) for m, d in [("a", 5), ("b", 12), ("c", 3)]}
    if case == "d_gt_n":
        return {m: rng.standard_normal((23, d)).astype(np.float32) for m, d in [("a", 40), ("b", 64), ("c", 29)]}
    if case == "structured":
        # A shared low-rank signal, ReLU features, a linear map of another model, a duplicated sample.
        n = 41
        latent = rng.standard_normal((n, 3))
        a = np.maximum(latent @ rng.standard_normal((3, 16)), 0) + 0.01 * rng.random((n, 16))
        b = latent @ rng.standard_normal((3, 9)) + 0.3 * rng.standard_normal((n, 9))
        c = a @ rng.standard_normal((16, 7)) + 0.05 * rng.standard_normal((n, 7))
        for z in (a, b, c):
            z[5] = z[4]
        return {"relu": a.astype(np.float32), "lowrank": b.astype(np.float32), "mapped": c.astype(np.float32)}
    if case == "ties":
        # Every sample has 4 of 12 (3 of 9) features on: many cosines and distances tie.
        def binary(d: int, on: int) -> np.ndarray:
            rows = np.zeros((30, d), dtype=np.float32)
            for row in rows:
                row[rng.choice(d, on, replace=False)] = 1.0
            return rows

        return {"b12": binary(12, 4), "b9": binary(9, 3)}
    raise AssertionError(case)


CASES = ["d_lt_n", "d_gt_n", "structured", "ties"]


@pytest.fixture(scope="module")
def real_features() -> dict[str, np.ndarray]:
    """Features of random-weight timm models on generated shapes: n = 60 samples, widths 512 and 192 (d > n)."""
    split = load_split(
        "shapes",
        {
            "source": "generated",
            "domain": "shapes",
            "train_per_class": 10,
            "test_per_class": 2,
            "resolution": 32,
            "seed": 0,
        },
        "train",
    )
    models = {
        "resnet18": {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"},
        "vit_tiny": {
            "backend": "timm",
            "name": "vit_tiny_patch16_224",
            "layer": "norm",
            "weights": "random",
            "init_seed": 2,
            "kwargs": {"img_size": 32},
        },
    }
    return {
        name: extract_features(
            build_model(name, spec),
            split,
            np.arange(len(split)),
            image_size=32,
            batch_size=32,
            device=torch.device("cpu"),
            name=name,
            progress=False,
        )
        for name, spec in models.items()
    }


def assert_pairs(name: str, features: dict[str, np.ndarray], reference, tolerance: float = TOLERANCE) -> None:
    matrix = compute_similarity(features, name).matrix
    for a, b in combinations(features, 2):
        expected = reference(features[a].astype(np.float64), features[b].astype(np.float64))
        assert abs(matrix.loc[a, b] - expected) < tolerance, (name, a, b, matrix.loc[a, b], expected)


# --- float64 references from the definitions ----------------------------------------------------------


def ref_cosines(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def ref_neighbours(x: np.ndarray, k: int) -> list[list[int]]:
    """Each sample's k most cosine-similar other samples, nearest first; ties go to the lower index."""
    cosines = ref_cosines(x)
    return [sorted((j for j in range(len(x)) if j != i), key=lambda j: (-cosines[i, j], j))[:k] for i in range(len(x))]


def ref_second_order_cosine(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """ReSi's second-order cosine similarity: per sample, the cosine of its vectors of cosine distances to the
    union of its k nearest neighbours in both models."""
    cx, cy, nx, ny = ref_cosines(x), ref_cosines(y), ref_neighbours(x, k), ref_neighbours(y, k)
    values = []
    for i in range(len(x)):
        union = sorted(set(nx[i]) | set(ny[i]))
        u, v = 1 - cx[i, union], 1 - cy[i, union]
        norms = np.linalg.norm(u) * np.linalg.norm(v)
        values.append(u @ v / norms if norms > 0 else float(not u.any() and not v.any()))
    return float(np.mean(values))


def ref_rank_similarity(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """ReSi's rank similarity (Wang et al. 2020): ranks 1..k of the shared neighbours in both lists."""
    nx, ny = ref_neighbours(x, k), ref_neighbours(y, k)
    values = []
    for first, second in zip(nx, ny):
        shared = set(first) & set(second)
        if not shared:
            values.append(0.0)
            continue
        score = sum(
            2 / ((1 + abs(first.index(j) - second.index(j))) * (first.index(j) + second.index(j) + 2)) for j in shared
        )
        values.append(score / sum(1 / t for t in range(1, len(shared) + 1)))
    return float(np.mean(values))


def zero_padded(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = max(x.shape[1], y.shape[1])
    return tuple(np.hstack([z, np.zeros((len(z), width - z.shape[1]))]) for z in (x, y))  # type: ignore[return-value]


def ref_aligned_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """ReSi's aligned cosine: the raw features of X rotated onto Y by orthogonal Procrustes (scipy), the mean
    cosine of the aligned rows, rows of zeros left out."""
    x, y = zero_padded(x, y)
    aligned = x @ scipy.linalg.orthogonal_procrustes(x, y)[0]
    kept = [i for i in range(len(x)) if x[i].any() and y[i].any()]
    return float(np.mean([aligned[i] @ y[i] / (np.linalg.norm(aligned[i]) * np.linalg.norm(y[i])) for i in kept]))


def ref_procrustes_angular(x: np.ndarray, y: np.ndarray) -> float:
    """1 - 2θ/π of the angular shape distance θ of ReSi (centred, unit Frobenius norm, zero-padded)."""
    x, y = zero_padded(*(z - z.mean(axis=0) for z in (x, y)))
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    rotation = scipy.linalg.orthogonal_procrustes(x, y)[0]
    return 1 - 2 / math.pi * math.acos(min(1.0, np.trace(rotation.T @ x.T @ y)))


# --- group 1: ReSi's leading measures on vision models ----------------------------------------------------


def dcor_reference(name: str):
    import dcor

    return dcor.distance_correlation if name == "distance_correlation" else dcor.u_distance_correlation_sqr


GROUP1 = {
    "distance_correlation": lambda x, y: float(dcor_reference("distance_correlation")(x, y)),
    "distance_correlation_squared_unbiased": lambda x, y: float(dcor_reference("unbiased")(x, y)),
    "second_order_cosine10": lambda x, y: ref_second_order_cosine(x, y, 10),
    "second_order_cosine3": lambda x, y: ref_second_order_cosine(x, y, 3),
    "rank_similarity10": lambda x, y: ref_rank_similarity(x, y, 10),
    "rank_similarity4": lambda x, y: ref_rank_similarity(x, y, 4),
    "aligned_cosine": ref_aligned_cosine,
    "procrustes_angular": ref_procrustes_angular,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", GROUP1)
def test_group1_matches_reference(name: str, case: str) -> None:
    assert_pairs(name, dataset(case), GROUP1[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", GROUP1)
def test_group1_on_model_features(name: str, real_features: dict[str, np.ndarray]) -> None:
    assert_pairs(name, real_features, GROUP1[name])


def resi_distance_correlation(x: np.ndarray, y: np.ndarray, unbiased: bool = False) -> float:
    """Distance correlation from scikit-learn's Euclidean distance matrices in float64: ReSi's code path (double
    centring, sqrt of the ratio), or with U-centring (Székely & Rizzo 2014) the bias-corrected dCor². dcor itself
    holds n² d differences at once, 25 GB at n = 2,000 and d = 768, so the benchmark times this."""
    import sklearn.metrics

    def centred_distances(z: np.ndarray) -> np.ndarray:
        d = sklearn.metrics.pairwise_distances(z, metric="euclidean")
        n = len(d)
        if not unbiased:
            return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()
        u = d - d.sum(axis=0) / (n - 2) - d.sum(axis=1)[:, None] / (n - 2) + d.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(u, 0.0)
        return u

    a, b = centred_distances(x), centred_distances(y)
    ratio = np.sum(a * b) / math.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(ratio if unbiased else math.sqrt(ratio))


@pytest.mark.parametrize("unbiased", [False, True])
def test_the_benchmark_distance_correlation_equals_dcor(unbiased: bool) -> None:
    import dcor

    x, y = (z.astype(np.float64) for z in list(dataset("structured").values())[:2])
    expected = dcor.u_distance_correlation_sqr(x, y) if unbiased else dcor.distance_correlation(x, y)
    assert resi_distance_correlation(x, y, unbiased) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name", ["distance_correlation", "distance_correlation_squared_unbiased"])
def test_distance_tiles_smaller_than_n(monkeypatch, name: str) -> None:
    features = dataset("structured")
    monkeypatch.setattr(engine, "BLOCK_BYTES", 8 * 3 * 7**2)
    monkeypatch.setattr(engine, "TILE_ROWS", 7)
    monkeypatch.setattr(engine, "DIAGONAL_TILE_ROWS", 2)
    assert_pairs(name, features, GROUP1[name])


def test_second_order_cosine_in_strips(monkeypatch) -> None:
    monkeypatch.setattr(engine, "BLOCK_BYTES", 4 * 41 * 3)
    assert_pairs("second_order_cosine10", dataset("structured"), GROUP1["second_order_cosine10"])


def test_distance_correlation_is_the_square_root_of_the_biased_estimator() -> None:
    """dCor of Székely et al. (2007) is sqrt(dCov²/sqrt(dVar² dVar²)), the square of which dcor computes too."""
    import dcor

    x, y = (z.astype(np.float64) for z in list(dataset("d_lt_n").values())[:2])
    value = compute_similarity({"x": x, "y": y}, "distance_correlation").matrix.loc["x", "y"]
    assert value**2 == pytest.approx(dcor.distance_correlation_sqr(x, y), abs=1e-7)


def test_procrustes_angular_maps_the_procrustes_similarity() -> None:
    features = dataset("d_lt_n")
    similarity = compute_similarity(features, "procrustes").matrix.to_numpy()
    angular = compute_similarity(features, "procrustes_angular").matrix.to_numpy()
    np.testing.assert_allclose(angular, 1 - 2 / np.pi * np.arccos(np.clip(similarity, 0, 1)), atol=1e-12)


def test_aligned_cosine_of_a_rotated_copy_is_one_and_of_a_translated_copy_is_not() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 6))
    rotation = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    matrix = compute_similarity({"x": x, "rotated": 2.5 * x @ rotation, "moved": x + 3.0}, "aligned_cosine").matrix
    assert matrix.loc["x", "rotated"] == pytest.approx(1.0, abs=1e-6)
    assert matrix.loc["x", "moved"] < 0.99


def test_aligned_cosine_leaves_out_zero_samples() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 5))
    x[3] = 0.0
    y[7] = 0.0
    assert_pairs("aligned_cosine", {"x": x, "y": y}, ref_aligned_cosine)


def test_rank_similarity_of_equal_neighbour_lists_is_one() -> None:
    x = dataset("d_lt_n")["b"]
    rotation = np.linalg.qr(np.random.default_rng(1).standard_normal((12, 12)))[0]
    features = {"x": x, "same": 3 * x @ rotation}
    assert compute_similarity(features, "rank_similarity5").matrix.loc["x", "same"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", GROUP1)
def test_registered_properties(name: str) -> None:
    spec = get_metric(name)
    matrix = compute_similarity(dataset("structured"), name).matrix.to_numpy()
    low, high = spec.value_range
    assert ((matrix >= low) & (matrix <= high)).all()
    np.testing.assert_array_equal(np.diag(matrix), 1.0)


# --- group 2: the CCA family and the shape metrics ----------------------------------------------------------


def centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def ref_whitened_basis(x: np.ndarray, ridge: float = 0.0, variance_kept: float = 1.0) -> np.ndarray:
    """X_c (X_cᵀX_c + λI)^(-1/2) restricted to the leading principal directions holding variance_kept of the
    variance, by eigh in float64; λ = ridge · ‖X_c‖²_F / d."""
    x = centred(x)
    values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    rank = int(np.sum(values > values[0] * 1e-10))
    shares = np.cumsum(values[:rank]) / values[:rank].sum()
    count = min(int(np.searchsorted(shares, variance_kept)) + 1, rank)
    scores = x @ vectors[:, :count]
    return scores / np.sqrt(values[:count] + ridge * np.trace(x.T @ x) / x.shape[1])


def ref_cca_correlations(x: np.ndarray, y: np.ndarray, ridge: float = 0.0, variance_kept: float = 1.0) -> np.ndarray:
    a, b = (ref_whitened_basis(z, ridge, variance_kept) for z in (x, y))
    return np.linalg.svd(a.T @ b, compute_uv=False)


def repsim_cca(x: np.ndarray, y: np.ndarray) -> float:
    import repsim

    return float(repsim.cca([x, y], "pillai")[0, 1])  # Σρ / min(rank): the mean canonical correlation


def cca_zoo_cca(x: np.ndarray, y: np.ndarray) -> float:
    from cca_zoo.linear import CCA

    width = min(np.linalg.matrix_rank(centred(x)), np.linalg.matrix_rank(centred(y)))
    return float(CCA(n_components=width).fit([x, y]).score([x, y]))


def repsim_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    import repsim

    return float(repsim.pwcca([x, y])[0, 1])


def ref_svcca(x: np.ndarray, y: np.ndarray, variance_kept: float, ridge: float = 0.0) -> float:
    """Raghu et al. (2017): the leading principal directions of each centred model holding variance_kept of its
    variance, then the mean of their canonical correlations."""
    return float(ref_cca_correlations(x, y, ridge, variance_kept).mean())


def ref_shape(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """netrep's LinearMetric(alpha).fit_score (angular) on the centred, unit-Frobenius-norm, zero-padded features,
    written out from netrep.utils.whiten; as 1 - 2θ/π."""
    x, y = zero_padded(*(centred(z) / np.linalg.norm(centred(z)) for z in (x, y)))

    def whiten(z: np.ndarray) -> np.ndarray:
        values, vectors = np.linalg.eigh(z.T @ z)
        scale = alpha + (1 - alpha) * np.maximum(values, 1e-7) ** -0.5
        return z @ (vectors * scale) @ vectors.T

    xw, yw = whiten(x), whiten(y)
    u, _, vt = np.linalg.svd(xw.T @ yw)
    a, b = xw @ u, yw @ vt.T
    angle = math.acos(np.clip(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    return 1 - 2 * angle / math.pi


GROUP2 = {
    "cca": lambda x, y: float(ref_cca_correlations(x, y).mean()),
    "svcca0.99": lambda x, y: ref_svcca(x, y, 0.99),
    "svcca0.9": lambda x, y: ref_svcca(x, y, 0.9),
    "pwcca": repsim_pwcca,
    "cca_ridge0.1": lambda x, y: float(ref_cca_correlations(x, y, 0.1).mean()),
    "svcca0.95_ridge0.01": lambda x, y: ref_svcca(x, y, 0.95, 0.01),
    "shape0": lambda x, y: ref_shape(x, y, 0.0),
    "shape0.5": lambda x, y: ref_shape(x, y, 0.5),
    "shape0.1": lambda x, y: ref_shape(x, y, 0.1),
    "shape1": lambda x, y: ref_shape(x, y, 1.0),
}
UNREGULARISED = {"cca", "svcca0.99", "svcca0.9", "pwcca", "shape0"}


@pytest.mark.parametrize("case", ["d_lt_n", "structured", "ties"])
@pytest.mark.parametrize("name", GROUP2)
def test_group2_matches_reference(name: str, case: str) -> None:
    assert_pairs(name, dataset(case), GROUP2[name])


@pytest.mark.parametrize("name", sorted(set(GROUP2) - UNREGULARISED))
def test_group2_with_more_features_than_samples(name: str) -> None:
    assert_pairs(name, dataset("d_gt_n"), GROUP2[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cca_ridge0.1", "svcca0.95_ridge0.01", "shape0.5", "shape0.1"])
def test_group2_on_model_features(name: str, real_features: dict[str, np.ndarray]) -> None:
    assert_pairs(name, real_features, GROUP2[name])


@pytest.mark.parametrize("case", ["d_lt_n", "structured", "ties"])
def test_cca_equals_cca_zoo(case: str) -> None:
    assert_pairs("cca", dataset(case), cca_zoo_cca)


@pytest.mark.parametrize("case", ["d_lt_n", "structured"])
def test_cca_equals_repsim(case: str) -> None:
    assert_pairs("cca", dataset(case), repsim_cca)


def test_repsim_cca_averages_over_the_rank_of_the_uncentred_features() -> None:
    """Every tied sample has the same feature sum, so centring removes one dimension: repsim still divides the
    sum of the canonical correlations by the uncentred rank (9), the registered mean by the centred one (8)."""
    features = dataset("ties")
    x, y = features["b12"].astype(np.float64), features["b9"].astype(np.float64)
    correlations = ref_cca_correlations(x, y)
    assert len(correlations) == 8
    assert repsim_cca(x, y) == pytest.approx(correlations.sum() / 9, abs=1e-9)


def test_svcca_is_the_cca_of_the_leading_directions_by_repsim() -> None:
    """SVCCA = repsim's mean CCA of the leading principal components (repsim's own svcca truncates the
    orthonormal basis of the features, whose directions all carry the same variance, so it differs)."""

    def leading(z: np.ndarray) -> np.ndarray:
        u, s, _ = np.linalg.svd(centred(z), full_matrices=False)
        count = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.9)) + 1
        return u[:, :count] * s[:count]

    assert_pairs("svcca0.9", dataset("structured"), lambda x, y: repsim_cca(leading(x), leading(y)))


@pytest.mark.parametrize("name", sorted(UNREGULARISED))
def test_unregularised_cca_with_too_few_samples_names_the_models(name: str) -> None:
    """Without a ridge, two models spanning more than n - 1 dimensions together have canonical correlations
    of 1 whatever their features: an error, not a value."""
    with pytest.raises(ValueError, match=r"degenerate for models 'a' \(rank \d+\) and 'b' \(rank \d+\)"):
        compute_similarity(dataset("d_gt_n"), name)


def test_cca_of_invertible_maps_of_one_model_is_one_and_ridge_breaks_that() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 6))
    mapped = x @ (np.eye(6) + rng.standard_normal((6, 6))) + 4.0
    assert compute_similarity({"x": x, "m": mapped}, "cca").matrix.loc["x", "m"] == pytest.approx(1.0, abs=1e-6)
    assert compute_similarity({"x": x, "m": mapped}, "shape0").matrix.loc["x", "m"] == pytest.approx(1.0, abs=1e-6)
    assert compute_similarity({"x": x, "m": mapped}, "cca_ridge0.1").matrix.loc["x", "m"] < 0.999


def test_shape_at_alpha_one_is_angular_procrustes() -> None:
    features = dataset("structured")
    np.testing.assert_allclose(
        compute_similarity(features, "shape1").matrix.to_numpy(),
        compute_similarity(features, "procrustes_angular").matrix.to_numpy(),
        atol=1e-6,
    )


def test_cca_names_spell_out_their_parameters() -> None:
    assert get_metric("svcca0.95_ridge0.01").variance_kept == 0.95
    assert get_metric("svcca0.95_ridge0.01").regulariser == 0.01
    assert get_metric("cca").regulariser == 0 and get_metric("cca").statistic == "mean"
    assert get_metric("shape0.25").alpha == 0.25
    for bad in ("cca_ridge0", "svcca1.5", "svcca0.990", "shape1.5", "shape.5", "pwcca_ridge1e-3", "cca0.5"):
        with pytest.raises(ValueError, match="shape<α>"):
            get_metric(bad)


# --- group 3: regression, GULP, matching, eigenspace overlap, RSM norm difference --------------------------------


def repsim_linreg(x: np.ndarray, y: np.ndarray) -> float:
    """repsim 0.1.5's linear regression (its compiled cpp_linreg: ‖Q_Xᵀ Y‖²_F / ‖Y‖²_F with Q_X an orthonormal
    basis of X, both directions averaged) on the centred features, so that the prediction has an intercept."""
    from repsim import _repsim

    return float(_repsim.cpp_linreg([centred(x), centred(y)])[0, 1])


def resi_linreg(x: np.ndarray, y: np.ndarray) -> float:
    """ReSi's linear_reg (R² of predicting the centred target from the centred predictor's orthonormal basis
    X (XᵀX)^(-1/2)), both directions averaged."""

    def one_way(target: np.ndarray, predictor: np.ndarray) -> float:
        target, predictor = centred(target), centred(predictor)
        basis = predictor @ np.linalg.inv(scipy.linalg.sqrtm(predictor.T @ predictor).real)
        return np.linalg.norm(basis.T @ target) ** 2 / np.linalg.norm(target) ** 2

    return float((one_way(x, y) + one_way(y, x)) / 2)


def sklearn_ridge_linreg(x: np.ndarray, y: np.ndarray, ridge: float) -> float:
    """scikit-learn's Ridge with an intercept, alpha = ridge · ‖X_c‖²_F / d, and R² over all outputs together."""
    from sklearn.linear_model import Ridge

    def one_way(target: np.ndarray, predictor: np.ndarray) -> float:
        alpha = ridge * np.linalg.norm(centred(predictor)) ** 2 / predictor.shape[1]
        prediction = Ridge(alpha=alpha).fit(predictor, target).predict(predictor)
        return 1 - np.sum((target - prediction) ** 2) / np.sum(centred(target) ** 2)

    return float((one_way(x, y) + one_way(y, x)) / 2)


def ref_gulp(x: np.ndarray, y: np.ndarray, lam: float) -> float:
    """GULP (Boix-Adserà et al. 2022) from its definition: with the centred features scaled to unit total variance,
    d² = tr((Σ_X^λ Σ_X)²) + tr((Σ_Y^λ Σ_Y)²) - 2 tr(Σ_X^λ Σ_XY Σ_Y^λ Σ_YX), Σ^λ = (Σ + λI)⁻¹ on the range of Σ;
    as 1 / (1 + d)."""
    n = len(x)
    x, y = (centred(z) * math.sqrt(n) / np.linalg.norm(centred(z)) for z in (x, y))

    def ridge_inverse(z: np.ndarray) -> np.ndarray:
        values, vectors = np.linalg.eigh(z.T @ z / n)
        kept = values > values.max() * 1e-10
        return (vectors[:, kept] / (values[kept] + lam)) @ vectors[:, kept].T

    ix, iy = ridge_inverse(x), ridge_inverse(y)
    sx, sy, sxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    squared = np.trace(ix @ sx @ ix @ sx) + np.trace(iy @ sy @ iy @ sy) - 2 * np.trace(ix @ sxy @ iy @ sxy.T)
    return 1 / (1 + math.sqrt(max(squared, 0.0)))


def ref_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ReSi's neuron correlations: 1 - scikit-learn's cosine distance of the centred columns."""
    import sklearn.metrics

    return 1 - sklearn.metrics.pairwise_distances(centred(x).T, centred(y).T, metric="cosine")


def pot_soft_matching(x: np.ndarray, y: np.ndarray) -> float:
    """POT's exact optimal transport (ot.emd) between the features, uniform masses, cost -ρ."""
    import ot

    correlations = ref_correlations(x, y)
    width_x, width_y = correlations.shape
    plan = ot.emd(np.full(width_x, 1 / width_x), np.full(width_y, 1 / width_y), -correlations)
    return float(np.sum(plan * correlations))


def resi_hard_matching(x: np.ndarray, y: np.ndarray) -> float:
    correlations = ref_correlations(x, y)
    rows, columns = scipy.optimize.linear_sum_assignment(correlations, maximize=True)
    return float(correlations[rows, columns].mean())


def resi_eigenspace_overlap(x: np.ndarray, y: np.ndarray) -> float:
    """ReSi's eigenspace_overlap_score: ‖UᵀV‖²_F / max(d_X, d_Y) of the left singular vectors of the raw features."""
    u = np.linalg.svd(x)[0][:, : np.linalg.matrix_rank(x)]
    v = np.linalg.svd(y)[0][:, : np.linalg.matrix_rank(y)]
    return float(np.linalg.norm(u.T @ v) ** 2 / max(x.shape[1], y.shape[1]))


def resi_rsm_norm_difference(x: np.ndarray, y: np.ndarray) -> float:
    """1 - ‖S_X - S_Y‖²_F / (4n) of the Euclidean distance matrices (scikit-learn) of the centred, unit-Frobenius-
    norm features."""
    import sklearn.metrics

    distances = [
        sklearn.metrics.pairwise_distances(centred(z) / np.linalg.norm(centred(z)), metric="euclidean") for z in (x, y)
    ]
    return float(1 - np.linalg.norm(distances[0] - distances[1]) ** 2 / (4 * len(x)))


GROUP3 = {
    "linreg": repsim_linreg,
    "linreg_ridge0.1": lambda x, y: sklearn_ridge_linreg(x, y, 0.1),
    "gulp0.01": lambda x, y: ref_gulp(x, y, 0.01),
    "gulp1": lambda x, y: ref_gulp(x, y, 1.0),
    "gulp0": lambda x, y: ref_gulp(x, y, 0.0),
    "soft_matching": pot_soft_matching,
    "hard_matching": resi_hard_matching,
    "eigenspace_overlap": resi_eigenspace_overlap,
    "rsm_norm_difference": resi_rsm_norm_difference,
}
UNREGULARISED |= {"linreg", "gulp0", "eigenspace_overlap"}


@pytest.mark.parametrize("case", ["d_lt_n", "structured", "ties"])
@pytest.mark.parametrize("name", GROUP3)
def test_group3_matches_reference(name: str, case: str) -> None:
    assert_pairs(name, dataset(case), GROUP3[name])


@pytest.mark.parametrize("name", sorted(set(GROUP3) - UNREGULARISED))
def test_group3_with_more_features_than_samples(name: str) -> None:
    assert_pairs(name, dataset("d_gt_n"), GROUP3[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(GROUP3) - UNREGULARISED))
def test_group3_on_model_features(name: str, real_features: dict[str, np.ndarray]) -> None:
    assert_pairs(name, real_features, GROUP3[name])


def test_linear_regression_equals_resi() -> None:
    assert_pairs("linreg", dataset("structured"), resi_linreg)


@pytest.mark.parametrize("name", ["linreg", "gulp0", "eigenspace_overlap"])
def test_unregularised_regression_with_too_few_samples_names_the_models(name: str) -> None:
    with pytest.raises(ValueError, match=r"degenerate for models 'a' \(rank \d+\) and 'b' \(rank \d+\)"):
        compute_similarity(dataset("d_gt_n"), name)


def test_soft_matching_as_a_linear_programme(monkeypatch) -> None:
    """Widths whose lcm exceeds the assignment bound go to HiGHS; both are exact."""
    from simcon.similarity import shape

    monkeypatch.setattr(shape, "SOFT_MATCHING_ASSIGNMENT_SIZE", 1)
    assert_pairs("soft_matching", dataset("d_lt_n"), pot_soft_matching)


def test_soft_matching_of_equal_widths_is_hard_matching_and_constant_features_correlate_zero() -> None:
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((40, 6))
    y[:, 2] = 0.7  # a dead unit
    features = {"x": x, "y": y, "permuted": 3 * x[:, ::-1] + 1}
    soft = compute_similarity(features, "soft_matching").matrix
    hard = compute_similarity(features, "hard_matching").matrix
    np.testing.assert_allclose(soft.to_numpy(), hard.to_numpy(), atol=1e-7)
    assert soft.loc["x", "permuted"] == pytest.approx(1.0, abs=1e-6)
    assert_pairs("soft_matching", features, pot_soft_matching)


def test_gulp_at_lambda_zero_is_invariant_to_invertible_maps() -> None:
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((50, 5)), rng.standard_normal((50, 7))
    before = compute_similarity({"x": x, "y": y}, "gulp0").matrix.loc["x", "y"]
    after = compute_similarity({"x": x @ (np.eye(5) + rng.standard_normal((5, 5))), "y": y}, "gulp0").matrix
    assert after.loc["x", "y"] == pytest.approx(before, abs=1e-6)


# --- group 4: RSA, three RDMs × three comparisons ---------------------------------------------------------------


def rsatoolbox_rsa(rdm: str, comparison: str):
    """rsatoolbox 0.3.2: calc_rdm (correlation; euclidean, which is the squared distance over d) or, as rsatoolbox
    has no cosine RDM, 1 - cosine in float64, compared by rsatoolbox's corr, spearman or tau-a."""
    import rsatoolbox

    method = {"pearson": "corr", "spearman": "spearman", "kendall": "tau-a"}[comparison]

    def rdm_of(x: np.ndarray):
        if rdm == "cosine":
            upper = np.triu_indices(len(x), k=1)
            return rsatoolbox.rdm.RDMs((1 - ref_cosines(x))[upper][None, :])
        return rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=rdm)

    return lambda x, y: float(rsatoolbox.rdm.compare(rdm_of(x), rdm_of(y), method=method)[0, 0])


RSA_NAMES = [
    f"rsa_{rdm}_{comparison}"
    for rdm in ("correlation", "euclidean", "cosine")
    for comparison in ("pearson", "spearman", "kendall")
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", RSA_NAMES)
def test_group4_matches_rsatoolbox(name: str, case: str) -> None:
    """Duplicated samples ("structured") tie exactly in both implementations. The binary features of "ties" have
    RDM entries that are equal in real arithmetic but sums of different terms, so whether they tie is decided by
    rounding, in float64 too; the ranks are compared there only for the cosine RDM, whose float32 entries keep the
    ties (docs/metrics.md, RSA)."""
    _, rdm, comparison = name.split("_")
    if case == "ties" and comparison != "pearson" and rdm != "cosine":
        pytest.skip("tie structure decided by rounding")
    assert_pairs(name, dataset(case), rsatoolbox_rsa(rdm, comparison))


@pytest.mark.slow
@pytest.mark.parametrize("name", RSA_NAMES)
def test_group4_on_model_features(name: str, real_features: dict[str, np.ndarray]) -> None:
    _, rdm, comparison = name.split("_")
    assert_pairs(name, real_features, rsatoolbox_rsa(rdm, comparison))


@pytest.mark.parametrize("name", ["rsa_euclidean_kendall", "rsa_cosine_spearman", "rsa_euclidean_pearson"])
def test_rsa_tiles_and_rank_files(monkeypatch, name: str) -> None:
    _, rdm, comparison = name.split("_")
    monkeypatch.setattr(engine, "BLOCK_BYTES", 8 * 3 * 7**2)
    monkeypatch.setattr(engine, "TILE_ROWS", 7)
    monkeypatch.setattr(engine, "DIAGONAL_TILE_ROWS", 2)
    monkeypatch.setattr(engine, "RANK_STORE_BYTES", 16)
    assert_pairs(name, dataset("structured"), rsatoolbox_rsa(rdm, comparison))


def test_cosine_rdm_of_a_zero_sample_names_the_model() -> None:
    features = dataset("d_lt_n")
    features["b"] = features["b"].copy()
    features["b"][4] = 0.0
    with pytest.raises(ValueError, match="'b'.*zero in sample 4"):
        compute_similarity(features, "rsa_cosine_spearman")
    assert compute_similarity(features, "rsa_euclidean_spearman").computed_pairs == 3


# --- the per-pair references benchmarks/similarity.py times the engine against ------------------------------------

BENCHMARK_REFERENCES = {
    "distance_correlation": resi_distance_correlation,
    "distance_correlation_squared_unbiased": lambda x, y: resi_distance_correlation(x, y, unbiased=True),
    "aligned_cosine": ref_aligned_cosine,
    "procrustes_angular": ref_procrustes_angular,
    "cca": repsim_cca,
    "svcca0.99": GROUP2["svcca0.99"],
    "pwcca": repsim_pwcca,
    "shape0.5": GROUP2["shape0.5"],
    "linreg": repsim_linreg,
    "gulp0.01": GROUP3["gulp0.01"],
    "soft_matching": pot_soft_matching,
    "hard_matching": resi_hard_matching,
    "eigenspace_overlap": resi_eigenspace_overlap,
    "rsm_norm_difference": resi_rsm_norm_difference,
    **{name: rsatoolbox_rsa(*name.split("_")[1:]) for name in RSA_NAMES},
}
"""Per registered measure added after the paper's: its reference package (repsim, POT, rsatoolbox) where one exists
and fits in memory at the benchmark's size, else the float64 reference of its definition (ReSi's code path where ReSi
has the measure)."""


@pytest.mark.cuda
@pytest.mark.parametrize("name", [*GROUP1, *GROUP2, *GROUP3, *RSA_NAMES])
def test_cuda_equals_cpu(name: str) -> None:
    features = dataset("structured")
    on_cpu = compute_similarity(features, name).matrix.to_numpy()
    on_device = compute_similarity(features, name, device="cuda").matrix.to_numpy()
    np.testing.assert_allclose(on_device, on_cpu, atol=TOLERANCE)
