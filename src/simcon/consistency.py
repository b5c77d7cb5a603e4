"""Consistency of pairwise model similarities across datasets (paper Sec. 3, docs/design.md §4)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from simcon.vocabulary import CATEGORY_TITLES, DATASET_CATEGORIES, MODEL_CATEGORIES, SIZE_CLASSES

# Sets listed in this order where a category has one (the paper's Table 1); otherwise alphabetically.
SET_ORDER = {"size": SIZE_CLASSES}

MIN_PAIRS = 3
COLUMNS = ["category", "set_a", "set_b", "dataset_a", "dataset_b", "n_pairs", "rho"]


def read_consistency(path: str) -> pd.DataFrame:
    """A consistency table from CSV; only empty cells are missing, so a set named e.g. 'None' stays a name."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def model_sets(metadata: pd.DataFrame, anchors: Sequence[str] = ()) -> dict[str, dict[str, list[str]]]:
    """Model sets by category: {category: {set name: model ids}}, plus 'all' and one single-model set per anchor."""
    unknown = [anchor for anchor in anchors if anchor not in metadata.index]
    if unknown:
        raise ValueError(f"anchors {unknown} are not model ids of this config")
    sets: dict[str, dict[str, list[str]]] = {"all": {"All": list(metadata.index)}}
    for category, column in MODEL_CATEGORIES.items():
        groups = metadata.groupby(column, sort=True).groups
        sets[category] = {str(name): list(members) for name, members in groups.items()}
    if anchors:
        sets["anchor"] = {str(anchor): [anchor] for anchor in anchors}
    return sets


def category_counts(metadata: pd.DataFrame) -> pd.DataFrame:
    """The number of models in each set of each category (paper Table 1), from model metadata (one row per
    model, a column per MODEL_CATEGORIES value). Columns: category, title, set, n_models; categories in MODEL_CATEGORIES
    order, sets in SET_ORDER or alphabetical order; only sets with at least one model."""
    missing = [column for column in MODEL_CATEGORIES.values() if column not in metadata.columns]
    if missing:
        raise ValueError(f"model metadata lacks the column(s) {missing}")
    rows = []
    for category, column in MODEL_CATEGORIES.items():
        counts = metadata[column].astype(str).value_counts()
        order = SET_ORDER.get(category, ())
        for name in sorted(counts.index, key=lambda n: (order.index(n) if n in order else len(order), n)):
            rows.append(
                {"category": category, "title": CATEGORY_TITLES[category], "set": name, "n_models": int(counts[name])}
            )
    return pd.DataFrame(rows, columns=["category", "title", "set", "n_models"])


def model_pairs(order: Sequence[str], set_a: Sequence[str], set_b: Sequence[str]) -> list[tuple[str, str]]:
    """Unordered pairs {a, b} with a in set_a, b in set_b, a != b, each once, sorted by position in `order`."""
    position = {model: i for i, model in enumerate(order)}
    pairs = {tuple(sorted((a, b), key=position.__getitem__)) for a in set_a for b in set_b if a != b}
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


def dataset_correlations(vectors: np.ndarray) -> np.ndarray:
    """Pearson correlation between the rows of a (datasets × model pairs) array; NaN where a row is constant."""
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (centred @ centred.T) / np.outer(norms, norms)
    constant = np.ptp(vectors, axis=1) == 0
    rho[constant, :] = np.nan
    rho[:, constant] = np.nan
    return np.clip(rho, -1.0, 1.0)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two vectors; NaN with fewer than MIN_PAIRS entries or when either is constant."""
    from scipy import stats  # scipy.stats only for the jobs that need it: it takes a second to import

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < MIN_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.pearsonr(x, y).statistic)


def check_same_models(matrices: Mapping[str, pd.DataFrame]) -> list[str]:
    """The model order shared by every matrix; a ValueError names the first dataset whose matrix differs."""
    if not matrices:
        raise ValueError("no similarity matrices given")
    datasets = list(matrices)
    order = list(matrices[datasets[0]].index)
    for dataset in datasets:
        if list(matrices[dataset].index) != order or list(matrices[dataset].columns) != order:
            raise ValueError(f"dataset '{dataset}': its matrix has other models than '{datasets[0]}'")
    return order


def consistency(matrices: Mapping[str, pd.DataFrame], sets: Mapping[str, Mapping[str, Sequence[str]]]) -> pd.DataFrame:
    """Pearson rho between the similarity vectors of every dataset pair, for every compared pair of model sets.

    Columns: category, set_a, set_b, dataset_a, dataset_b, n_pairs, rho. Set pairs with fewer than
    MIN_PAIRS model pairs, or a constant similarity vector on either dataset, give no row.
    """
    datasets = list(matrices)
    order = check_same_models(matrices)
    upper = np.triu_indices(len(datasets), k=1)
    rows = []
    for category_a, name_a, category_b, name_b in set_pairs(sets):
        pairs = model_pairs(order, sets[category_a][name_a], sets[category_b][name_b])
        if len(pairs) < MIN_PAIRS:
            continue
        vectors = np.stack([similarity_vector(matrices[dataset], pairs) for dataset in datasets])
        rho = dataset_correlations(vectors)[upper]
        for i, j, value in zip(*upper, rho):
            if not np.isnan(value):
                rows.append((category_a, name_a, name_b, datasets[i], datasets[j], len(pairs), float(value)))
    return pd.DataFrame(rows, columns=COLUMNS)


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


def dataset_matrix(
    table: pd.DataFrame, category: str, set_a: str, set_b: str, datasets: Sequence[str]
) -> pd.DataFrame | None:
    """The dataset × dataset matrix of rho for one set pair (in either order) from a consistency table:
    1 on the diagonal, NaN where the table has no value; None if the table has no row for the set pair."""
    forward = (table["set_a"] == set_a) & (table["set_b"] == set_b)
    backward = (table["set_a"] == set_b) & (table["set_b"] == set_a)
    rows = table[(table["category"] == category) & (forward | backward)]
    if rows.empty:
        return None
    position = {dataset: i for i, dataset in enumerate(datasets)}
    values = np.full((len(datasets), len(datasets)), np.nan)
    np.fill_diagonal(values, 1.0)
    for a, b, rho in zip(rows["dataset_a"], rows["dataset_b"], rows["rho"]):
        values[position[a], position[b]] = values[position[b], position[a]] = rho
    return pd.DataFrame(values, index=list(datasets), columns=list(datasets))


def sort_by_category(datasets: Sequence[str], categories: Mapping[str, str]) -> list[str]:
    """Datasets grouped by category in DATASET_CATEGORIES order (others last), in their given order within a group."""
    rank = {category: i for i, category in enumerate(DATASET_CATEGORIES)}
    return sorted(datasets, key=lambda d: rank.get(categories[d], len(rank)))


def dataset_matrices(
    table: pd.DataFrame, wanted: Sequence[Mapping[str, str]], datasets: Sequence[str]
) -> tuple[dict[str, pd.DataFrame | None], pd.DataFrame]:
    """Dataset × dataset rho matrices of the wanted set pairs ({category, set_a, set_b}), keyed by a title
    '(set_a, set_b)', None for a set pair without values; and the same as a long table (category, set_a,
    set_b, dataset_a, dataset_b, rho, note) with one 'no values' row per set pair without values."""
    matrices, long = {}, []
    for pair in wanted:
        category, set_a, set_b = pair["category"], pair["set_a"], pair["set_b"]
        matrix = dataset_matrix(table, category, set_a, set_b, datasets)
        matrices[f"({set_a}, {set_b})"] = matrix
        key = {"category": category, "set_a": set_a, "set_b": set_b}
        if matrix is None:
            long.append(pd.DataFrame([key | {"note": f"no values: fewer than {MIN_PAIRS} model pairs in this config"}]))
            continue
        stacked = matrix.rename_axis(index="dataset_a", columns="dataset_b").stack()
        long.append(stacked.rename("rho").reset_index().assign(**key, note=""))
    columns = ["category", "set_a", "set_b", "dataset_a", "dataset_b", "rho", "note"]
    return matrices, pd.concat(long, ignore_index=True).reindex(columns=columns)


def metric_agreement(tables: Mapping[str, pd.DataFrame], reference: str) -> pd.DataFrame:
    """rho under every other metric beside rho under the reference metric, for the same set pair and dataset
    pair, over the set pairs within a model category (MODEL_CATEGORIES; not the set of all models, not the
    anchors), as the paper's code draws App. E. Columns: metric, category, set_a, set_b, dataset_a, dataset_b,
    rho_reference, rho; NaN where one of the two metrics has no value."""
    keys = ["category", "set_a", "set_b", "dataset_a", "dataset_b"]

    def within_categories(table: pd.DataFrame) -> pd.DataFrame:
        return table[table["category"].isin(list(MODEL_CATEGORIES))].set_index(keys)

    base = within_categories(tables[reference])["rho"].rename("rho_reference")
    parts = [
        pd.concat([base, within_categories(table)["rho"]], axis=1, join="outer").reset_index().assign(metric=metric)
        for metric, table in tables.items()
        if metric != reference
    ]
    columns = ["metric", *keys, "rho_reference", "rho"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
