"""Similarity over every (model, layer) representation and the layer analyses (docs/layers.md).

A layer folder (results/layers/{dataset}/{model}, written by the layer_features rule; its format and its reader
are simcon.formats') holds layers.json and one float32 (n, d) array per layer, row i the subset's i-th train
image. Each representation is one layer of one model, at a relative depth in (0, 1] (1 = the model's
representation layer). The layer similarity of a dataset under a metric is the long table of every pair of
representations (within-model pairs included); the analyses read only that table: layer x layer grids of model
pairs, the best-matching layer pair of each model pair, and the consistency across datasets of the similarities at
each relative depth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from simcon.consistency import consistency, summarise
from simcon.formats import LAYER_TABLE_COLUMNS, Representation


def layer_similarity(
    representations: Sequence[Representation],
    metric: str,
    *,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    context_key: str = "",
    progress: bool = False,
) -> tuple[pd.DataFrame, int]:
    """The long table (LAYER_TABLE_COLUMNS) of every pair of representations, in input order, under `metric`, and
    how many pairs were computed rather than read from the pair cache (simcon.similarity.compute_similarity:
    a pair is cached under the content of its two arrays, so a new layer computes only its own pairs)."""
    from simcon.similarity import compute_similarity  # torch only for the jobs that compute similarities

    keys = [f"{r.model}/{r.layer}" for r in representations]
    if len(set(keys)) != len(keys):
        raise ValueError(f"representations repeat: {sorted({k for k in keys if keys.count(k) > 1})}")
    # copy-on-write memory maps: read as needed, writable for torch without touching the files
    features = {key: np.load(r.path, mmap_mode="c") for key, r in zip(keys, representations)}
    result = compute_similarity(
        features, metric, device=device, cache_dir=cache_dir, context_key=context_key, progress=progress
    )
    rows, cols = np.triu_indices(len(keys), k=1)
    values = result.matrix.to_numpy()
    table = pd.DataFrame(
        {
            "model_a": [representations[i].model for i in rows],
            "layer_a": [representations[i].layer for i in rows],
            "depth_a": [representations[i].depth for i in rows],
            "model_b": [representations[j].model for j in cols],
            "layer_b": [representations[j].layer for j in cols],
            "depth_b": [representations[j].depth for j in cols],
            "similarity": values[rows, cols],
        },
        columns=LAYER_TABLE_COLUMNS,
    )
    return table, result.computed_pairs


def representations_of(table: pd.DataFrame) -> pd.DataFrame:
    """The representations of a long table: model, layer, depth, in the order of the table's pairs (that of
    layer_similarity's input)."""
    sides = [
        table[[f"model_{side}", f"layer_{side}", f"depth_{side}"]].set_axis(["model", "layer", "depth"], axis=1)
        for side in ("a", "b")
    ]
    return pd.concat(sides).drop_duplicates(["model", "layer"]).reset_index(drop=True)


def layer_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """The square representation-by-representation similarity matrix of a long table, indexed by (model, layer)
    on both axes, 1 on the diagonal."""
    found = representations_of(table)
    index = pd.MultiIndex.from_frame(found[["model", "layer"]])
    a = index.get_indexer(pd.MultiIndex.from_arrays([table["model_a"], table["layer_a"]]))
    b = index.get_indexer(pd.MultiIndex.from_arrays([table["model_b"], table["layer_b"]]))
    values = np.eye(len(index))
    values[a, b] = values[b, a] = table["similarity"].to_numpy()
    return pd.DataFrame(values, index=index, columns=index)


def layer_grid(matrix: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """The layer x layer similarity grid of two models (or a model with itself): rows the layers of model_a,
    columns those of model_b, both in depth order."""
    return matrix.xs(model_a, level="model", axis=0).xs(model_b, level="model", axis=1)


def grid_table(tables: Mapping[str, pd.DataFrame], pairs: Sequence[Sequence[str]]) -> pd.DataFrame:
    """The layer x layer grids of the model pairs on every dataset, as one long table: dataset, model_a, layer_a,
    depth_a, model_b, layer_b, depth_b, similarity (every cell of each grid)."""
    parts = []
    for dataset, table in tables.items():
        matrix = layer_matrix(table)
        depth = representations_of(table).set_index(["model", "layer"])["depth"]
        for model_a, model_b in pairs:
            grid = layer_grid(matrix, model_a, model_b).rename_axis(index="layer_a", columns="layer_b")
            cells = grid.stack().rename("similarity").reset_index()
            cells["depth_a"] = depth.loc[model_a].loc[cells["layer_a"]].to_numpy()
            cells["depth_b"] = depth.loc[model_b].loc[cells["layer_b"]].to_numpy()
            parts.append(cells.assign(dataset=dataset, model_a=model_a, model_b=model_b))
    return pd.concat(parts, ignore_index=True)[["dataset", *LAYER_TABLE_COLUMNS]]


def best_layer_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """For each pair of distinct models (in the table's model order), the pair of layers with the largest
    similarity (the first in depth order on ties) and the similarity of their representation layers.

    Columns: model_a, model_b, layer_a, depth_a, layer_b, depth_b, similarity, representation_similarity.
    """
    across = table[table["model_a"] != table["model_b"]]
    best = across.loc[across.groupby(["model_a", "model_b"], sort=False)["similarity"].idxmax()]
    final = across[(across["depth_a"] == 1.0) & (across["depth_b"] == 1.0)]
    final = final.set_index(["model_a", "model_b"])["similarity"].rename("representation_similarity")
    best = best.join(final, on=["model_a", "model_b"])
    columns = ["model_a", "model_b", "layer_a", "depth_a", "layer_b", "depth_b", "similarity"]
    return best[[*columns, "representation_similarity"]].reset_index(drop=True)


def depth_bins(count: int) -> pd.DataFrame:
    """`count` equal bins of relative depth over (0, 1]: bin, low, high, centre; the last holds depth 1."""
    if count < 1:
        raise ValueError(f"the number of depth bins must be at least 1, got {count}")
    edges = np.linspace(0.0, 1.0, count + 1)
    return pd.DataFrame(
        {"bin": np.arange(count), "low": edges[:-1], "high": edges[1:], "centre": (edges[:-1] + edges[1:]) / 2}
    )


def nearest_layers(representations: pd.DataFrame, bins: pd.DataFrame) -> pd.DataFrame:
    """Each model's layer nearest each bin's centre in relative depth (the shallower of two equally near).

    `representations`: model, layer, depth. Columns: bin, centre, model, layer, depth.
    """
    rows = []
    for model, layers in representations.groupby("model", sort=False):
        layers = layers.sort_values("depth")
        for b, centre in zip(bins["bin"], bins["centre"]):
            chosen = layers.iloc[int(np.argmin(np.abs(layers["depth"].to_numpy() - centre)))]
            rows.append((b, centre, model, chosen["layer"], chosen["depth"]))
    return pd.DataFrame(rows, columns=["bin", "centre", "model", "layer", "depth"])


def consistency_by_depth(
    tables: Mapping[str, pd.DataFrame], sets: Mapping[str, Mapping[str, Sequence[str]]], bins: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's consistency (simcon.consistency.consistency) of the model sets at each depth bin, where
    every model is represented by its layer nearest the bin's centre.

    `tables`: the long table of each dataset (the same representations on each). Returns the consistency
    table with the bin's columns (bin, low, high, centre) in front, and the chosen layers (nearest_layers).
    """
    found = {dataset: representations_of(table) for dataset, table in tables.items()}
    first = next(iter(found))
    for dataset, representations in found.items():
        if not representations[["model", "layer"]].equals(found[first][["model", "layer"]]):
            raise ValueError(f"dataset '{dataset}': its layer table has other representations than '{first}'")
    chosen = nearest_layers(found[first], bins)
    matrices = {dataset: layer_matrix(table) for dataset, table in tables.items()}
    parts = []
    for b, layers in chosen.groupby("bin", sort=True):
        index = pd.MultiIndex.from_frame(layers[["model", "layer"]])
        per_dataset = {}
        for dataset, matrix in matrices.items():
            picked = matrix.loc[index, index]
            per_dataset[dataset] = pd.DataFrame(picked.to_numpy(), index=layers["model"], columns=layers["model"])
        table = consistency(per_dataset, sets)
        parts.append(table.assign(**bins.loc[bins["bin"] == b].iloc[0].to_dict()))
    columns = ["bin", "low", "high", "centre", *parts[0].columns.drop(["bin", "low", "high", "centre"])]
    return pd.concat(parts, ignore_index=True)[columns].astype({"bin": int}), chosen


def summarise_by_depth(table: pd.DataFrame) -> pd.DataFrame:
    """simcon.consistency.summarise of a consistency_by_depth table, per bin (bin, low, high, centre in front)."""
    keys = ["bin", "low", "high", "centre"]
    parts = [summarise(table.iloc[:0]).assign(**{key: pd.Series(dtype=table[key].dtype) for key in keys})]
    parts += [summarise(rows).assign(**dict(zip(keys, values))) for values, rows in table.groupby(keys, sort=True)]
    summary = pd.concat(parts, ignore_index=True)
    return summary[[*keys, *summary.columns.drop(keys)]]
