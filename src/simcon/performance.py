"""Downstream performance from linear probes, and how similarity relates to performance gaps (Sec. 4.7)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from simcon.consistency import model_pairs, pearson_r, similarity_vector


def performance_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of top-1, top-5 and balanced accuracy per (dataset, model).

    Each record holds model, dataset, seed, top1, top5 (or None) and balanced_accuracy.
    """
    frame = pd.DataFrame.from_records(list(records))
    frame["top5"] = pd.to_numeric(frame["top5"])
    grouped = frame.groupby(["dataset", "model"], sort=True)
    table = grouped.agg(
        top1=("top1", "mean"),
        top1_std=("top1", "std"),
        top5=("top5", "mean"),
        balanced_accuracy=("balanced_accuracy", "mean"),
        n_seeds=("seed", "nunique"),
    )
    return table.reset_index()


def given_performance(top1: pd.DataFrame) -> pd.DataFrame:
    """A table in performance_table's columns from given top-1 accuracies (dataset, model, top1), as the
    performance table of a config that starts from similarity tables gives them: the other columns empty."""
    return top1.assign(top1_std=np.nan, top5=np.nan, balanced_accuracy=np.nan, n_seeds=np.nan)[
        ["dataset", "model", "top1", "top1_std", "top5", "balanced_accuracy", "n_seeds"]
    ]


def similarity_vs_gap(matrix: pd.DataFrame, top1: Mapping[str, float]) -> pd.DataFrame:
    """Per model pair: similarity, absolute top-1 gap and the better model's top-1."""
    order = list(matrix.index)
    pairs = model_pairs(order, order, order)
    accuracy_a = np.array([top1[a] for a, _ in pairs])
    accuracy_b = np.array([top1[b] for _, b in pairs])
    return pd.DataFrame(
        {
            "model_a": [a for a, _ in pairs],
            "model_b": [b for _, b in pairs],
            "similarity": similarity_vector(matrix, pairs),
            "gap": np.abs(accuracy_a - accuracy_b),
            "better_top1": np.maximum(accuracy_a, accuracy_b),
        }
    )


def gap_correlation(pairs: pd.DataFrame) -> float:
    """Pearson r between similarity and performance gap over model pairs (NaN if either is constant)."""
    return pearson_r(pairs["similarity"], pairs["gap"])


def top1_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """Paper App. B layout: one row per model, one column per dataset, 'mean ± std' of top-1 (in %) over seeds."""
    cells = table.assign(
        cell=[
            f"{100 * mean:.1f}" + ("" if np.isnan(std) else f" ± {100 * std:.1f}")
            for mean, std in zip(table["top1"], table["top1_std"])
        ]
    )
    wide = cells.pivot(index="model", columns="dataset", values="cell")
    return wide.loc[list(dict.fromkeys(table["model"])), list(dict.fromkeys(table["dataset"]))]
