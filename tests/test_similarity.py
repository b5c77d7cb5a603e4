"""Tests of the all-pairs similarity engine against a naive float64 reference of docs/design.md §3."""

from __future__ import annotations

import json
import os
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from simcon.metrics import INVARIANCES, METRICS, MetricSpec, get_metric, metric_names
from simcon.similarity import compute_similarity, engine, kernel, rsa

TOLERANCE = 1e-5
SIGMAS = (0.2, 0.4, 0.6, 0.8)
CKA_NAMES = [f"cka_linear_{e}" for e in ("unbiased", "biased")] + [
    f"cka_rbf{s}_{e}" for s in SIGMAS for e in ("unbiased", "biased")
]
RSA_NAMES = ["rsa_correlation_spearman", "rsa_correlation_pearson"]


# --- naive float64 reference -----------------------------------------------------------


def ref_gram(x: np.ndarray, kernel: str, sigma: float | None) -> np.ndarray:
    x = x.astype(np.float64)
    if kernel == "linear":
        return x @ x.T
    differences = x[:, None, :] - x[None, :, :]
    return np.exp(-np.sum(differences**2, axis=2) / (2 * sigma**2))


def ref_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h) / (n - 1) ** 2)


def ref_u_centre(k: np.ndarray) -> np.ndarray:
    """Székely–Rizzo U-centring, element by element, of k with its diagonal removed."""
    n = len(k)
    a = k.copy()
    np.fill_diagonal(a, 0.0)
    u = np.zeros_like(a)
    total = a.sum()
    for i in range(n):
        for j in range(n):
            if i != j:
                u[i, j] = a[i, j] - a[i].sum() / (n - 2) - a[:, j].sum() / (n - 2) + total / ((n - 1) * (n - 2))
    return u


def ref_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    return float(np.sum(ref_u_centre(k) * ref_u_centre(l)) / (n * (n - 3)))


def ref_hsic_song(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC in the form of Song et al. (2012), eq. 5."""
    n = len(k)
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ kt @ lt @ one
    )
    return float(value / (n * (n - 3)))


def ref_cka(x: np.ndarray, y: np.ndarray, kernel: str, sigma: float | None, unbiased: bool) -> float:
    k, l = ref_gram(x, kernel, sigma), ref_gram(y, kernel, sigma)
    hsic = ref_hsic_unbiased if unbiased else ref_hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def ref_rsa(x: np.ndarray, y: np.ndarray, comparison: str) -> float:
    upper = np.triu_indices(len(x), k=1)
    rdm_x = 1 - np.corrcoef(x.astype(np.float64))
    rdm_y = 1 - np.corrcoef(y.astype(np.float64))
    test = scipy.stats.spearmanr if comparison == "spearman" else scipy.stats.pearsonr
    return float(test(rdm_x[upper], rdm_y[upper])[0])


def reference(name: str, x: np.ndarray, y: np.ndarray) -> float:
    if name.startswith("rsa"):
        return ref_rsa(x, y, name.rsplit("_", 1)[1])
    kernel_part, estimator = name.split("_")[1:]
    if kernel_part == "linear":
        return ref_cka(x, y, "linear", None, estimator == "unbiased")
    return ref_cka(x, y, "rbf", float(kernel_part[3:]), estimator == "unbiased")


# --- data ------------------------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dataset(case: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    if case == "random_d_lt_n":
        return {m: unit_rows(rng.standard_normal((37, d))) for m, d in [("a", 5), ("b", 12), ("c", 3)]}
    if case == "random_d_gt_n":
        return {m: unit_rows(rng.standard_normal((23, d))) for m, d in [("a", 40), ("b", 64), ("c", 29)]}
    if case == "structured":
        # Shared low-rank signal, non-negative (ReLU-like) features, duplicated samples
        # (tied RDM entries) and a model that is a noisy linear map of another.
        n = 41
        latent = rng.standard_normal((n, 3))
        a = np.maximum(latent @ rng.standard_normal((3, 16)), 0) + 0.01 * rng.random((n, 16))
        a[5] = a[4]
        b = latent @ rng.standard_normal((3, 50)) + 0.3 * rng.standard_normal((n, 50))
        b[5] = b[4]
        c = a @ rng.standard_normal((16, 7)) + 0.05 * rng.standard_normal((n, 7))
        c[5] = c[4]
        return {"relu": unit_rows(a), "lowrank": unit_rows(b), "mapped": unit_rows(c)}
    if case == "unnormalised":
        return {
            m: (s * rng.standard_normal((30, d)) + 1.0).astype(np.float32) for m, d, s in [("a", 6, 0.1), ("b", 9, 0.2)]
        }
    if case == "minimum_n":
        return {m: unit_rows(rng.standard_normal((4, d))) for m, d in [("a", 3), ("b", 5)]}
    raise AssertionError(case)


CASES = ["random_d_lt_n", "random_d_gt_n", "structured", "unnormalised", "minimum_n"]


def assert_matches_reference(name: str, features: dict[str, np.ndarray], **kwargs) -> None:
    matrix = compute_similarity(features, name, **kwargs).matrix
    ids = list(features)
    for a, b in combinations(ids, 2):
        expected = reference(name, features[a], features[b])
        assert abs(matrix.loc[a, b] - expected) < TOLERANCE, (name, a, b, matrix.loc[a, b], expected)
        assert matrix.loc[b, a] == matrix.loc[a, b]


# --- the reference itself ----------------------------------------------------------------


def test_reference_u_centring_agrees_with_song_form() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((12, 7))
    k, l = ref_gram(x, "rbf", 1.5), ref_gram(y, "linear", None)
    assert ref_hsic_unbiased(k, l) == pytest.approx(ref_hsic_song(k, l), rel=1e-10)


# --- registry ------------------------------------------------------------------------------


def test_registry_names_and_properties() -> None:
    neighbourhood_names = ["mutual_knn10", "jaccard_knn10", "cknna10", "procrustes"]
    assert set(CKA_NAMES + RSA_NAMES + neighbourhood_names) <= set(metric_names())
    assert set(METRICS) == set(metric_names())
    for name in metric_names():
        spec = get_metric(name)
        assert isinstance(spec, MetricSpec)
        assert spec.name == name and spec.symmetric and spec.larger_is_more_similar
        assert spec.invariances <= set(INVARIANCES)
        if name in CKA_NAMES + RSA_NAMES:
            low, high = spec.value_range
            assert high == 1.0 and low in (-1.0, 0.0)
    assert get_metric("cka_rbf0.4_biased").sigma == 0.4
    assert get_metric("cka_linear_biased").value_range == (0.0, 1.0)


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(ValueError) as error:
        get_metric("cka_cosine")
    for name in metric_names():
        assert name in str(error.value)
    with pytest.raises(ValueError, match="cka_linear_unbiased"):
        compute_similarity(dataset("minimum_n"), "nope")


# --- agreement with the reference ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", CKA_NAMES + RSA_NAMES)
def test_matches_float64_reference(name: str, case: str) -> None:
    assert_matches_reference(name, dataset(case))


@pytest.mark.parametrize("strategy", ["features", "tiles"])
@pytest.mark.parametrize("name", ["cka_linear_unbiased", "cka_linear_biased"])
@pytest.mark.parametrize("case", ["random_d_lt_n", "random_d_gt_n", "structured"])
def test_linear_strategies_match_reference(monkeypatch, name: str, case: str, strategy: str) -> None:
    monkeypatch.setattr(kernel, "linear_strategy", lambda *args: strategy)
    assert_matches_reference(name, dataset(case))


@pytest.mark.parametrize("name", CKA_NAMES + RSA_NAMES)
def test_tiles_and_chunks_smaller_than_n(monkeypatch, name: str) -> None:
    """Tiles and strips that do not divide n, split diagonal blocks, and several rank chunks, give
    the same values."""
    features = dataset("structured")
    m = len(features)
    monkeypatch.setattr(engine, "BLOCK_BYTES", 8 * m * 7**2)
    monkeypatch.setattr(engine, "TILE_ROWS", 7)
    monkeypatch.setattr(engine, "DIAGONAL_TILE_ROWS", 2)
    monkeypatch.setattr(engine, "FEATURE_CHUNK_ROWS", 6)
    assert_matches_reference(name, features)


def test_ranks_in_temporary_file(monkeypatch) -> None:
    monkeypatch.setattr(engine, "RANK_STORE_BYTES", 16)
    assert_matches_reference("rsa_correlation_spearman", dataset("structured"))


def test_centred_ranks_average_ties() -> None:
    values = torch.tensor([0.5, -0.0, 0.0, -2.0, 0.5, 0.5, 3.0, -1e-30], dtype=torch.float32)
    expected = 2 * scipy.stats.rankdata(values.numpy()) - (len(values) + 1)
    np.testing.assert_array_equal(rsa.centred_ranks(values).numpy(), expected)


def test_many_models_pair_subsets(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    features = {f"m{i}": unit_rows(rng.standard_normal((25, 3 + 4 * i))) for i in range(6)}
    for name in ["cka_linear_unbiased", "cka_rbf0.6_unbiased", "rsa_correlation_spearman"]:
        assert_matches_reference(name, features)


@pytest.mark.parametrize("strategy", ["tiles", "features"])
def test_accumulates_large_sums_in_float64(monkeypatch, strategy: str) -> None:
    """n = 10⁴ (10⁸ kernel entries): biased linear CKA of two 1-d models is their r²."""
    rng = np.random.default_rng(3)
    n = 10_000
    x = rng.standard_normal(n)
    y = 0.05 * x + rng.standard_normal(n)
    features = {"x": x[:, None].astype(np.float32), "y": y[:, None].astype(np.float32)}
    r = scipy.stats.pearsonr(features["x"][:, 0].astype(np.float64), features["y"][:, 0].astype(np.float64))[0]
    monkeypatch.setattr(kernel, "linear_strategy", lambda *args: strategy)
    value = compute_similarity(features, "cka_linear_biased").matrix.loc["x", "y"]
    assert abs(value - r**2) < 1e-8


# --- invariances and shape of the result -------------------------------------------------------


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


@pytest.mark.parametrize("name", CKA_NAMES)
def test_cka_invariant_to_orthogonal_transform(name: str) -> None:
    rng = np.random.default_rng(11)
    features = dataset("random_d_lt_n")
    before = compute_similarity(features, name).matrix
    rotated = {m: (x @ random_orthogonal(x.shape[1], rng)).astype(np.float32) for m, x in features.items()}
    after = compute_similarity(rotated, name).matrix
    np.testing.assert_allclose(after.to_numpy(), before.to_numpy(), atol=TOLERANCE)


@pytest.mark.parametrize("name", ["cka_linear_unbiased", "cka_linear_biased"] + RSA_NAMES)
def test_invariant_to_isotropic_scaling(name: str) -> None:
    features = dataset("random_d_gt_n")
    before = compute_similarity(features, name).matrix
    scaled = {m: (s * x).astype(np.float32) for (m, x), s in zip(features.items(), (3, 0.01, 40))}
    after = compute_similarity(scaled, name).matrix
    np.testing.assert_allclose(after.to_numpy(), before.to_numpy(), atol=TOLERANCE)


def test_rbf_cka_depends_on_absolute_scale() -> None:
    features = dataset("random_d_lt_n")
    scaled = {m: 0.3 * x for m, x in features.items()}
    before = compute_similarity(features, "cka_rbf0.4_biased").matrix
    after = compute_similarity(scaled, "cka_rbf0.4_biased").matrix
    assert np.abs(after.to_numpy() - before.to_numpy()).max() > 1e-3


@pytest.mark.parametrize("name", ["cka_linear_unbiased", "cka_linear_biased"])
def test_linear_cka_of_a_model_with_itself_is_one(name: str) -> None:
    x = dataset("structured")["relu"]
    matrix = compute_similarity({"x": x, "copy": x.copy()}, name).matrix
    assert abs(matrix.loc["x", "copy"] - 1.0) < 1e-6


@pytest.mark.parametrize("name", CKA_NAMES + RSA_NAMES)
def test_matrix_symmetric_unit_diagonal_input_order(name: str) -> None:
    features = dict(reversed(list(dataset("random_d_lt_n").items())))
    result = compute_similarity(features, name)
    matrix = result.matrix
    assert list(matrix.index) == list(features) == list(matrix.columns)
    assert matrix.dtypes.eq(np.float64).all()
    np.testing.assert_array_equal(matrix.to_numpy(), matrix.to_numpy().T)
    np.testing.assert_array_equal(np.diag(matrix.to_numpy()), 1.0)
    low, high = get_metric(name).value_range
    assert ((matrix.to_numpy() >= low) & (matrix.to_numpy() <= high)).all()
    assert result.computed_pairs == 3


def test_single_model() -> None:
    result = compute_similarity({"only": dataset("minimum_n")["a"]}, "cka_linear_unbiased")
    assert result.matrix.to_numpy().tolist() == [[1.0]]
    assert result.computed_pairs == 0


def test_progress_bar_goes_to_stderr(capsys) -> None:
    compute_similarity(dataset("random_d_lt_n"), "cka_rbf0.4_unbiased", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "tiles" in captured.err


# --- invalid input ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CKA_NAMES + RSA_NAMES)
def test_constant_features_name_the_model(name: str) -> None:
    features = dataset("random_d_lt_n")
    features["flat"] = np.full((37, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="'flat'.*constant"):
        compute_similarity(features, name)


def test_constant_sample_in_rsa_names_the_model() -> None:
    features = dataset("random_d_lt_n")
    features["b"] = features["b"].copy()
    features["b"][3] = 0.25
    with pytest.raises(ValueError, match="'b'.*sample 3"):
        compute_similarity(features, "rsa_correlation_spearman")


def test_degenerate_kernel_names_the_model() -> None:
    """Far-apart samples make the RBF kernel the identity, whose U-centred form is zero."""
    features = dataset("random_d_lt_n")
    features["spread"] = 100 * np.eye(37, dtype=np.float32)
    with pytest.raises(ValueError, match="'spread'.*degenerate"):
        compute_similarity(features, "cka_rbf0.2_unbiased")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_name_the_model(bad: float) -> None:
    features = dataset("random_d_lt_n")
    features["b"] = features["b"].copy()
    features["b"][2, 1] = bad
    with pytest.raises(ValueError, match="'b'.*NaN or Inf"):
        compute_similarity(features, "cka_linear_unbiased")


def test_mismatched_sample_counts_name_the_models() -> None:
    features = dataset("random_d_lt_n")
    features["short"] = features["a"][:30]
    with pytest.raises(ValueError, match="different numbers of samples") as error:
        compute_similarity(features, "cka_linear_biased")
    assert "'short': 30" in str(error.value) and "'a': 37" in str(error.value)


@pytest.mark.parametrize(
    "name, minimum",
    [("cka_linear_unbiased", 4), ("cka_rbf0.2_unbiased", 4), ("cka_linear_biased", 2), ("rsa_correlation_pearson", 3)],
)
def test_too_few_samples(name: str, minimum: int) -> None:
    rng = np.random.default_rng(0)
    features = {m: unit_rows(rng.standard_normal((minimum - 1, 3))) for m in "ab"}
    with pytest.raises(ValueError, match=f"at least {minimum} samples"):
        compute_similarity(features, name)


# --- incremental cache -----------------------------------------------------------------------------


def cached_models(count: int, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"model{i}": unit_rows(rng.standard_normal((20, 4 + i))) for i in range(count)}


def cache_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.json"))


@pytest.mark.parametrize("name", ["cka_linear_unbiased", "cka_rbf0.4_biased", "rsa_correlation_spearman"])
def test_cache_adding_a_model_computes_only_its_pairs(tmp_path: Path, name: str) -> None:
    features = cached_models(5)
    first = compute_similarity(features, name, cache_dir=tmp_path, context_key="idx")
    assert first.computed_pairs == 10
    assert len(cache_files(tmp_path)) == 10
    again = compute_similarity(features, name, cache_dir=tmp_path, context_key="idx")
    assert again.computed_pairs == 0
    pd.testing.assert_frame_equal(again.matrix, first.matrix)

    extended = {**features, "new": cached_models(1, seed=9)["model0"]}
    grown = compute_similarity(extended, name, cache_dir=tmp_path, context_key="idx")
    assert grown.computed_pairs == 5
    fresh = compute_similarity(extended, name)
    np.testing.assert_allclose(grown.matrix.to_numpy(), fresh.matrix.to_numpy(), atol=1e-7)


def test_cache_changed_features_recompute_their_row(tmp_path: Path) -> None:
    features = cached_models(5)
    compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    features["model2"] = features["model2"][::-1].copy()
    result = compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    assert result.computed_pairs == 4
    fresh = compute_similarity(features, "cka_linear_unbiased").matrix
    np.testing.assert_allclose(result.matrix.to_numpy(), fresh.to_numpy(), atol=1e-7)


def test_cache_key_covers_context_metric_and_dtype(tmp_path: Path) -> None:
    features = cached_models(3)
    compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path, context_key="k1")
    assert compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path, context_key="k2").computed_pairs == 3
    assert compute_similarity(features, "cka_linear_biased", cache_dir=tmp_path, context_key="k1").computed_pairs == 3
    as_float64 = {m: x.astype(np.float64) for m, x in features.items()}
    assert (
        compute_similarity(as_float64, "cka_linear_unbiased", cache_dir=tmp_path, context_key="k1").computed_pairs == 3
    )
    renamed = {f"other{i}": x for i, x in enumerate(features.values())}
    assert compute_similarity(renamed, "cka_linear_unbiased", cache_dir=tmp_path, context_key="k1").computed_pairs == 0


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"value": 0.5}', b"\x00\xff" * 10])
def test_cache_corrupt_entry_is_recomputed(tmp_path: Path, damage: bytes) -> None:
    features = cached_models(4)
    expected = compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path).matrix
    victim = cache_files(tmp_path)[0]
    victim.write_bytes(damage)
    result = compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    assert result.computed_pairs == 1
    pd.testing.assert_frame_equal(result.matrix, expected)
    assert np.isfinite(json.loads(victim.read_text())["value"])


def test_cache_wrong_value_for_key_is_not_trusted(tmp_path: Path) -> None:
    """An entry whose stored key fields differ from its file's key is ignored."""
    features = cached_models(3)
    compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    victim = cache_files(tmp_path)[0]
    record = json.loads(victim.read_text())
    record["context_key"] = "something else"
    victim.write_text(json.dumps(record))
    assert compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path).computed_pairs == 1


def test_cache_interrupted_write_leaves_no_entry(tmp_path: Path, monkeypatch) -> None:
    features = cached_models(3)
    real_replace = os.replace
    calls = []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(cache_files(tmp_path)) == 1
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".json"]
    result = compute_similarity(features, "cka_linear_unbiased", cache_dir=tmp_path)
    assert result.computed_pairs == 2
    assert len(cache_files(tmp_path)) == 3


# --- device -------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("name", CKA_NAMES + RSA_NAMES)
def test_cuda_matches_reference(name: str) -> None:
    assert_matches_reference(name, dataset("structured"), device="cuda")
