import itertools

import numpy as np
import pandas as pd
import pytest

from conftest import FIVE, METADATA, R12, five_matrices
from simcon.consistency import consistency, model_sets, summarise
from simcon.significance import bootstrap_medians, permutation_test, resampled_medians

RHO = np.array([[1.0, 0.2, 0.8], [0.2, 1.0, np.nan], [0.8, np.nan, 1.0]])


def test_resampled_medians_drop_pairs_of_a_dataset_with_itself():
    samples = np.array([[0, 1, 2], [0, 0, 1], [1, 0, 2], [2, 2, 2]])
    medians = resampled_medians(RHO, samples)
    # [0, 1, 2]: .2, .8 (1-2 has no value); [0, 0, 1]: .2, .2; [1, 0, 2]: .2, nan, .8; [2, 2, 2]: no pair
    np.testing.assert_allclose(medians[:3], [0.5, 0.2, 0.5])
    assert np.isnan(medians[3])


def test_bootstrap_interval_collapses_when_all_datasets_are_identical():
    matrices = {d: five_matrices()["d1"] for d in ("x", "y", "z", "w")}
    table = consistency(matrices, model_sets(METADATA))
    intervals = bootstrap_medians(table, list(matrices), resamples=200, confidence=0.9, seed=1)
    assert len(intervals) == len(summarise(table))
    np.testing.assert_allclose(intervals[["median", "ci_low", "ci_high"]].to_numpy(), 1.0, atol=1e-12)
    assert (intervals["n_resamples"] <= 200).all() and (intervals["n_resamples"] > 150).all()


def test_bootstrap_of_two_datasets_returns_their_one_rho():
    matrices = {d: five_matrices()[d] for d in ("d1", "d2")}
    table = consistency(matrices, {"objective": {"Sup": ["a", "b", "c"]}})
    row = bootstrap_medians(table, ["d1", "d2"], resamples=400, confidence=0.95, seed=0).iloc[0]
    assert row["median"] == row["ci_low"] == row["ci_high"] == pytest.approx(R12)
    assert 100 < row["n_resamples"] < 300  # about half the resamples draw one dataset twice: no pair


def test_bootstrap_is_deterministic_and_brackets_the_median():
    matrices = five_matrices()
    table = consistency(matrices, model_sets(METADATA))
    first = bootstrap_medians(table, list(matrices), 300, 0.95, seed=3)
    pd.testing.assert_frame_equal(first, bootstrap_medians(table, list(matrices), 300, 0.95, seed=3))
    assert (first["ci_low"] <= first["median"] + 1e-12).all() and (first["median"] <= first["ci_high"] + 1e-12).all()
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_medians(table, list(matrices), 10, 95, seed=0)


def random_matrices(models: list[str], datasets: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    matrices = {}
    for d in range(datasets):
        values = rng.random((len(models), len(models)))
        values = (values + values.T) / 2
        np.fill_diagonal(values, 1.0)
        matrices[f"d{d}"] = pd.DataFrame(values, index=models, columns=models)
    return matrices


def metadata_of(objective: list[str], architecture: list[str], models: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "objective": objective,
            "architecture_class": architecture,
            "data_class": ["IN1k"] * len(models),
            "size_class": ["small"] * len(models),
        },
        index=models,
    )


def test_observed_statistic_is_the_std_of_the_set_pair_medians():
    models = [f"m{i}" for i in range(9)]
    metadata = metadata_of(list("AAABBBBCC"), list("XYXYXYXYX"), models)
    matrices = random_matrices(models, 5, seed=0)
    tests, _ = permutation_test(matrices, metadata, permutations=20, seed=0)
    summary = summarise(consistency(matrices, model_sets(metadata)))
    tests = tests.set_index("category")
    for category in ("objective", "architecture"):
        medians = summary.loc[summary["category"] == category, "median"]
        assert tests.loc[category, "observed"] == pytest.approx(np.std(medians), abs=1e-12)
    assert tests.loc["objective", "n_set_pairs"] == 5  # (C, C) has a single model pair
    assert np.isnan(tests.loc["data", "p_value"]) and "nothing to compare" in tests.loc["data", "note"]


def test_exact_p_value_matches_enumerating_every_labelling():
    matrices = five_matrices()
    tests, nulls = permutation_test(matrices, METADATA, permutations=120, seed=0)  # 5! = 120: exact
    row = tests.set_index("category").loc["objective"]
    assert row["exact"] and row["n_permutations"] == 120
    # independently: every placement of the two SSL labels, statistic from consistency() and summarise()
    spreads = []
    for ssl in itertools.combinations(FIVE, 2):
        metadata = METADATA.assign(objective=["SSL" if m in ssl else "Sup" for m in FIVE])
        summary = summarise(consistency(matrices, {"objective": model_sets(metadata)["objective"]}))
        spreads.append(np.std(summary["median"]))
    observed = spreads[list(itertools.combinations(FIVE, 2)).index(("d", "e"))]
    assert row["observed"] == pytest.approx(observed, abs=1e-12)
    expected = np.mean(np.array(spreads) >= observed - 1e-12)
    assert row["p_value"] == pytest.approx(expected, abs=1e-12)
    assert sorted(np.round(nulls.loc[nulls["category"] == "objective", "spread"], 10).unique()) == sorted(
        np.round(np.unique(spreads), 10)
    )


def planted(seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """12 models: the similarities among the first six (objective A) are the same on every dataset up to
    small noise; every other pair is drawn afresh per dataset. Architecture X / Y cuts across A and B."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(12)]
    base = rng.random((12, 12))
    matrices = {}
    for d in range(6):
        values = rng.random((12, 12))
        values[:6, :6] = base[:6, :6] + 0.02 * rng.standard_normal((6, 6))
        values = (np.triu(values, 1) + np.triu(values, 1).T) + np.eye(12)
        matrices[f"d{d}"] = pd.DataFrame(values, index=models, columns=models)
    metadata = metadata_of(["A"] * 6 + ["B"] * 6, list("XXXYYYXXXYYY"), models)
    return matrices, metadata


def test_planted_objective_effect_is_significant_and_unrelated_labels_are_not():
    matrices, metadata = planted(seed=0)
    tests, nulls = permutation_test(matrices, metadata, permutations=199, seed=0)
    tests = tests.set_index("category")
    assert not tests.loc["objective", "exact"] and tests.loc["objective", "n_permutations"] == 199
    assert tests.loc["objective", "p_value"] == pytest.approx(1 / 200)
    assert tests.loc["architecture", "p_value"] > 0.2
    count = (nulls.loc[nulls["category"] == "architecture", "spread"] >= tests.loc["architecture", "observed"]).sum()
    assert tests.loc["architecture", "p_value"] == pytest.approx((1 + count) / 200)


def test_permutation_test_is_deterministic_for_a_seed():
    matrices, metadata = planted(seed=1)
    first = permutation_test(matrices, metadata, permutations=50, seed=7)
    second = permutation_test(matrices, metadata, permutations=50, seed=7)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    other = permutation_test(matrices, metadata, permutations=50, seed=8)[1]
    assert not np.array_equal(first[1]["spread"], other["spread"])


def test_permutation_test_of_one_dataset_writes_no_statistic():
    """With one dataset no set pair has a median rho: every category gets a note, never a statistic or p-value."""
    tests, nulls = permutation_test({"d1": five_matrices()["d1"]}, METADATA, permutations=50, seed=0)
    assert tests[["observed", "null_mean", "p_value", "n_permutations"]].isna().all().all()
    assert tests["note"].str.len().gt(0).all() and nulls.empty
    assert "no set pair has a median rho" in tests.set_index("category").at["objective", "note"]
