"""Similarity over every (model, layer) and the layer analyses: the long table against compute_similarity, the pair
cache when a layer is added, grids, best-matching layer pairs and consistency by depth with known answers."""

from __future__ import annotations

import copy
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from conftest import FIVE, METADATA, TINY, five_matrices, job_counts, snakemake
from simcon import plots
from simcon.config import ConfigError, layer_grid_pairs
from simcon.consistency import consistency, model_sets, summarise
from simcon.formats import LAYER_TABLE_COLUMNS, ResultError, read_layer_folder, read_layer_table, write_layer_index
from simcon.layers import (
    best_layer_pairs,
    consistency_by_depth,
    depth_bins,
    grid_table,
    layer_grid,
    layer_matrix,
    layer_similarity,
    nearest_layers,
    representations_of,
    summarise_by_depth,
)
from simcon.similarity import compute_similarity

N = 40


def write_layer_folder(folder: Path, model: str, layers: dict[str, tuple[float, np.ndarray]]) -> Path:
    """A layer folder as the layer_features rule writes it: layers maps name to (relative depth, features)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (name, (depth, features)) in enumerate(layers.items()):
        np.save(folder / f"{index:02d}.npy", features.astype(np.float32))
        entries.append({"name": name, "file": f"{index:02d}.npy", "relative_depth": depth, "d": features.shape[1]})
    info = {"model": model, "dataset": "toy", "representation_layer": entries[-1]["name"], "token_pooling": "cls"}
    write_layer_index(folder, {**info, "n": N, "layers": entries})
    return folder


def random_layers(seed: int, depths: list[float], width: int = 6) -> dict[str, tuple[float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"block{i}": (depth, rng.normal(size=(N, width))) for i, depth in enumerate(depths)}


def toy_folders(root: Path) -> list[Path]:
    return [
        write_layer_folder(root / "A", "A", random_layers(0, [1 / 3, 2 / 3, 1.0])),
        write_layer_folder(root / "B", "B", random_layers(1, [0.5, 1.0], width=4)),
    ]


def read_all(folders: list[Path]):
    return [r for folder in folders for r in read_layer_folder(folder, N)]


@pytest.mark.parametrize("metric", ["cka_linear_unbiased", "rsa_correlation_spearman", "mutual_knn10", "procrustes"])
def test_long_table_is_compute_similarity_of_the_same_arrays(tmp_path, metric):
    representations = read_all(toy_folders(tmp_path))
    table, computed = layer_similarity(representations, metric)
    features = {f"{r.model}/{r.layer}": np.load(r.path) for r in representations}
    expected = compute_similarity(features, metric).matrix
    assert list(table.columns) == LAYER_TABLE_COLUMNS
    assert computed == len(table) == 5 * 4 // 2  # every pair of the 5 representations, within-model pairs too
    for row in table.itertuples():
        value = expected.loc[f"{row.model_a}/{row.layer_a}", f"{row.model_b}/{row.layer_b}"]
        assert row.similarity == pytest.approx(value, abs=1e-12)
    assert set(zip(table["model_a"], table["model_b"])) == {("A", "A"), ("A", "B"), ("B", "B")}
    assert table.loc[(table["layer_a"] == "block2") & (table["model_b"] == "B"), "depth_a"].eq(1.0).all()


def test_adding_a_layer_computes_only_its_pairs(tmp_path):
    folders = toy_folders(tmp_path / "layers")
    cache = tmp_path / "cache"
    first, computed = layer_similarity(read_all(folders), "cka_linear_unbiased", cache_dir=cache, context_key="s")
    assert computed == 10
    assert layer_similarity(read_all(folders), "cka_linear_unbiased", cache_dir=cache, context_key="s")[1] == 0
    layers = random_layers(1, [0.5, 1.0], width=4)
    layers = {"block0": layers["block0"], "extra": (0.75, np.random.default_rng(9).normal(size=(N, 3))), **layers}
    write_layer_folder(folders[1], "B", {name: layers[name] for name in ("block0", "extra", "block1")})
    table, computed = layer_similarity(read_all(folders), "cka_linear_unbiased", cache_dir=cache, context_key="s")
    assert computed == 5  # the new layer against the 5 representations there were, nothing else
    assert len(table) == 6 * 5 // 2
    kept = table[(table["layer_a"] != "extra") & (table["layer_b"] != "extra")].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first)


def test_bad_layer_folders_name_the_file_and_the_command_that_remakes_the_folder(tmp_path):
    no_representation = write_layer_folder(tmp_path / "A", "A", random_layers(0, [0.5, 0.9]))
    with pytest.raises(ResultError, match=r"A/layers.json: relative depths .* end with the representation layer"):
        read_layer_folder(no_representation)
    unordered = write_layer_folder(tmp_path / "B", "B", random_layers(0, [0.6, 0.3, 1.0]))
    with pytest.raises(ResultError, match="must increase"):
        read_layer_folder(unordered)
    good = write_layer_folder(tmp_path / "C", "C", random_layers(0, [0.5, 1.0]))
    with pytest.raises(
        ResultError,
        match=r"C/00.npy: layer 'block0' has shape \(40, 6\), expected \(30, 6\). Regenerate .*--forcerun \S*C$",
    ):
        read_layer_folder(good, 30)
    (good / "01.npy").unlink()
    with pytest.raises(ResultError, match=r"C/01.npy: missing \(listed in \S*C/layers.json\)"):
        read_layer_folder(good)


def hand_table(representations: list[tuple[str, str, float]], similarity) -> pd.DataFrame:
    """A long table of the representations (model, layer, depth) in order, similarity(rep_a, rep_b) per pair."""
    rows = [(*a, *b, similarity(a, b)) for a, b in combinations(representations, 2)]
    return pd.DataFrame(rows, columns=LAYER_TABLE_COLUMNS)


def test_grids_read_both_orientations_of_the_long_table(tmp_path):
    representations = [("A", "a0", 0.5), ("A", "a1", 1.0), ("B", "b0", 0.2), ("B", "b1", 0.6), ("B", "b2", 1.0)]
    value = {r[:2]: k for k, r in enumerate(representations)}
    table = hand_table(representations, lambda a, b: value[a[:2]] * 10 + value[b[:2]])
    matrix = layer_matrix(table)
    grid = layer_grid(matrix, "A", "B")
    assert list(grid.index) == ["a0", "a1"] and list(grid.columns) == ["b0", "b1", "b2"]
    np.testing.assert_array_equal(grid.to_numpy(), [[2, 3, 4], [12, 13, 14]])
    np.testing.assert_array_equal(layer_grid(matrix, "B", "A").to_numpy(), grid.to_numpy().T)
    np.testing.assert_array_equal(layer_grid(matrix, "A", "A").to_numpy(), [[1, 1], [1, 1]])  # diagonal 1, a0-a1 = 1
    cells = grid_table({"toy": table}, [("B", "A")])
    assert len(cells) == 6 and set(cells["dataset"]) == {"toy"}
    row = cells[(cells["layer_a"] == "b1") & (cells["layer_b"] == "a0")].iloc[0]
    assert (row["similarity"], row["depth_a"], row["depth_b"]) == (3, 0.6, 0.5)  # stored as (a0, b1)
    plots.save_png(plots.layer_grids(cells, "toy"), str(tmp_path / "grids.png"))
    assert (tmp_path / "grids.png").stat().st_size > 0


def test_a_one_panel_grid_keeps_its_title_inside_the_figure():
    """A grid of one model pair is narrower than its title: the title wraps instead of running off both edges."""
    representations = [("resnet18_random", f"layer{i}", i / 4) for i in range(1, 5)]
    cells = grid_table({"shapes": hand_table(representations, lambda a, b: a[2] * b[2])}, [("resnet18_random",) * 2])
    figure = plots.layer_grids(cells, "a_long_dataset_name, cka_rbf0.4_unbiased")
    figure.canvas.draw()
    title, edges = figure._suptitle.get_window_extent(), figure.bbox
    assert edges.x0 <= title.x0 and title.x1 <= edges.x1 and title.y1 <= edges.y1


def test_best_layer_pair_is_the_planted_one(tmp_path):
    rng = np.random.default_rng(3)
    shared = rng.normal(size=(N, 5))
    rotated = shared @ ortho_group.rvs(5, random_state=4)  # linear CKA 1 with `shared`: the planted best pair
    a = {"a0": (0.25, rng.normal(size=(N, 5))), "a1": (0.5, shared), "a2": (1.0, rng.normal(size=(N, 5)))}
    b = {"b0": (0.5, rotated), "b1": (1.0, rng.normal(size=(N, 5)))}
    folders = [write_layer_folder(tmp_path / "A", "A", a), write_layer_folder(tmp_path / "B", "B", b)]
    table, _ = layer_similarity(read_all(folders), "cka_linear_biased")
    best = best_layer_pairs(table)
    assert len(best) == 1  # one pair of distinct models; within-model pairs are left out
    row = best.iloc[0]
    assert (row["model_a"], row["layer_a"], row["depth_a"], row["layer_b"], row["depth_b"]) == (
        "A",
        "a1",
        0.5,
        "b0",
        0.5,
    )
    assert row["similarity"] == pytest.approx(1.0, abs=1e-6)
    final = table[(table["layer_a"] == "a2") & (table["layer_b"] == "b1")]["similarity"].item()
    assert row["representation_similarity"] == final < 0.9
    figure_table = best.assign(dataset="toy", objective_a="SSL", objective_b="Sup")
    plots.save_png(plots.best_layer_depths(figure_table, "cka_linear_biased"), str(tmp_path / "best.png"))


def test_depth_bins_pick_the_layer_nearest_each_centre():
    bins = depth_bins(5)
    np.testing.assert_allclose(bins["centre"], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert bins["high"].iloc[-1] == 1.0 and bins["low"].iloc[0] == 0.0
    layers = pd.DataFrame(
        [("m", f"l{k}", depth) for k, depth in enumerate([0.25, 0.5, 0.75, 1.0])]
        + [("v", "blocks.0", 0.45), ("v", "norm", 1.0)],
        columns=["model", "layer", "depth"],
    )
    chosen = nearest_layers(layers, bins)
    assert chosen[chosen["model"] == "m"]["depth"].tolist() == [0.25, 0.25, 0.5, 0.75, 1.0]
    assert chosen[chosen["model"] == "v"]["layer"].tolist() == ["blocks.0"] * 4 + ["norm"]
    with pytest.raises(ValueError, match="at least 1"):
        depth_bins(0)


def five_layer_tables() -> dict[str, pd.DataFrame]:
    """Models a..e with layers 'early' (depth 0.3) and 'out' (1): at 'out' the five-model similarities of
    conftest, at 'early' their negatives, between layers of different depth 0.5."""
    matrices = five_matrices()
    representations = [(model, layer, depth) for model in FIVE for layer, depth in (("early", 0.3), ("out", 1.0))]
    tables = {}
    for dataset, matrix in matrices.items():

        def similarity(a, b, matrix=matrix):
            if a[0] == b[0] or a[1] != b[1]:
                return 0.5
            return matrix.loc[a[0], b[0]] * (1 if a[1] == "out" else -1)

        tables[dataset] = hand_table(representations, similarity)
    return tables


def test_consistency_by_depth_is_the_papers_consistency_of_each_bins_layers():
    tables = five_layer_tables()
    sets = model_sets(METADATA)
    table, chosen = consistency_by_depth(tables, sets, depth_bins(2))
    assert chosen.groupby("bin")["layer"].unique().map(list).to_dict() == {0: ["early"], 1: ["out"]}
    late = consistency(five_matrices(), sets)
    early = consistency({d: -m for d, m in five_matrices().items()}, sets)
    for b, expected in ((0, early), (1, late)):
        rows = table[table["bin"] == b].drop(columns=["bin", "low", "high", "centre"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected)
    summary = summarise_by_depth(table)
    pd.testing.assert_frame_equal(
        summary[summary["bin"] == 1].drop(columns=["bin", "low", "high", "centre"]).reset_index(drop=True),
        summarise(late),
    )
    assert summary.loc[summary["bin"] == 1, "centre"].eq(0.75).all()


def test_consistency_by_depth_needs_the_same_representations_on_every_dataset():
    tables = five_layer_tables()
    d2 = tables["d2"]
    tables["d2"] = d2[
        ~((d2["model_a"] == "e") & (d2["layer_a"] == "out")) & ~((d2["model_b"] == "e") & (d2["layer_b"] == "out"))
    ]
    assert len(representations_of(tables["d2"])) < len(representations_of(tables["d1"]))
    with pytest.raises(ValueError, match="dataset 'd2': its layer table has other representations than 'd1'"):
        consistency_by_depth(tables, model_sets(METADATA), depth_bins(2))


def test_consistency_by_depth_figure(tmp_path):
    tables = five_layer_tables()
    table, _ = consistency_by_depth(tables, model_sets(METADATA), depth_bins(3))
    summary = summarise_by_depth(table)
    plotted = summary[(summary["category"] == "all") | (summary["set_a"] == summary["set_b"])]
    plots.save_png(plots.consistency_by_depth(plotted, "cka"), str(tmp_path / "depth.png"))
    two_models = {d: t[t["model_a"].isin(["a", "b"]) & t["model_b"].isin(["a", "b"])] for d, t in tables.items()}
    empty, _ = consistency_by_depth(two_models, model_sets(METADATA.loc[["a", "b"]]), depth_bins(3))
    assert empty.empty and summarise_by_depth(empty).columns.equals(summary.columns)  # one model pair: no set
    plots.save_png(plots.consistency_by_depth(summarise_by_depth(empty), "cka"), str(tmp_path / "empty.png"))
    assert (tmp_path / "depth.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0


def test_grid_pairs_default_to_one_model_per_objective():
    objectives = {"s1": "Sup", "s2": "Sup", "x1": "SSL", "u1": "Untrained"}
    assert layer_grid_pairs(None, list(objectives), objectives) == [
        ("s1", "s1"),
        ("s1", "x1"),
        ("s1", "u1"),
        ("x1", "x1"),
        ("x1", "u1"),
        ("u1", "u1"),
    ]
    assert layer_grid_pairs([["s2", "x1"]], list(objectives), objectives) == [("s2", "x1")]
    with pytest.raises(ConfigError, match=r"grid_pairs names model\(s\) \['nope'\] without layers"):
        layer_grid_pairs([["s1", "nope"]], list(objectives), objectives)


# --------------------------------------------------------------------------- Snakemake

METRIC = TINY["metrics"][0]
LAYERED = copy.deepcopy(TINY)
for model, layers in {"lite0": ["blocks.3"], "resnet18_random": ["layer2"], "vit_random": ["blocks.1"]}.items():
    LAYERED["models"][model]["layers"] = layers
LAYER_TARGETS = [
    f"results/figures/{METRIC}/consistency_by_depth.png",
    f"results/figures/{METRIC}/layer_best_pairs.png",
    *(f"results/figures/{METRIC}/layer_grids/{dataset}.png" for dataset in TINY["datasets"]),
]


@pytest.mark.workflow
def test_no_layer_job_without_layers(tmp_path):
    result = snakemake(tmp_path, TINY, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [rule for rule in job_counts(result.stdout + result.stderr) if rule.startswith("layer")]


@pytest.mark.slow
@pytest.mark.workflow
def test_layer_run_and_one_more_layer_computes_only_its_pairs(tmp_path):
    result = snakemake(tmp_path, LAYERED, *LAYER_TARGETS)
    assert result.returncode == 0, result.stderr[-5000:]
    table = read_layer_table(tmp_path / f"results/layers/similarity/shapes/{METRIC}.csv")
    assert len(representations_of(table)) == 6 and len(table) == 6 * 5 // 2  # two layers of each of 3 models
    assert representations_of(table)["layer"].tolist() == [
        "blocks.3",
        "global_pool",
        "layer2",
        "global_pool",
        "blocks.1",
        "norm",
    ]
    log = (tmp_path / f"logs/layer_similarity/shapes/{METRIC}.log").read_text()
    assert "6 representations, computed 15 pairs" in log
    summary = pd.read_csv(tmp_path / f"results/figures/{METRIC}/consistency_by_depth.csv")
    assert set(summary["set_a"]) == {"All"} and summary["n_dataset_pairs"].eq(1).all()  # 3 models, 2 datasets
    grids = pd.read_csv(tmp_path / f"results/figures/{METRIC}/layer_grids/shapes.csv")
    assert set(zip(grids["model_a"], grids["model_b"])) == {
        ("lite0", "lite0"),
        ("lite0", "resnet18_random"),
        ("resnet18_random", "resnet18_random"),
    }

    config = copy.deepcopy(LAYERED)
    config["models"]["vit_random"]["layers"] = ["blocks.1", "blocks.2"]
    result = snakemake(tmp_path, config, *LAYER_TARGETS)
    assert result.returncode == 0, result.stderr[-5000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("layer_features") == 2 and counts.pop("layer_similarity") == 2  # vit_random's, per dataset
    assert counts.pop("check_layers") == 1 and not {"check_model", "features"} & set(counts)  # its layers' check only
    for dataset in TINY["datasets"]:
        log = (tmp_path / f"logs/layer_similarity/{dataset}/{METRIC}.log").read_text()
        assert "7 representations, computed 6 pairs" in log  # the new layer against the 6 there were
    table = read_layer_table(tmp_path / f"results/layers/similarity/shapes/{METRIC}.csv")
    assert len(table) == 7 * 6 // 2 and "blocks.2" in set(table["layer_b"])
