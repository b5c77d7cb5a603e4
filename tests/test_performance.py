import math

import numpy as np
import pandas as pd
import pytest

from simcon.performance import gap_correlation, performance_table, similarity_vs_gap, top1_by_model

MODELS = ["a", "b", "c"]
D1 = pd.DataFrame([[1, 0.9, 0.5], [0.9, 1, 0.1], [0.5, 0.1, 1]], index=MODELS, columns=MODELS)


def test_performance_table_averages_seeds():
    records = [
        {"model": "a", "dataset": "d", "seed": s, "top1": t, "top5": None, "balanced_accuracy": t}
        for s, t in enumerate([0.5, 0.7])
    ]
    row = performance_table(records).iloc[0]
    assert row["top1"] == pytest.approx(0.6) and row["n_seeds"] == 2
    assert row["top1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert math.isnan(row["top5"])


def test_performance_table_has_one_row_per_dataset_and_model():
    records = [
        {"model": m, "dataset": d, "seed": s, "top1": 0.1 * s, "top5": 0.5, "balanced_accuracy": 0.2}
        for m in ("a", "b")
        for d in ("x", "y")
        for s in (0, 1, 2)
    ]
    table = performance_table(records)
    assert table[["dataset", "model"]].values.tolist() == [["x", "a"], ["x", "b"], ["y", "a"], ["y", "b"]]
    assert table["top1"].tolist() == pytest.approx([0.1] * 4) and set(table["n_seeds"]) == {3}


def test_similarity_vs_gap():
    pairs = similarity_vs_gap(D1, {"a": 0.9, "b": 0.5, "c": 0.8})
    assert pairs[["model_a", "model_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    np.testing.assert_allclose(pairs["similarity"], [0.9, 0.5, 0.1])
    np.testing.assert_allclose(pairs["gap"], [0.4, 0.1, 0.3])
    np.testing.assert_allclose(pairs["better_top1"], [0.9, 0.9, 0.8])
    # similarity (.9, .5, .1), gap (.4, .1, .3): centred (.4, 0, -.4) and (.4/3, -.5/3, .1/3)
    expected = (0.4 * 0.4 / 3 - 0.4 * 0.1 / 3) / (math.sqrt(0.32) * math.sqrt((0.16 + 0.25 + 0.01) / 9))
    assert gap_correlation(pairs) == pytest.approx(expected, abs=1e-12)


def test_gap_correlation_is_nan_without_variation():
    pairs = similarity_vs_gap(D1, {"a": 0.5, "b": 0.5, "c": 0.5})
    assert math.isnan(gap_correlation(pairs))


def test_top1_table_has_a_row_per_model_and_mean_and_std_in_percent():
    records = [
        {"model": m, "dataset": d, "seed": s, "top1": t, "top5": None, "balanced_accuracy": t}
        for m, d, tops in [
            ("b", "y", [0.5, 0.7]),
            ("b", "x", [0.25, 0.25]),
            ("a", "y", [0.9, 0.9]),
            ("a", "x", [0.1, 0.2]),
        ]
        for s, t in enumerate(tops)
    ]
    wide = top1_by_model(performance_table(records))
    assert list(wide.index) == ["a", "b"] and list(wide.columns) == ["x", "y"]
    assert wide.loc["b", "y"] == "60.0 ± 14.1" and wide.loc["a", "y"] == "90.0 ± 0.0"
    assert wide.loc["a", "x"] == "15.0 ± 7.1"
    single = top1_by_model(performance_table(records[:1]))
    assert single.loc["b", "y"] == "50.0"
