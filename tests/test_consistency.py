import numpy as np
import pandas as pd
import pytest

from conftest import FIVE, METADATA, R12, five_matrices
from simcon.consistency import (
    category_counts,
    consistency,
    dataset_matrices,
    metric_agreement,
    model_pairs,
    model_sets,
    read_consistency,
    sort_by_category,
    summarise,
)

MODELS = ["a", "b", "c"]


def _matrix(ab: float, ac: float, bc: float) -> pd.DataFrame:
    values = np.array([[1, ab, ac], [ab, 1, bc], [ac, bc, 1]], dtype=float)
    return pd.DataFrame(values, index=MODELS, columns=MODELS)


MATRICES = {"d1": _matrix(0.9, 0.5, 0.1), "d2": _matrix(0.8, 0.6, 0.2), "d3": _matrix(0.1, 0.5, 0.9)}


def rho_of(table: pd.DataFrame, category: str, set_a: str, set_b: str) -> dict[tuple[str, str], float]:
    rows = table[(table["category"] == category) & (table["set_a"] == set_a) & (table["set_b"] == set_b)]
    return dict(zip(zip(rows["dataset_a"], rows["dataset_b"]), rows["rho"]))


def test_model_pairs_are_unordered_unique_and_in_matrix_order():
    order = ["a", "b", "c", "d"]
    assert model_pairs(order, ["b", "a"], ["c", "b"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert model_pairs(order, ["d"], ["a", "d"]) == [("a", "d")]


def test_consistency_matches_hand_computed_pearson():
    table = consistency(MATRICES, {"all": {"All": MODELS}})
    rho = rho_of(table, "all", "All", "All")
    assert rho[("d1", "d2")] == pytest.approx(R12, abs=1e-12)
    assert rho[("d1", "d3")] == pytest.approx(-1.0, abs=1e-12)
    assert rho[("d2", "d3")] == pytest.approx(-R12, abs=1e-12)  # d3 = 1 - d1
    assert len(table) == 3 and set(table["n_pairs"]) == {3}


def test_consistency_rows_of_every_set_pair_by_hand():
    table = consistency(five_matrices(), model_sets(METADATA, anchors=["d"]))
    # (Sup, Sup): pairs ab, ac, bc carry the vectors of MATRICES
    assert rho_of(table, "objective", "Sup", "Sup") == pytest.approx(
        {("d1", "d2"): R12, ("d1", "d3"): -1, ("d2", "d3"): -R12}
    )
    # (SSL, Sup): ad, ae, bd, be, cd, ce = (.1 .. .6) on d1, twice that on d2, .7 minus it on d3
    assert rho_of(table, "objective", "SSL", "Sup") == pytest.approx(
        {("d1", "d2"): 1, ("d1", "d3"): -1, ("d2", "d3"): -1}
    )
    # (SSL, SSL) has the single pair de: no value; anchor d against Sup: ad, bd, cd = (.1, .3, .5), x2, (.6, .4, .2)
    assert rho_of(table, "objective", "SSL", "SSL") == {}
    assert rho_of(table, "anchor", "d", "Sup") == pytest.approx({("d1", "d2"): 1, ("d1", "d3"): -1, ("d2", "d3"): -1})
    assert rho_of(table, "anchor", "d", "SSL") == {}
    upper = np.triu_indices(5, k=1)
    vectors = {d: m.to_numpy()[upper] for d, m in five_matrices().items()}
    expected = np.corrcoef(vectors["d1"], vectors["d3"])[0, 1]
    assert rho_of(table, "all", "All", "All")[("d1", "d3")] == pytest.approx(expected, abs=1e-12)
    summary = summarise(table).set_index(["category", "set_a", "set_b"])
    assert summary.loc[("objective", "Sup", "Sup"), "median"] == pytest.approx(-R12)
    assert summary.loc[("objective", "SSL", "Sup"), "n_dataset_pairs"] == 3


def test_sets_with_fewer_than_three_pairs_give_no_value():
    sets = {"objective": {"Sup": ["a", "b"], "SSL": ["c"]}}
    table = consistency(MATRICES, sets)
    # (Sup, Sup) has 1 pair, (Sup, SSL) 2 pairs, (SSL, SSL) none: nothing to correlate
    assert table.empty


def test_a_constant_similarity_vector_gives_no_value():
    matrices = dict(MATRICES, d2=_matrix(0.5, 0.5, 0.5))
    table = consistency(matrices, {"all": {"All": MODELS}})
    assert sorted(zip(table["dataset_a"], table["dataset_b"])) == [("d1", "d3")]


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
    with pytest.raises(ValueError, match=r"anchors \['z'\]"):
        model_sets(metadata, anchors=["z"])


def test_category_counts_of_hand_made_metadata_in_table_1_order():
    metadata = pd.DataFrame(
        {
            "objective": ["Sup", "SSL", "Img-Txt", "Sup", "Untrained", "Sup"],
            "architecture_class": ["TX", "CNN", "TX", "TX", "CNN", "TX"],
            "data_class": ["IN21k", "IN1k", "XLarge", "IN1k", "None", "IN1k"],
            "size_class": ["xlarge", "small", "medium", "small", "small", "large"],
            "architecture": ["ViT", "ResNet", "ViT", "ViT", "ResNet", "ViT"],  # not a category: not counted
        },
        index=[f"m{i}" for i in range(6)],
    )
    table = category_counts(metadata)
    assert table.columns.tolist() == ["category", "title", "set", "n_models"]
    assert table[["category", "set", "n_models"]].values.tolist() == [
        ["objective", "Img-Txt", 1],
        ["objective", "SSL", 1],
        ["objective", "Sup", 3],
        ["objective", "Untrained", 1],
        ["architecture", "CNN", 2],
        ["architecture", "TX", 4],
        ["data", "IN1k", 3],
        ["data", "IN21k", 1],
        ["data", "None", 1],
        ["data", "XLarge", 1],
        ["size", "small", 3],
        ["size", "medium", 1],
        ["size", "large", 1],
        ["size", "xlarge", 1],  # size order
    ]
    assert table.drop_duplicates("category")["title"].tolist() == [
        "Training objective",
        "Architecture",
        "Training data",
        "Model size",
    ]
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['size_class'\]"):
        category_counts(metadata.drop(columns="size_class"))


# The paper's Table 1: the category counts of the code's 64 models, which config/paper.yaml holds.
TABLE_1 = {
    "objective": {"Img-Txt": 14, "SSL": 20, "Sup": 30},
    "architecture": {"CNN": 24, "TX": 40},
    "data": {"IN1k": 37, "IN21k": 9, "Large": 11, "XLarge": 7},
    "size": {"small": 32, "medium": 14, "large": 8, "xlarge": 10},
}


def test_category_counts_of_the_paper_config():
    import yaml

    from conftest import REPO
    from simcon.config import size_class

    models = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["models"]
    metadata = pd.DataFrame.from_dict(
        {
            m: {"size_class": size_class(spec["metadata"]["parameters"])} | spec["metadata"]
            for m, spec in models.items()
        },
        orient="index",
    )
    table = category_counts(metadata)
    counts = {
        category: dict(zip(rows["set"], rows["n_models"])) for category, rows in table.groupby("category", sort=False)
    }
    assert counts == TABLE_1
    assert list(counts) == ["objective", "architecture", "data", "size"]
    assert list(counts["size"]) == ["small", "medium", "large", "xlarge"]


def test_summary_statistics():
    table = consistency(MATRICES, {"all": {"All": MODELS}})
    row = summarise(table).iloc[0]
    assert row["n_dataset_pairs"] == 3
    assert row["median"] == pytest.approx(-R12)
    assert row["mean"] == pytest.approx(-1 / 3)


def test_matrices_with_other_models_are_rejected():
    other = _matrix(0.1, 0.2, 0.3).rename(index={"c": "z"}, columns={"c": "z"})
    with pytest.raises(ValueError, match="dataset 'd2'"):
        consistency({"d1": MATRICES["d1"], "d2": other}, {"all": {"All": MODELS}})


def test_dataset_matrices_hold_rho_of_each_dataset_pair_and_name_missing_set_pairs():
    table = consistency(five_matrices(), model_sets(METADATA))
    wanted = [
        {"category": "all", "set_a": "All", "set_b": "All"},
        {"category": "objective", "set_a": "Sup", "set_b": "SSL"},  # stored as (SSL, Sup)
        {"category": "objective", "set_a": "Sup", "set_b": "Sup"},
        {"category": "objective", "set_a": "SSL", "set_b": "SSL"},  # one model pair only
        {"category": "objective", "set_a": "Img-Txt", "set_b": "Sup"},  # no such set
    ]
    order = ["d3", "d1", "d2"]
    matrices, long = dataset_matrices(table, wanted, order)
    assert list(matrices) == ["(All, All)", "(Sup, SSL)", "(Sup, Sup)", "(SSL, SSL)", "(Img-Txt, Sup)"]
    assert matrices["(SSL, SSL)"] is None and matrices["(Img-Txt, Sup)"] is None
    np.testing.assert_allclose(
        matrices["(Sup, SSL)"].loc[order, order], [[1, -1, -1], [-1, 1, 1], [-1, 1, 1]], atol=1e-12
    )
    sup = matrices["(Sup, Sup)"]
    assert list(sup.index) == order and sup.loc["d1", "d2"] == sup.loc["d2", "d1"] == pytest.approx(R12)
    assert sup.loc["d3", "d2"] == pytest.approx(-R12)
    missing = long[long["note"] != ""]
    assert missing[["set_a", "set_b"]].values.tolist() == [["SSL", "SSL"], ["Img-Txt", "Sup"]]
    assert missing["note"].str.contains("fewer than 3 model pairs").all() and missing["rho"].isna().all()
    assert len(long) == 3 * 9 + 2
    row = long[
        (long["set_a"] == "Sup") & (long["set_b"] == "Sup") & (long["dataset_a"] == "d2") & (long["dataset_b"] == "d3")
    ]
    assert row["rho"].item() == pytest.approx(-R12)


def test_datasets_sorted_by_category_keep_their_order_within_one():
    categories = {
        "a": "structured",
        "b": "natural_multi_domain",
        "c": "specialized",
        "d": "natural_multi_domain",
        "e": "other",
    }
    assert sort_by_category(list("abcde"), categories) == ["b", "d", "c", "a", "e"]


def test_metric_agreement_pairs_the_same_set_pair_and_dataset_pair_within_categories():
    sets = {"all": {"All": MODELS}, "objective": {"Sup": MODELS}}
    linear = consistency(MATRICES, sets)
    flipped = {d: 1 - m for d, m in MATRICES.items()}  # every rho unchanged
    other = consistency(flipped, sets)
    other = pd.concat([other[other["category"] == "all"], other[other["category"] == "objective"].iloc[:2]])
    joined = metric_agreement({"linear": linear, "rbf": other}, "linear")
    assert joined["metric"].unique().tolist() == ["rbf"] and len(joined) == 3
    assert set(joined["category"]) == {"objective"}  # the authors' App. E: no (All, All), no anchors
    np.testing.assert_allclose(joined["rho"].iloc[:2], joined["rho_reference"].iloc[:2], atol=1e-12)
    assert np.isnan(joined["rho"].iloc[2])
    assert metric_agreement({"linear": linear}, "linear").empty


def test_set_named_none_survives_a_csv_round_trip(tmp_path):
    table = pd.DataFrame({"category": ["data"], "set_a": ["None"], "set_b": ["None"], "rho": [0.5]})
    table.to_csv(tmp_path / "t.csv", index=False)
    assert read_consistency(tmp_path / "t.csv")["set_a"].tolist() == ["None"]


ANALYSES = [
    "consistency",
    "consistency_anchors",
    "consistency_matrices",
    "consistency_bootstrap",
    "permutation_test",
    "consistency_metrics",
    "similarity_vs_performance",
]
FIGURES = [
    "consistency_by_category",
    "consistency_anchors",
    "consistency_matrices",
    "consistency_bootstrap",
    "permutation_test",
    "similarity_vs_gap",
    "gap_correlations_by_category",
]


@pytest.mark.slow
@pytest.mark.workflow
def test_analysis_rules_on_hand_written_similarities(tmp_path):
    """The analysis rules alone (--allowed-rules) on the five-model case's matrices: tables, figures, report."""
    from conftest import snakemake

    metrics = ["cka_linear_unbiased", "rsa_correlation_spearman"]
    domains = {"d1": ("shapes", "structured"), "d2": ("textures", "structured"), "d3": ("cells", "specialized")}
    config = {
        "metrics": metrics,
        "anchors": ["d"],
        "consistency": {"bootstrap": {"resamples": 50}, "permutation": {"permutations": 120}},
        "models": {
            model: {
                "backend": "timm",
                "name": "resnet18",
                "layer": "global_pool",
                "weights": "random",
                "metadata": {
                    "objective": objective,
                    "architecture": "ResNet",
                    "architecture_class": "CNN",
                    "training_data": "IN1k",
                    "data_class": "IN1k",
                    "parameters": 1e7,
                },
            }
            for model, objective in zip(FIVE, METADATA["objective"])
        },
        "datasets": {
            d: {"source": "generated", "domain": domain, "category": category}
            for d, (domain, category) in domains.items()
        },
    }
    for dataset, matrix in five_matrices().items():
        for metric, values in zip(metrics, (matrix, matrix**2)):
            (tmp_path / "results/similarity" / dataset).mkdir(parents=True, exist_ok=True)
            values.to_csv(tmp_path / "results/similarity" / dataset / f"{metric}.csv")
    top1 = dict(zip(FIVE, [0.9, 0.8, 0.5, 0.6, 0.3]))
    performance = pd.DataFrame([{"dataset": d, "model": m, "top1": t} for d in domains for m, t in top1.items()])
    performance.to_csv(tmp_path / "results/performance.csv", index=False)
    targets = [f"results/figures/{metric}/{figure}.png" for metric in metrics for figure in FIGURES]
    everything = [*targets, "results/figures/consistency_metrics.png"]
    result = snakemake(tmp_path, config, "--allowed-rules", *ANALYSES, "--", *everything, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]

    figures = tmp_path / "results/figures/cka_linear_unbiased"
    matrices = read_consistency(figures / "consistency_matrices.csv")
    sup = matrices[(matrices["set_a"] == "Sup") & (matrices["set_b"] == "Sup")].set_index(["dataset_a", "dataset_b"])[
        "rho"
    ]
    assert sup[("d1", "d2")] == pytest.approx(R12) and sup[("d3", "d1")] == pytest.approx(-1)
    assert list(dict.fromkeys(sup.index.get_level_values(0))) == ["d3", "d1", "d2"]  # specialized before structured
    missing = matrices.loc[matrices["note"].notna(), ["set_a", "set_b"]].values.tolist()
    assert missing == [["SSL", "SSL"], ["Img-Txt", "Sup"], ["Sup", "Untrained"]]
    anchors = read_consistency(figures / "consistency_anchors.csv")
    assert anchors.loc[anchors["category"] == "anchor", ["set_a", "set_b"]].drop_duplicates().values.tolist() == [
        ["d", "Sup"]
    ]
    tests = pd.read_csv(tmp_path / "results/consistency/cka_linear_unbiased/permutation_test.csv").set_index("category")
    assert tests.loc["objective", "exact"] and tests.loc["objective", "n_permutations"] == 120
    bootstrap = read_consistency(figures / "consistency_bootstrap.csv")
    assert bootstrap[["category", "set_a", "set_b"]].values.tolist() == [
        ["all", "All", "All"],
        ["objective", "SSL", "Sup"],
        ["objective", "Sup", "Sup"],
        ["architecture", "CNN", "CNN"],
        ["data", "IN1k", "IN1k"],
        ["size", "small", "small"],
        ["anchor", "d", "Sup"],
    ]
    assert bootstrap["n_resamples"].between(30, 50).all()
    agreement = read_consistency(tmp_path / "results/figures/consistency_metrics.csv")
    assert set(agreement["metric"]) == {"rsa_correlation_spearman"} and agreement["rho_reference"].notna().all()
    for target in targets:
        assert (tmp_path / target).stat().st_size > 10_000

    report = tmp_path / "report.html"
    result = snakemake(
        tmp_path, config, "--allowed-rules", *ANALYSES, "--report", str(report), "--", *everything, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]
    html = report.read_text()
    for category in ("4.5 Model categories", "4.6 Dataset categories", "4.7 Similarity and performance", "Appendix"):
        assert category in html
