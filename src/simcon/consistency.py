"""Consistency of pairwise model similarities across datasets (paper Sec. 3, DESIGN §4)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

CATEGORIES = {
    "objective": "objective",
    "architecture": "architecture_class",
    "data": "data_class",
    "size": "size_class",
}
MIN_PAIRS = 3


def model_sets(metadata: pd.DataFrame, anchors: Sequence[str] = ()) -> dict[str, dict[str, list[str]]]:
    """Model sets by category: {category: {set name: model ids}}, plus 'all' and one single-model set per anchor."""
    sets: dict[str, dict[str, list[str]]] = {"all": {"All": list(metadata.index)}}
    for category, column in CATEGORIES.items():
        groups = metadata.groupby(column, sort=True).groups
        sets[category] = {str(name): list(members) for name, members in groups.items()}
    if anchors:
        sets["anchor"] = {str(anchor): [anchor] for anchor in anchors}
    return sets


def model_pairs(order: Sequence[str], set_a: Sequence[str], set_b: Sequence[str]) -> list[tuple[str, str]]:
    """Unordered pairs {a, b} with a in set_a, b in set_b, a != b, each once, sorted by position in `order`."""
    position = {model: i for i, model in enumerate(order)}
    pairs = {
        tuple(sorted((a, b), key=position.__getitem__)) for a in set_a for b in set_b if a != b
    }
    return sorted(pairs, key=lambda pair: (position[pair[0]], position[pair[1]]))


def similarity_vector(matrix: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """The similarities of `pairs` read from a model-by-model matrix."""
    rows = matrix.index.get_indexer([a for a, _ in pairs])
    cols = matrix.columns.get_indexer([b for _, b in pairs])
    return matrix.to_numpy()[rows, cols]


def set_pairs(sets: Mapping[str, Mapping[str, Sequence[str]]]) -> list[tuple[str, str, str, str]]:
    """The set pairs compared, as (category_a, set_a, category_b, set_b): every unordered pair of sets,
    self-pairs included, within a category; anchors against every objective set."""
    triples = []
    for category, named in sets.items():
        if category == "anchor":
            continue
        for a, b in itertools.combinations_with_replacement(named, 2):
            triples.append((category, a, category, b))
    for anchor in sets.get("anchor", {}):
        for objective in sets["objective"]:
            triples.append(("anchor", anchor, "objective", objective))
    return triples


def consistency(
    matrices: Mapping[str, pd.DataFrame], sets: Mapping[str, Mapping[str, Sequence[str]]]
) -> pd.DataFrame:
    """Pearson rho between the similarity vectors of every dataset pair, for every compared pair of model sets.

    Columns: category, set_a, set_b, dataset_a, dataset_b, n_pairs, rho. Set pairs with fewer than
    MIN_PAIRS model pairs, or a constant similarity vector on either dataset, give no row.
    """
    datasets = list(matrices)
    order = list(matrices[datasets[0]].index)
    for dataset in datasets:
        if list(matrices[dataset].index) != order or list(matrices[dataset].columns) != order:
            raise ValueError(f"dataset '{dataset}': its matrix has other models than '{datasets[0]}'")
    rows = []
    for category_a, name_a, category_b, name_b in set_pairs(sets):
        pairs = model_pairs(order, sets[category_a][name_a], sets[category_b][name_b])
        if len(pairs) < MIN_PAIRS:
            continue
        vectors = {dataset: similarity_vector(matrices[dataset], pairs) for dataset in datasets}
        for dataset_a, dataset_b in itertools.combinations(datasets, 2):
            x, y = vectors[dataset_a], vectors[dataset_b]
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            rows.append(
                {
                    "category": category_a,
                    "set_a": name_a,
                    "set_b": name_b,
                    "dataset_a": dataset_a,
                    "dataset_b": dataset_b,
                    "n_pairs": len(pairs),
                    "rho": float(stats.pearsonr(x, y).statistic),
                }
            )
    columns = ["category", "set_a", "set_b", "dataset_a", "dataset_b", "n_pairs", "rho"]
    return pd.DataFrame(rows, columns=columns)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per (category, set_a, set_b): count, mean, std, median and quartiles of rho across dataset pairs."""
    grouped = table.groupby(["category", "set_a", "set_b"], sort=False)["rho"]
    summary = grouped.agg(
        n_dataset_pairs="count",
        mean="mean",
        std="std",
        median="median",
        q25=lambda r: r.quantile(0.25),
        q75=lambda r: r.quantile(0.75),
    )
    return summary.reset_index()
