import math

import numpy as np
import pandas as pd
import pytest

from simcon.consistency import consistency, model_pairs, model_sets, summarise
from simcon.performance import gap_correlation, performance_table, similarity_vs_gap

MODELS = ["a", "b", "c"]


def _matrix(ab: float, ac: float, bc: float) -> pd.DataFrame:
    values = np.array([[1, ab, ac], [ab, 1, bc], [ac, bc, 1]], dtype=float)
    return pd.DataFrame(values, index=MODELS, columns=MODELS)


MATRICES = {"d1": _matrix(0.9, 0.5, 0.1), "d2": _matrix(0.8, 0.6, 0.2), "d3": _matrix(0.1, 0.5, 0.9)}


def test_model_pairs_are_unordered_unique_and_in_matrix_order():
    order = ["a", "b", "c", "d"]
    assert model_pairs(order, ["b", "a"], ["c", "b"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert model_pairs(order, ["d"], ["a", "d"]) == [("a", "d")]


def test_consistency_matches_hand_computed_pearson():
    table = consistency(MATRICES, {"all": {"All": MODELS}})
    rho = table.set_index(["dataset_a", "dataset_b"])["rho"]
    # d1 = (.9, .5, .1), d2 = (.8, .6, .2): centred (.4, 0, -.4) and (.8/3, .2/3, -1/3)
    expected = 0.24 / (math.sqrt(0.32) * math.sqrt(0.64 / 9 + 0.04 / 9 + 1 / 9))
    assert rho[("d1", "d2")] == pytest.approx(expected, abs=1e-12)
    assert rho[("d1", "d3")] == pytest.approx(-1.0, abs=1e-12)
    assert len(table) == 3 and set(table["n_pairs"]) == {3}


def test_sets_with_fewer_than_three_pairs_give_no_value():
    sets = {"objective": {"Sup": ["a", "b"], "SSL": ["c"]}}
    table = consistency(MATRICES, sets)
    # (Sup, Sup) has 1 pair, (Sup, SSL) 2 pairs, (SSL, SSL) none: nothing to correlate
    assert table.empty


def test_model_sets_group_metadata_and_anchors():
    metadata = pd.DataFrame(
        {
            "objective": ["Sup", "SSL", "Sup"],
            "architecture_class": ["CNN", "TX", "TX"],
            "data_class": ["IN1k", "IN1k", "Large"],
            "size_class": ["small", "small", "large"],
        },
        index=MODELS,
    )
    sets = model_sets(metadata, anchors=["b"])
    assert sets["objective"] == {"SSL": ["b"], "Sup": ["a", "c"]}
    assert sets["architecture"] == {"CNN": ["a"], "TX": ["b", "c"]}
    assert sets["all"] == {"All": MODELS}
    assert sets["anchor"] == {"b": ["b"]}


def test_summary_statistics():
    table = consistency(MATRICES, {"all": {"All": MODELS}})
    row = summarise(table).iloc[0]
    assert row["n_dataset_pairs"] == 3
    assert row["median"] == pytest.approx(np.median(table["rho"]))
    assert row["mean"] == pytest.approx(table["rho"].mean())


def test_matrices_with_other_models_are_rejected():
    other = _matrix(0.1, 0.2, 0.3).rename(index={"c": "z"}, columns={"c": "z"})
    with pytest.raises(ValueError, match="dataset 'd2'"):
        consistency({"d1": MATRICES["d1"], "d2": other}, {"all": {"All": MODELS}})


def test_performance_table_averages_seeds():
    records = [
        {"model": "a", "dataset": "d", "seed": s, "top1": t, "top5": None, "balanced_accuracy": t}
        for s, t in enumerate([0.5, 0.7])
    ]
    row = performance_table(records).iloc[0]
    assert row["top1"] == pytest.approx(0.6) and row["n_seeds"] == 2
    assert row["top1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert math.isnan(row["top5"])


def test_similarity_vs_gap():
    pairs = similarity_vs_gap(MATRICES["d1"], {"a": 0.9, "b": 0.5, "c": 0.8})
    assert pairs[["model_a", "model_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    np.testing.assert_allclose(pairs["similarity"], [0.9, 0.5, 0.1])
    np.testing.assert_allclose(pairs["gap"], [0.4, 0.1, 0.3])
    np.testing.assert_allclose(pairs["better_top1"], [0.9, 0.9, 0.8])
    assert gap_correlation(pairs) == pytest.approx(np.corrcoef([0.9, 0.5, 0.1], [0.4, 0.1, 0.3])[0, 1])
