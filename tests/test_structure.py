"""simcon.structure against small hand-computed cases: 3 models, 3 datasets, matrices written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simcon import plots, structure
from simcon.similarity import compute_similarity

MODELS = ["a", "b", "c"]


def matrix(ab: float, ac: float, bc: float, models: list[str] = MODELS) -> pd.DataFrame:
    """A symmetric 3x3 similarity matrix with ones on the diagonal."""
    return pd.DataFrame([[1.0, ab, ac], [ab, 1.0, bc], [ac, bc, 1.0]], index=models, columns=models)


# Pair vectors (ab, ac, bc): d2 = 0.5 * d1 + 0.35 (rho 1 with d1); d3 centred is (0, .4, -.4) against
# d1's (.4, 0, -.4), so rho(d1, d3) = .16 / .32 = 0.5, and rho(d2, d3) = 0.5 too.
MATRICES = {"d1": matrix(0.9, 0.5, 0.1), "d2": matrix(0.8, 0.6, 0.4), "d3": matrix(0.5, 0.9, 0.1)}
OBJECTIVE = {"a": "Sup", "b": "Sup", "c": "SSL"}


def test_pair_similarities_lists_each_unordered_pair_once_per_dataset():
    table = structure.pair_similarities(MATRICES)
    assert table[["model_a", "model_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert table["d3"].tolist() == [0.5, 0.9, 0.1]


def test_mean_and_population_std_across_datasets():
    table = structure.mean_std(MATRICES).set_index(["model_a", "model_b"])
    mean_ab = (0.9 + 0.8 + 0.5) / 3
    std_ab = math.sqrt(((0.9 - mean_ab) ** 2 + (0.8 - mean_ab) ** 2 + (0.5 - mean_ab) ** 2) / 3)
    assert table.loc[("a", "b"), "mean"] == pytest.approx(mean_ab)
    assert table.loc[("a", "b"), "std"] == pytest.approx(std_ab)
    assert table.loc[("b", "c"), "mean"] == pytest.approx(0.2)
    assert table.loc[("b", "c"), "std"] == pytest.approx(math.sqrt((0.01 + 0.04 + 0.01) / 3))
    assert set(table["transform"]) == {"identity"}


def test_arccos_and_tan_transforms_before_mean_and_std():
    two = {"x": matrix(0.5, 0.0, -0.5), "y": matrix(1.0, 0.0, 0.5)}
    table = structure.mean_std(two, ["arccos", "tan"]).set_index(["transform", "model_a", "model_b"])
    # arccos(0.5) = pi/3, arccos(1) = 0: mean pi/6, population std pi/6; arccos(0) = pi/2 on both.
    assert table.loc[("arccos", "a", "b"), "mean"] == pytest.approx(math.pi / 6)
    assert table.loc[("arccos", "a", "b"), "std"] == pytest.approx(math.pi / 6)
    assert table.loc[("arccos", "a", "c"), ["mean", "std"]].tolist() == pytest.approx([math.pi / 2, 0.0])
    # arccos(-0.5) = 2pi/3 and arccos(0.5) = pi/3: mean pi/2, std pi/6.
    assert table.loc[("arccos", "b", "c"), ["mean", "std"]].tolist() == pytest.approx([math.pi / 2, math.pi / 6])
    assert table.loc[("tan", "a", "b"), "mean"] == pytest.approx((math.tan(0.5) + math.tan(1.0)) / 2)
    assert table.loc[("tan", "a", "c"), ["mean", "std"]].tolist() == pytest.approx([0.0, 0.0])


def test_arccos_clips_unbiased_values_just_above_one():
    table = structure.mean_std({"x": matrix(1.0 + 1e-9, 0.0, 0.0)}, ["arccos"])
    assert table.loc[0, "mean"] == 0.0


def test_dataset_consistency_and_headline():
    rho = structure.dataset_consistency(MATRICES).set_index(["dataset_a", "dataset_b"])["rho"]
    assert rho.to_dict() == pytest.approx({("d1", "d2"): 1.0, ("d1", "d3"): 0.5, ("d2", "d3"): 0.5})
    headline = structure.headline({"m": MATRICES, "reversed": {"d1": MATRICES["d1"], "d3": MATRICES["d3"]}})
    row = headline.set_index("metric").loc["m"]
    # rho = (1, .5, .5): mean 2/3; deviations (1/3, -1/6, -1/6), sample variance (1/6) / 2 = 1/12.
    assert row["mean_rho"] == pytest.approx(2 / 3)
    assert row["std_rho"] == pytest.approx(math.sqrt(1 / 12))
    assert (row["n_models"], row["n_datasets"], row["n_dataset_pairs"]) == (3, 3, 3)
    one_pair = headline.set_index("metric").loc["reversed"]
    assert one_pair["mean_rho"] == pytest.approx(0.5) and np.isnan(one_pair["std_rho"])


def test_metric_means_r_and_missing_metrics():
    means = {
        "cka_linear_unbiased": matrix(0.9, 0.5, 0.1),
        "affine": matrix(2 * 0.9 + 0.1, 2 * 0.5 + 0.1, 2 * 0.1 + 0.1),  # r = 1
        "other": matrix(0.5, 0.9, 0.1),  # r = 0.5, as rho(d1, d3) above
    }
    pairs, correlations = structure.metric_means(means, "cka_linear_unbiased", structure.PAPER_METRICS)
    assert pairs.columns.tolist() == ["model_a", "model_b", "cka_linear_unbiased", "affine", "other"]
    table = correlations.set_index("metric")
    assert table.loc["affine", "r"] == pytest.approx(1.0)
    assert table.loc["other", "r"] == pytest.approx(0.5)
    for metric in structure.PAPER_METRICS:
        assert table.loc[metric, "note"] == "not configured" and np.isnan(table.loc[metric, "r"])
    with pytest.raises(ValueError, match="reference metric 'rsa'"):
        structure.metric_means(means, "rsa")


def test_dataset_pair_scatter_table_and_r():
    points, correlations = structure.dataset_pair_scatter(MATRICES, [("d1", "d3")], OBJECTIVE)
    assert points[["model_a", "model_b", "similarity_a", "similarity_b", "group"]].values.tolist() == [
        ["a", "b", 0.9, 0.5, "Sup"],
        ["a", "c", 0.5, 0.9, "between objectives"],
        ["b", "c", 0.1, 0.1, "between objectives"],
    ]
    # All pairs: r 0.5 (as rho(d1, d3)); Sup has the one pair a-b and SSL none: no r (fewer than 3 pairs).
    assert correlations[["dataset_a", "dataset_b", "group", "n_pairs"]].values.tolist() == [
        ["d1", "d3", "All", 3],
        ["d1", "d3", "SSL", 0],
        ["d1", "d3", "Sup", 1],
    ]
    assert correlations.loc[0, "r"] == pytest.approx(0.5) and correlations.loc[1:, "r"].isna().all()
    with pytest.raises(ValueError, match="'d9'"):
        structure.dataset_pair_scatter(MATRICES, [("d1", "d9")], OBJECTIVE)
    with pytest.raises(ValueError, match=r"no objective for model\(s\) \['c'\]"):
        structure.dataset_pair_scatter(MATRICES, [("d1", "d2")], {"a": "Sup", "b": "Sup"})


def test_dataset_pair_scatter_r_within_each_objective_against_numpy():
    rng = np.random.default_rng(5)
    models = [f"m{i}" for i in range(9)]
    objective = dict(zip(models, ["Sup"] * 4 + ["SSL"] * 3 + ["Img-Txt"] * 2))
    matrices = {}
    for dataset in ("p", "q", "s"):
        values = rng.uniform(0, 1, size=(9, 9))
        values = (values + values.T) / 2
        np.fill_diagonal(values, 1.0)
        matrices[dataset] = pd.DataFrame(values, index=models, columns=models)
    points, correlations = structure.dataset_pair_scatter(matrices, [("p", "q"), ("s", "p")], objective)
    table = correlations.set_index(["dataset_a", "dataset_b", "group"])
    for a, b in [("p", "q"), ("s", "p")]:
        x, y = matrices[a].to_numpy(), matrices[b].to_numpy()
        upper = np.triu_indices(9, k=1)
        assert table.loc[(a, b, "All"), "n_pairs"] == 36
        assert table.loc[(a, b, "All"), "r"] == pytest.approx(np.corrcoef(x[upper], y[upper])[0, 1], abs=1e-12)
        for name, members in (("Sup", range(4)), ("SSL", range(4, 7))):
            within = np.array([(i, j) for i in members for j in members if i < j]).T
            expected = np.corrcoef(x[within[0], within[1]], y[within[0], within[1]])[0, 1]
            assert table.loc[(a, b, name), "n_pairs"] == within.shape[1]
            assert table.loc[(a, b, name), "r"] == pytest.approx(expected, abs=1e-12)
        assert table.loc[(a, b, "Img-Txt"), "n_pairs"] == 1 and np.isnan(table.loc[(a, b, "Img-Txt"), "r"])
    assert correlations["group"].tolist()[:4] == ["All", "Img-Txt", "SSL", "Sup"]
    figure = plots.dataset_pair_scatter(points, correlations, "m")
    legend = [text.get_text() for text in figure.axes[2].get_legend().get_texts()]  # bottom row, p vs q
    sup_r = table.loc[("p", "q", "Sup"), "r"]
    assert f"within Sup: r = {sup_r:.2f}" in legend and "within Img-Txt: r = n/a" in legend
    plots.plt.close(figure)


def test_one_dataset_gives_no_pair_and_a_figure_that_says_so():
    one = {"d1": MATRICES["d1"]}
    rho = structure.dataset_consistency(one)
    assert rho.empty and structure.choose_dataset_pairs(rho) == []
    points, correlations = structure.dataset_pair_scatter(one, [], OBJECTIVE)
    assert points.empty and correlations.empty
    figure = plots.dataset_pair_scatter(points, correlations, "m")
    assert "no dataset pair" in figure.axes[0].texts[0].get_text()
    plots.plt.close(figure)


def test_chosen_dataset_pairs_are_most_median_and_least_consistent():
    rho = pd.DataFrame(
        {
            "dataset_a": ["p", "p", "p", "q", "q", "r"],
            "dataset_b": ["q", "r", "s", "r", "s", "s"],
            "n_pairs": 3,
            "rho": [0.2, 0.9, 0.5, 0.1, 0.7, 0.4],
        }
    )
    # Sorted: p-r .9, q-s .7, p-s .5, r-s .4, p-q .2, q-r .1: positions 0, (6 - 1) // 2 = 2 and 5.
    assert structure.choose_dataset_pairs(rho) == [("p", "r"), ("p", "s"), ("q", "r")]
    assert structure.choose_dataset_pairs(rho.iloc[:1]) == [("p", "q")]


def test_tsne_separates_two_blocks_and_lowers_perplexity_for_few_models():
    models = [f"m{i}" for i in range(12)]
    first = np.arange(12) < 6
    block = np.where(np.equal.outer(first, first), 0.95, 0.05)
    np.fill_diagonal(block, 1.0)
    embedding = structure.tsne_embedding({"d": pd.DataFrame(block, index=models, columns=models)})
    xy = embedding[["x", "y"]].to_numpy()
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    within = max(distance[:6, :6].max(), distance[6:, 6:].max())
    assert distance[:6, 6:].min() > within
    assert embedding["perplexity"].unique().tolist() == [5.0]
    assert structure.tsne_perplexity(3) == 2.0
    with pytest.raises(ValueError, match="at least 2 models"):
        structure.tsne_perplexity(1)


def test_matrices_with_other_models_are_named():
    with pytest.raises(ValueError, match="'d2'"):
        structure.pair_similarities({"d1": matrix(0.1, 0.2, 0.3), "d2": matrix(0.1, 0.2, 0.3, ["a", "c", "b"])})


def test_sample_size_differences_between_consecutive_k():
    rows = [
        ("m", 5, "a", "b", 0.5),
        ("m", 1, "a", "b", 0.2),
        ("m", 10, "a", "b", 0.45),
        ("m", 1, "a", "c", 0.0),
        ("m", 5, "a", "c", 0.1),
        ("m", 10, "a", "c", 0.1),
    ]
    table = pd.DataFrame(rows, columns=["metric", "samples_per_class", "model_a", "model_b", "similarity"])
    differences = structure.sample_size_differences(table).set_index(["k_from", "k_to", "model_a", "model_b"])
    assert differences["abs_difference"].to_dict() == pytest.approx(
        {(1, 5, "a", "b"): 0.3, (5, 10, "a", "b"): 0.05, (1, 5, "a", "c"): 0.1, (5, 10, "a", "c"): 0.0}
    )


def test_per_class_subsets_are_stratified_and_nested_on_request():
    labels = np.repeat([0, 1, 2], [50, 30, 40])
    small, large = structure.per_class_subset(labels, 2, seed=7), structure.per_class_subset(labels, 20, seed=7)
    assert np.bincount(labels[small]).tolist() == [2, 2, 2] and np.bincount(labels[large]).tolist() == [20, 20, 20]
    assert not set(small) <= set(large)  # each size drawn alone (the paper's code), not nested
    nested = [structure.per_class_subset(labels, k, seed=7, nested=True) for k in (2, 20)]
    assert set(nested[0]) <= set(nested[1])
    with pytest.raises(ValueError, match="class 1 has 30"):
        structure.per_class_subset(labels, 31, seed=7)


def test_similarity_by_sample_size_at_full_size_equals_the_full_similarity():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 6)
    features = {name: rng.normal(size=(12, 5)) for name in MODELS}
    table, skipped = structure.similarity_by_sample_size(features, labels, [2, 6, 9], ["cka_linear_unbiased"], seed=0)
    assert skipped == [9]
    assert sorted(table["samples_per_class"].unique()) == [2, 6]
    _, too_few = structure.similarity_by_sample_size(features, labels, [1, 2], ["cka_linear_unbiased"], seed=0)
    assert too_few == [1]  # 2 samples: unbiased CKA needs 4
    full = compute_similarity(features, "cka_linear_unbiased").matrix
    at_six = table[table["samples_per_class"] == 6].set_index(["model_a", "model_b"])["similarity"]
    assert at_six[("a", "c")] == pytest.approx(full.loc["a", "c"], abs=1e-9)


def test_similarity_matrices_data_holds_clustered_panels_with_mean_and_std():
    metadata = pd.DataFrame(
        {"objective": ["Sup", "Sup", "SSL"], "architecture_class": "CNN", "data_class": "IN1k", "size_class": "small"},
        index=MODELS,
    )
    figure, data = plots.similarity_matrices(MATRICES, "m", metadata)
    plots.plt.close(figure)
    assert list(dict.fromkeys(data["panel"])) == ["d1", "d2", "d3", "mean over datasets", "std over datasets"]
    value = data.set_index(["panel", "model_a", "model_b"])["value"]
    assert value[("mean over datasets", "b", "c")] == pytest.approx(0.2)
    assert value[("std over datasets", "c", "b")] == pytest.approx(math.sqrt(0.02))
    # Mean matrix: ab .733, ac .667, bc .2; average linkage joins a and b first, so they sit side by side.
    order = list(dict.fromkeys(data["model_a"]))
    assert abs(order.index("a") - order.index("b")) == 1


@pytest.mark.workflow
def test_unknown_dataset_in_structure_config_stops_before_any_job(tmp_path):
    from conftest import TINY, snakemake

    config = {**TINY, "structure": {"dataset_pairs": [["shapes", "flowers"]]}}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "structure.dataset_pairs names dataset(s) ['flowers']" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
