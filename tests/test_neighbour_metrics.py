"""Neighbourhood metrics (mutual k-NN, Jaccard k-NN, CKNNA) and orthogonal Procrustes against
float64 references written from their definitions; identities, invariances, errors, workflow."""

from __future__ import annotations

import math
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simcon.metrics import INVARIANCES, get_metric, metric_names
from simcon.similarity import angular_shape_distance, compute_similarity, engine

TOLERANCE = 1e-5
NEW_NAMES = ["mutual_knn10", "jaccard_knn10", "cknna10", "procrustes"]
OTHER_K = ["mutual_knn3", "jaccard_knn1", "cknna2"]


# --- float64 references, from the definitions ----------------------------------------------


def ref_cosines(x: np.ndarray) -> np.ndarray:
    """Cosine of every pair of samples, one dot product at a time; 0 with a sample of zeros."""
    unit = [row / (math.sqrt(float(np.dot(row, row))) or 1.0) for row in x.astype(np.float64)]
    n = len(unit)
    return np.array([[float(np.dot(unit[i], unit[j])) for j in range(n)] for i in range(n)])


def ref_neighbours(x: np.ndarray, k: int) -> list[list[int]]:
    """Each sample's k most cosine-similar other samples; ties go to the lower index."""
    cosines = ref_cosines(x)
    n = len(x)
    return [sorted(sorted((j for j in range(n) if j != i), key=lambda j: (-cosines[i, j], j))[:k]) for i in range(n)]


def ref_mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """PRH mutual k-NN: mean over samples of |N_X(i) ∩ N_Y(i)| / k."""
    nx, ny = ref_neighbours(x, k), ref_neighbours(y, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny)]))


def ref_jaccard_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    nx, ny = ref_neighbours(x, k), ref_neighbours(y, k)
    return float(np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(nx, ny)]))


def ref_neighbour_mask(x: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros((len(x), len(x)))
    for i, row in enumerate(ref_neighbours(x, k)):
        mask[i, row] = 1.0
    return mask


def ref_hsic_song(a: np.ndarray, b: np.ndarray) -> float:
    """Song et al. (2012) eq. 5 as the PRH code writes it, for matrices that need not be symmetric."""
    n = len(a)
    at, bt = a.copy(), b.copy()
    np.fill_diagonal(at, 0.0)
    np.fill_diagonal(bt, 0.0)
    value = np.sum(at * bt.T) + at.sum() * bt.sum() / ((n - 1) * (n - 2)) - 2 * np.sum(at @ bt) / (n - 2)
    return float(value / (n * (n - 3)))


def ref_cknna_one_order(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The PRH code's CKNNA (unbiased, linear kernel of the normalised features) with X first."""
    kx, ky = ref_cosines(x), ref_cosines(y)
    mx, my = ref_neighbour_mask(x, k), ref_neighbour_mask(y, k)
    mask = mx * my
    return ref_hsic_song(mask * kx, mask * ky) / math.sqrt(
        ref_hsic_song(mx * kx, mx * kx) * ref_hsic_song(my * ky, my * ky)
    )


def ref_cknna(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The registered, symmetric CKNNA: the mean of the PRH code's numerator in both orders."""
    kx, ky = ref_cosines(x), ref_cosines(y)
    mx, my = ref_neighbour_mask(x, k), ref_neighbour_mask(y, k)
    mask = mx * my
    numerator = (ref_hsic_song(mask * kx, mask * ky) + ref_hsic_song(mask * ky, mask * kx)) / 2
    return numerator / math.sqrt(ref_hsic_song(mx * kx, mx * kx) * ref_hsic_song(my * ky, my * ky))


def ref_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Nuclear norm of XᵀY of the centred, unit-Frobenius-norm, zero-padded representations."""
    width = max(x.shape[1], y.shape[1])
    shapes = []
    for z in (x, y):
        centred = z.astype(np.float64) - z.astype(np.float64).mean(axis=0)
        padded = np.zeros((len(z), width))
        padded[:, : z.shape[1]] = centred / np.linalg.norm(centred)
        shapes.append(padded)
    return float(np.linalg.svd(shapes[0].T @ shapes[1], compute_uv=False).sum())


def reference(name: str, x: np.ndarray, y: np.ndarray) -> float:
    if name == "procrustes":
        return ref_procrustes(x, y)
    for prefix, function in (("mutual_knn", ref_mutual_knn), ("jaccard_knn", ref_jaccard_knn), ("cknna", ref_cknna)):
        if name.startswith(prefix):
            return function(x, y, int(name[len(prefix) :]))
    raise AssertionError(name)


# --- data ------------------------------------------------------------------------------------


def dataset(case: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    if case == "random_d_lt_n":
        return {m: rng.standard_normal((37, d)).astype(np.float32) for m, d in [("a", 5), ("b", 12), ("c", 3)]}
    if case == "random_d_gt_n":
        return {m: rng.standard_normal((23, d)).astype(np.float32) for m, d in [("a", 40), ("b", 64), ("c", 29)]}
    if case == "structured":
        # Shared low-rank signal, ReLU features, a duplicated sample (tied cosines) and a
        # model that is a noisy linear map of another.
        n = 41
        latent = rng.standard_normal((n, 3))
        a = np.maximum(latent @ rng.standard_normal((3, 16)), 0) + 0.01 * rng.random((n, 16))
        b = latent @ rng.standard_normal((3, 50)) + 0.3 * rng.standard_normal((n, 50))
        c = a @ rng.standard_normal((16, 7)) + 0.05 * rng.standard_normal((n, 7))
        for z in (a, b, c):
            z[5] = z[4]
        return {"relu": a.astype(np.float32), "lowrank": b.astype(np.float32), "mapped": c.astype(np.float32)}
    if case == "binary_ties":
        # Every sample has exactly 4 of 12 (or 3 of 9) features on: cosines are shared/4, so
        # many neighbours tie at the k-th cosine and the lower index must win.
        def binary(n: int, d: int, on: int) -> np.ndarray:
            rows = np.zeros((n, d), dtype=np.float32)
            for row in rows:
                row[rng.choice(d, on, replace=False)] = 1.0
            return rows

        return {"b12": binary(30, 12, 4), "b9": binary(30, 9, 3), "b20": binary(30, 20, 4)}
    if case == "zero_samples":
        # ReLU features can be all zero for some inputs (seen in the tiny workflow's lite0).
        features = {
            m: np.maximum(rng.standard_normal((32, d)) - 0.5, 0).astype(np.float32)
            for m, d in [("a", 8), ("b", 5), ("c", 20)]
        }
        features["a"][[3, 17]] = 0.0
        features["b"][3] = 0.0
        return features
    if case == "unnormalised":
        return {
            m: (s * rng.standard_normal((30, d)) + 1.0).astype(np.float32)
            for m, d, s in [("a", 6, 0.1), ("b", 9, 20.0)]
        }
    raise AssertionError(case)


CASES = ["random_d_lt_n", "random_d_gt_n", "structured", "binary_ties", "zero_samples", "unnormalised"]


def assert_matches_reference(name: str, features: dict[str, np.ndarray], **kwargs) -> None:
    matrix = compute_similarity(features, name, **kwargs).matrix
    for a, b in combinations(features, 2):
        expected = reference(name, features[a], features[b])
        assert abs(matrix.loc[a, b] - expected) < TOLERANCE, (name, a, b, matrix.loc[a, b], expected)
        assert matrix.loc[b, a] == matrix.loc[a, b]


# --- the references themselves --------------------------------------------------------------


def test_reference_ties_go_to_the_lower_index() -> None:
    x = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    assert ref_neighbours(x, 2)[0] == [1, 3] and ref_neighbours(x, 3)[2] == [0, 1, 4]


def test_prh_cknna_depends_on_the_order_of_the_models() -> None:
    """Why the registered CKNNA averages both orders: the PRH code's value is not symmetric."""
    features = dataset("random_d_lt_n")
    x, y = features["a"], features["b"]
    assert abs(ref_cknna_one_order(x, y, 10) - ref_cknna_one_order(y, x, 10)) > 1e-4
    assert (
        min(ref_cknna_one_order(x, y, 10), ref_cknna_one_order(y, x, 10))
        <= ref_cknna(x, y, 10)
        <= max(ref_cknna_one_order(x, y, 10), ref_cknna_one_order(y, x, 10))
    )


# --- registry and names ------------------------------------------------------------------------


def test_new_metrics_are_registered_with_their_properties() -> None:
    for name in NEW_NAMES:
        assert name in metric_names()
        spec = get_metric(name)
        assert spec.symmetric and spec.larger_is_more_similar
    for name in ("mutual_knn10", "jaccard_knn10"):
        spec = get_metric(name)
        assert spec.value_range == (0.0, 1.0) and spec.neighbours == 10 and spec.min_samples == 11
        assert spec.invariances == {"isotropic_scaling", "orthogonal", "permutation"}
    assert get_metric("cknna10").value_range == (-math.inf, math.inf)
    assert get_metric("cknna10").knn_statistic == "cknna"
    assert get_metric("procrustes").value_range == (0.0, 1.0)
    assert get_metric("procrustes").invariances == {"translation", "isotropic_scaling", "orthogonal", "permutation"}


def test_names_spell_out_k() -> None:
    spec = get_metric("mutual_knn25")
    assert (spec.name, spec.neighbours, spec.knn_statistic, spec.min_samples) == ("mutual_knn25", 25, "mutual", 26)
    assert get_metric("cknna2").min_samples == 4
    assert get_metric("jaccard_knn1").neighbours == 1
    for bad in ("mutual_knn", "mutual_knn0", "mutual_knn010", "cknna1", "knn10", "mutual_knn-3", "procrustes10"):
        with pytest.raises(ValueError, match="mutual_knn<k>"):
            get_metric(bad)


def test_angular_shape_distance() -> None:
    np.testing.assert_allclose(angular_shape_distance(np.array([1.0, 0.5, 0.0])), [0.0, math.pi / 3, math.pi / 2])
    assert angular_shape_distance(1.0 + 1e-12) == 0.0


# --- agreement with the references ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", NEW_NAMES + OTHER_K)
def test_matches_float64_reference(name: str, case: str) -> None:
    assert_matches_reference(name, dataset(case))


@pytest.mark.parametrize("name", NEW_NAMES)
def test_strips_and_chunks_smaller_than_n(monkeypatch, name: str) -> None:
    """k-NN strips of one row up to uneven heights, and Procrustes row chunks that do not divide n."""
    features = dataset("structured")
    for block in (4 * 41, 4 * 41 * 7):
        monkeypatch.setattr(engine, "BLOCK_BYTES", block)
        monkeypatch.setattr(engine, "FEATURE_CHUNK_ROWS", 6)
        assert_matches_reference(name, features)


def test_many_models_and_pair_subsets(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    features = {f"m{i}": rng.standard_normal((25, 3 + 4 * i)).astype(np.float32) for i in range(6)}
    for name in NEW_NAMES:
        assert_matches_reference(name, features)


# --- identities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_NAMES + OTHER_K)
def test_a_representation_with_itself_is_one(name: str) -> None:
    x = dataset("structured")["relu"]
    result = compute_similarity({"x": x, "copy": x.copy()}, name)
    assert abs(result.matrix.loc["x", "copy"] - 1.0) < 1e-6
    np.testing.assert_array_equal(np.diag(result.matrix.to_numpy()), 1.0)


def test_mutual_knn_of_independent_representations_is_chance() -> None:
    """Independent X and Y: N_Y(i) is independent of N_X(i) and, by exchangeability, each other
    sample is in it with probability k/(n-1), so E[mutual k-NN] = k/(n-1) = 0.0167 here. The
    per-sample fraction has standard deviation about 0.04; averaged over n = 600 samples
    (neighbourhoods overlap, so not independent) it stays well within the tolerance 0.006."""
    rng = np.random.default_rng(2024)
    n, k = 600, 10
    features = {m: rng.standard_normal((n, 32)).astype(np.float32) for m in ("x", "y", "z")}
    matrix = compute_similarity(features, f"mutual_knn{k}").matrix.to_numpy()
    chance = k / (n - 1)
    assert np.abs(matrix[np.triu_indices(3, k=1)] - chance).max() < 0.006


def test_procrustes_is_one_for_orthogonal_copies_and_zero_for_orthogonal_shapes() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 4))
    y = x @ random_orthogonal(4, rng)
    # Orthonormal, centred columns: a and b span orthogonal subspaces, so aᵀb = 0.
    centred = rng.standard_normal((30, 4))
    q, _ = np.linalg.qr(centred - centred.mean(axis=0))
    a, b = q[:, :2], q[:, 2:]
    matrix = compute_similarity({"x": x, "y": y, "a": a, "b": b}, "procrustes").matrix
    assert abs(matrix.loc["x", "y"] - 1.0) < 1e-6
    assert abs(matrix.loc["a", "b"]) < 1e-6


# --- invariances: each claimed one holds, every other transform changes the value -------------------


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def transformed(x: np.ndarray, transform: str, rng: np.random.Generator) -> np.ndarray:
    d = x.shape[1]
    if transform == "translation":
        return x + 0.1 * rng.standard_normal(d)
    if transform == "isotropic_scaling":
        return 1.7 * x
    if transform == "orthogonal":
        return x @ random_orthogonal(d, rng)
    if transform == "permutation":
        return x[:, rng.permutation(d)]
    if transform == "anisotropic_scaling":
        return x * np.exp(2 * rng.standard_normal(d))
    if transform == "invertible_linear":
        return x @ (np.eye(d) + rng.standard_normal((d, d)))
    raise AssertionError(transform)


@pytest.mark.parametrize("transform", INVARIANCES)
@pytest.mark.parametrize("name", metric_names())
def test_claimed_invariances_hold_and_no_others(name: str, transform: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{name}/{transform}".encode()))
    # Small spread, so that the RBF kernels (σ ≥ 0.2) stay far from the identity, and standard deviations
    # halving from one principal direction to the next, so that keeping 99 % of the variance drops some.
    features = {
        m: 0.1 * ((rng.standard_normal((36, d)) * 2.0 ** -np.arange(d)) @ random_orthogonal(d, rng))
        + 0.05 * rng.standard_normal(d)
        for m, d in [("a", 6), ("b", 9), ("c", 4)]
    }
    before = compute_similarity(features, name).matrix.to_numpy()
    moved = {m: transformed(x, transform, rng) for m, x in features.items()}
    after = compute_similarity(moved, name).matrix.to_numpy()
    if transform in get_metric(name).invariances:
        np.testing.assert_allclose(after, before, atol=TOLERANCE)
    else:
        assert np.abs(after - before).max() > 1e-3


# --- invalid input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, minimum", [("mutual_knn10", 11), ("jaccard_knn3", 4), ("cknna10", 11), ("cknna2", 4), ("procrustes", 2)]
)
def test_too_few_samples(name: str, minimum: int) -> None:
    rng = np.random.default_rng(0)
    features = {m: rng.standard_normal((minimum - 1, 3)).astype(np.float32) for m in "ab"}
    with pytest.raises(ValueError, match=f"at least {minimum} samples"):
        compute_similarity(features, name)
    bigger = {m: rng.standard_normal((minimum, 3)).astype(np.float32) for m in "ab"}
    assert compute_similarity(bigger, name).computed_pairs == 1


@pytest.mark.parametrize("name", NEW_NAMES)
def test_constant_features_name_the_model(name: str) -> None:
    features = dataset("random_d_lt_n")
    features["flat"] = np.full((37, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="'flat'.*constant"):
        compute_similarity(features, name)


# --- cache ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_NAMES)
def test_cache_adding_a_model_computes_only_its_pairs(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(3)
    features = {f"m{i}": rng.standard_normal((20, 4 + i)).astype(np.float32) for i in range(4)}
    assert compute_similarity(features, name, cache_dir=tmp_path).computed_pairs == 6
    extended = {**features, "new": rng.standard_normal((20, 5)).astype(np.float32)}
    grown = compute_similarity(extended, name, cache_dir=tmp_path)
    assert grown.computed_pairs == 4
    fresh = compute_similarity(extended, name).matrix
    pd.testing.assert_frame_equal(grown.matrix, fresh, atol=1e-7, rtol=0)


# --- device -----------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("case", ["structured", "binary_ties"])
@pytest.mark.parametrize("name", NEW_NAMES + OTHER_K)
def test_cuda_matches_reference(name: str, case: str) -> None:
    assert_matches_reference(name, dataset(case), device="cuda")


# --- workflow ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_runs_every_analysis_for_the_new_metrics(tmp_path: Path) -> None:
    """The tiny workflow with only the new metrics: every target of `all` and the report."""
    import copy

    from conftest import TINY, snakemake

    config = copy.deepcopy(TINY)
    config["metrics"] = NEW_NAMES
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results"
    for name in NEW_NAMES:
        matrix = pd.read_csv(results / f"similarity/shapes/{name}.csv", index_col=0)
        assert list(matrix.index) == list(TINY["models"])
        np.testing.assert_allclose(np.diag(matrix.to_numpy()), 1.0)
        consistency = pd.read_csv(results / f"consistency/{name}/consistency.csv")
        assert consistency["rho"].notna().any()
        for figure in ("consistency_by_category", "similarity_vs_gap"):  # the permutation test needs 4 models
            assert (results / f"figures/{name}/{figure}.png").stat().st_size > 10_000
    report = snakemake(tmp_path, config, "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "cknna10" in (tmp_path / "report.html").read_text()
