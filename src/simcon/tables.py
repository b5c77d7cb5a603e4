"""Similarities and probe accuracies given as tables, in place of images: long tables, or the files of the paper
authors' published results in their own layout (docs/configuration.md#starting-from-similarity-tables).

A similarity table holds one row per (model pair, dataset, metric); a performance table one row per (model,
dataset) with its top-1 accuracy (a fraction). Ids are mapped to the config's through `rename` mappings (their id
-> ours; several of theirs may map to one of ours), then the rows of the configured models, datasets and metrics
are kept and checked: every pair present once, every value finite. Every problem is a TableError naming the file
and the culprit. Torch-free: the workflow reads the tables when it parses, to rerun only the jobs whose rows changed.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simcon.consistency import pearson_r

SIMILARITY_COLUMNS = ("model_a", "model_b", "dataset", "metric", "similarity")
"""The columns of a long similarity table."""

PERFORMANCE_COLUMNS = ("model", "dataset", "top1")
"""The columns of a long performance table."""

CONSISTENCY_COLUMNS = ("metric", "category", "set_a", "set_b", "dataset_a", "dataset_b", "rho")
"""The columns of a consistency table (results/consistency/{metric}/consistency.csv) that comparisons read."""


@dataclass(frozen=True)
class Layout:
    """Where a layout keeps each column (ours -> its name) of the similarity, performance and consistency tables,
    the metric names it uses (its name -> ours), and, for consistency tables, its category names (its -> ours)."""

    similarity: Mapping[str, str]
    performance: Mapping[str, str]
    consistency: Mapping[str, str]
    metrics: Mapping[str, str]
    categories: Mapping[str, str]


AUTHORS_METRICS = {
    "CKA linear": "cka_linear_unbiased",
    **{f"CKA RBF {sigma}": f"cka_rbf{sigma}_unbiased" for sigma in (0.2, 0.4, 0.6, 0.8)},
    "RSA pearson": "rsa_correlation_pearson",
    "RSA spearman": "rsa_correlation_spearman",
}
"""The authors' display names of the metrics in their aggregated tables (notebooks/constants.py,
sim_metric_name_mapping), and the registered names of the same measures."""

LAYOUTS: Mapping[str, Layout] = {
    "long": Layout(
        similarity={column: column for column in SIMILARITY_COLUMNS},
        performance={column: column for column in PERFORMANCE_COLUMNS},
        consistency={column: column for column in CONSISTENCY_COLUMNS},
        metrics={},
        categories={},
    ),
    # The paper authors' aggregated results (lciernik/similarity_consistency, notebooks/aggregate_*.ipynb):
    # results/aggregated/model_sims/all_metric_ds_model_pair_similarity[_with_rsa].csv,
    # single_model_performance/all_ds.csv (TestAcc: mean test top-1 over seeds 0-2, a fraction) and
    # r_coeff_dist/with_cats_as_anchors/agg_pearsonr_all_ds_with_rsa.csv (ds1, ds2 by their ids; the set pair as
    # anchor_cat, other_cat; its category by title).
    "authors": Layout(
        similarity={
            "model_a": "Model 1",
            "model_b": "Model 2",
            "dataset": "DS",
            "metric": "Similarity metric",
            "similarity": "Similarity value",
        },
        performance={"model": "Model", "dataset": "DS", "top1": "TestAcc"},
        consistency={
            "metric": "Similarity metric",
            "category": "Comparison category",
            "set_a": "anchor_cat",
            "set_b": "other_cat",
            "dataset_a": "ds1",
            "dataset_b": "ds2",
            "rho": "r coeff",
        },
        metrics=AUTHORS_METRICS,
        categories={
            "Training objective": "objective",
            "Architecture": "architecture",
            "Training data": "data",
            "Model size": "size",
        },
    ),
}
"""Table layouts by name: `long` (this project's column names) and `authors` (the paper authors' published files)."""


class TableError(ValueError):
    """A similarity, performance or consistency table is unusable; the message names the file and the culprit."""


def paper_model_ids(path: str | os.PathLike) -> dict[str, str]:
    """The authors' id of each of the paper's models -> its id here, from the authors_id column of
    resources/paper_models.csv."""
    with open(path, newline="") as handle:
        return {row["authors_id"]: row["model"] for row in csv.DictReader(handle) if row["authors_id"]}


def read_table(path: str | os.PathLike, columns: Mapping[str, str], numeric: str) -> pd.DataFrame:
    """The columns of a CSV table under our names, ids as text and `numeric` as floats; TableError naming the file
    if it is missing, lacks a column, or has a value of `numeric` that is not a finite number."""
    if not Path(path).is_file():
        raise TableError(f"table {path} does not exist")
    header = pd.read_csv(path, nrows=0).columns
    missing = [name for name in columns.values() if name not in header]
    if missing:
        raise TableError(f"table {path} lacks the column(s) {missing}; its columns: {list(header)}")
    text = {name: str for ours, name in columns.items() if ours != numeric}
    frame = pd.read_csv(path, usecols=list(columns.values()), dtype=text, keep_default_na=False)
    frame = frame.rename(columns={name: ours for ours, name in columns.items()})[list(columns)]
    values = pd.to_numeric(frame[numeric], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
    if bad.size:
        raise TableError(
            f"table {path}, line {bad[0] + 2}: {columns[numeric]} {frame[numeric].iloc[bad[0]]!r} is not a finite "
            f"number ({bad.size} such row(s))"
        )
    return frame.assign(**{numeric: values.astype(float)})


def _with_layout_metrics(spec: Layout, rename: Mapping[str, Mapping[str, str]] | None) -> dict[str, Mapping[str, str]]:
    """The id mappings `rename`, with the layout's own metric names mapped before the given ones."""
    rename = dict(rename or {})
    return {**rename, "metrics": {**spec.metrics, **rename.get("metrics", {})}}


def _renamed(frame: pd.DataFrame, rename: Mapping[str, Mapping[str, str]], kinds: Mapping[str, str]) -> pd.DataFrame:
    """The table with the ids of each column mapped by rename[kind] (kinds: column -> models, datasets, metrics)."""
    renamed = {}
    for column, kind in kinds.items():
        mapping = rename.get(kind, {})
        renamed[column] = [mapping.get(i, i) for i in frame[column]]
    return frame.assign(**renamed)


def _duplicates(frame: pd.DataFrame, keys: Sequence[str], value: str) -> None:
    """TableError naming the first key given twice with different values, and the files that give it."""
    repeated = frame[frame.duplicated(list(keys), keep=False)]
    conflicting = repeated.groupby(list(keys), sort=False)[value].nunique()
    conflicting = conflicting[conflicting > 1]
    if len(conflicting):
        key = conflicting.index[0]
        rows = repeated.set_index(list(keys)).loc[[key]]
        given = ", ".join(f"{v:g} ({source})" for v, source in zip(rows[value], rows["source"]))
        raise TableError(f"{dict(zip(keys, key))} is given {len(rows)} times with different values: {given}")


def read_similarities(
    paths: Sequence[str | os.PathLike],
    *,
    models: Sequence[str],
    datasets: Sequence[str],
    metrics: Sequence[str],
    layout: str = "long",
    rename: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Every pair of `models` on each of `datasets` under each of `metrics`, from the similarity tables `paths` in
    a layout of LAYOUTS (checked_similarities). Ids are mapped by `rename` ({'models' | 'datasets' | 'metrics':
    {theirs: ours}}), the layout's own metric names first. TableError if a table is missing or lacks a column, or
    as checked_similarities."""
    spec = LAYOUTS[layout]
    rename = _with_layout_metrics(spec, rename)
    kinds = {"model_a": "models", "model_b": "models", "dataset": "datasets", "metric": "metrics"}
    frames = [
        _renamed(read_table(path, spec.similarity, "similarity"), rename, kinds).assign(source=str(path))
        for path in paths
    ]
    return checked_similarities(pd.concat(frames, ignore_index=True), models=models, datasets=datasets, metrics=metrics)


def checked_similarities(
    table: pd.DataFrame, *, models: Sequence[str], datasets: Sequence[str], metrics: Sequence[str]
) -> pd.DataFrame:
    """The rows of `models`, `datasets` and `metrics` of a similarity table (the columns of SIMILARITY_COLUMNS and
    `source`, the file of each row), checked: a table (dataset, metric, model_a, model_b, similarity), a pair once
    with model_a before model_b in `models` order, sorted. Rows of other ids, and of a model with itself, are left
    out; a pair given twice with one value is kept once. TableError if a pair is given twice with different values,
    or a pair is missing."""
    position = {model: i for i, model in enumerate(models)}
    kept = (
        table["model_a"].isin(position)
        & table["model_b"].isin(position)
        & table["dataset"].isin(set(datasets))
        & table["metric"].isin(set(metrics))
        & (table["model_a"] != table["model_b"])
    )
    sources = list(dict.fromkeys(table["source"]))
    table = table[kept]
    first = table["model_a"].map(position) < table["model_b"].map(position)
    table = table.assign(
        model_a=table["model_a"].where(first, table["model_b"]), model_b=table["model_b"].where(first, table["model_a"])
    )
    keys = ["dataset", "metric", "model_a", "model_b"]
    _duplicates(table, keys, "similarity")
    table = table.drop_duplicates(keys)
    expected = len(models) * (len(models) - 1) // 2
    counts = table.groupby(["dataset", "metric"]).size()
    for dataset in datasets:
        for metric in metrics:
            if counts.get((dataset, metric), 0) < expected:
                _missing_pairs(table, dataset, metric, models, sources)
    order = {"dataset": {d: i for i, d in enumerate(datasets)}, "metric": {m: i for i, m in enumerate(metrics)}}
    table = table.sort_values(keys, key=lambda column: column.map(order.get(column.name, position)), ignore_index=True)
    return table[["dataset", "metric", "model_a", "model_b", "similarity"]]


def _missing_pairs(table: pd.DataFrame, dataset: str, metric: str, models: Sequence[str], paths: Sequence[str]) -> None:
    """TableError naming the pairs of `models` the tables lack on `dataset` under `metric`."""
    rows = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
    given = set(zip(rows["model_a"], rows["model_b"]))
    missing = [(a, b) for i, a in enumerate(models) for b in models[i + 1 :] if (a, b) not in given]
    shown = ", ".join(f"({a}, {b})" for a, b in missing[:3]) + (", ..." if len(missing) > 3 else "")
    where = "no rows" if rows.empty else f"{len(missing)} of {len(missing) + len(given)} pairs missing: {shown}"
    raise TableError(
        f"dataset {dataset!r}, metric {metric!r}: {where} in {paths} (after renaming ids; are "
        "the dataset, metric and model ids those of the config, or mapped by similarities.rename?)"
    )


def similarity_matrix(pairs: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """The symmetric model-by-model matrix (1 on the diagonal) of one dataset and metric from its rows of
    read_similarities (model_a, model_b, similarity)."""
    position = {model: i for i, model in enumerate(models)}
    values = np.eye(len(models))
    rows, cols = pairs["model_a"].map(position).to_numpy(), pairs["model_b"].map(position).to_numpy()
    values[rows, cols] = values[cols, rows] = pairs["similarity"].to_numpy()
    return pd.DataFrame(values, index=pd.Index(models), columns=pd.Index(models))


def read_performance(
    path: str | os.PathLike,
    *,
    models: Sequence[str],
    datasets: Sequence[str],
    layout: str = "long",
    rename: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Top-1 accuracy of each of `models` on each of `datasets` from the performance table `path`: a table
    (dataset, model, top1) in config order. TableError if the table is missing or lacks a column, a top-1 is not a
    number in [0, 1], a (model, dataset) is given twice with different values, or one is missing."""
    kinds = {"model": "models", "dataset": "datasets"}
    table = _renamed(read_table(path, LAYOUTS[layout].performance, "top1"), rename or {}, kinds).assign(
        source=str(path)
    )
    outside = table[(table["top1"] < 0) | (table["top1"] > 1)]
    if len(outside):
        row = outside.iloc[0]
        raise TableError(
            f"table {path}: top-1 {row['top1']} of model {row['model']!r} on {row['dataset']!r} is not a fraction in "
            "[0, 1] (a percentage?)"
        )
    table = table[table["model"].isin(set(models)) & table["dataset"].isin(set(datasets))]
    _duplicates(table, ["dataset", "model"], "top1")
    given = table.drop_duplicates(["dataset", "model"]).set_index(["dataset", "model"])["top1"]
    missing = [(m, d) for d in datasets for m in models if (d, m) not in given.index]
    if missing:
        shown = ", ".join(f"{m} on {d}" for m, d in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise TableError(f"table {path}: no top-1 for {len(missing)} (model, dataset): {shown}")
    index = pd.MultiIndex.from_tuples([(d, m) for d in datasets for m in models], names=["dataset", "model"])
    return given.reindex(index).reset_index()


def read_consistency_tables(
    paths: Sequence[str | os.PathLike],
    *,
    metrics: Sequence[str],
    datasets: Sequence[str],
    layout: str = "long",
    rename: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Consistency values of set pairs on dataset pairs from consistency tables in a layout (long: this project's
    consistency.csv), for comparison with this project's: a table (metric, category, set_a, set_b, dataset_a,
    dataset_b, rho) of `metrics` and `datasets`, each pair of sets and of datasets in sorted order. TableError if a
    table is missing or lacks a column."""
    spec = LAYOUTS[layout]
    rename = _with_layout_metrics(spec, rename)
    kinds = {"metric": "metrics", "dataset_a": "datasets", "dataset_b": "datasets"}
    frames = []
    for path in paths:
        frame = _renamed(read_table(path, spec.consistency, "rho"), rename, kinds)
        frames.append(frame.assign(category=frame["category"].map(lambda c: spec.categories.get(c, c))))
    table = pd.concat(frames, ignore_index=True)
    table = table[table["metric"].isin(set(metrics)) & table["dataset_a"].isin(set(datasets))]
    table = table[table["dataset_b"].isin(set(datasets))]
    return sorted_pairs(table).drop_duplicates(list(CONSISTENCY_COLUMNS[:-1]), ignore_index=True)


def sorted_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """A consistency table with each set pair (set_a, set_b) and dataset pair (dataset_a, dataset_b) in sorted
    order, so that tables that order pairs differently can be joined."""
    low_set = table[["set_a", "set_b"]].min(axis=1)
    low_dataset = table[["dataset_a", "dataset_b"]].min(axis=1)
    return table.assign(
        set_b=table[["set_a", "set_b"]].max(axis=1),
        set_a=low_set,
        dataset_b=table[["dataset_a", "dataset_b"]].max(axis=1),
        dataset_a=low_dataset,
    )


def compare_consistency(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Our consistency values beside published ones for the same metric, set pair and dataset pair (both tables
    with the columns of CONSISTENCY_COLUMNS): metric, category, set_a, set_b, dataset_a, dataset_b, rho,
    rho_published, difference (ours minus published); only the keys both have."""
    keys = list(CONSISTENCY_COLUMNS[:-1])
    joined = sorted_pairs(ours[list(CONSISTENCY_COLUMNS)]).merge(
        theirs[list(CONSISTENCY_COLUMNS)].rename(columns={"rho": "rho_published"}), on=keys, how="inner"
    )
    return joined.assign(difference=joined["rho"] - joined["rho_published"])


def comparison_summary(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per metric and model category of a compare_consistency table: the number of values both have, the largest
    and the mean absolute difference, and the Pearson r between ours and the published values."""
    rows = []
    for (metric, category), group in comparison.groupby(["metric", "category"], sort=False):
        rows.append(
            {
                "metric": metric,
                "category": category,
                "n": len(group),
                "max_abs_difference": group["difference"].abs().max(),
                "mean_abs_difference": group["difference"].abs().mean(),
                "pearson_r": pearson_r(group["rho"], group["rho_published"]),
            }
        )
    columns = ["metric", "category", "n", "max_abs_difference", "mean_abs_difference", "pearson_r"]
    return pd.DataFrame(rows, columns=columns)


def table_digest(table: pd.DataFrame) -> str:
    """A digest of a table's rows, which changes when and only when a row changes."""
    return hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes()).hexdigest()[:16]


def slice_digests(table: pd.DataFrame, keys: Sequence[str]) -> dict[tuple[str, ...], str]:
    """The table_digest of the rows of each value of `keys` (e.g. dataset and metric) of a table read here."""
    return {key: table_digest(rows.drop(columns=list(keys))) for key, rows in table.groupby(list(keys), sort=False)}
