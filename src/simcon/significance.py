"""How sure the consistency results are (beyond the paper): bootstrap confidence intervals of the median
consistency over resampled datasets, and permutation tests of "a model category drives consistency"."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from simcon.consistency import MIN_PAIRS, check_same_models, dataset_matrix
from simcon.vocabulary import MODEL_CATEGORIES

SPREAD = "std of set-pair medians"


def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian without the warning for all-NaN slices (they give NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def resampled_medians(rho: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Median of rho over the dataset pairs of each resample.

    rho: (D, D) consistency matrix of one set pair (NaN where it has no value); samples: (B, D) dataset
    indices drawn with replacement. A resample's pairs are its unordered pairs of positions; a pair of a
    dataset with itself is dropped. Returns (B,) medians, NaN for a resample without any value.
    """
    first, second = np.triu_indices(samples.shape[1], k=1)
    a, b = samples[:, first], samples[:, second]
    values = rho[a, b]
    values[a == b] = np.nan
    return _nanmedian(values, axis=1)


def bootstrap_medians(
    table: pd.DataFrame, datasets: Sequence[str], resamples: int, confidence: float, seed: int
) -> pd.DataFrame:
    """Percentile bootstrap confidence interval of the median consistency of every set pair in a
    consistency table, resampling the datasets with replacement (the same resamples for every set pair).

    Columns: category, set_a, set_b, n_dataset_pairs, median (observed), ci_low, ci_high, confidence,
    n_resamples (resamples with at least one dataset pair).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    samples = np.random.default_rng(seed).integers(0, len(datasets), size=(resamples, len(datasets)))
    rows = []
    for (category, set_a, set_b), group in table.groupby(["category", "set_a", "set_b"], sort=False):
        rho = dataset_matrix(table, category, set_a, set_b, datasets).to_numpy()
        medians = resampled_medians(rho, samples)
        medians = medians[~np.isnan(medians)]
        low, high = (
            np.quantile(medians, [(1 - confidence) / 2, (1 + confidence) / 2]) if len(medians) else (np.nan, np.nan)
        )
        rows.append((category, set_a, set_b, len(group), group["rho"].median(), low, high, confidence, len(medians)))
    columns = [
        "category",
        "set_a",
        "set_b",
        "n_dataset_pairs",
        "median",
        "ci_low",
        "ci_high",
        "confidence",
        "n_resamples",
    ]
    return pd.DataFrame(rows, columns=columns)


def pair_similarities(matrices: Mapping[str, pd.DataFrame]) -> np.ndarray:
    """(datasets × model pairs) similarities over the upper triangle of the model-by-model matrices."""
    order = check_same_models(matrices)
    upper = np.triu_indices(len(order), k=1)
    return np.stack([matrix.to_numpy()[upper] for matrix in matrices.values()])


def set_pair_medians(similarities: np.ndarray, labels: np.ndarray, codes: np.ndarray, n_labels: int) -> np.ndarray:
    """Median consistency of set pairs under many labellings at once.

    similarities: (D, P) similarities of the model pairs of triu(M, 1) per dataset; labels: (B, M) label
    indices of the models, one labelling per row; codes: the set pairs wanted, as lo * n_labels + hi for
    labels lo <= hi. Returns (B, len(codes)): per labelling and set pair, the median over dataset pairs of
    the Pearson correlation between the two datasets' similarities of the set pair's model pairs (NaN
    where a vector is constant).
    """
    first, second = np.triu_indices(labels.shape[1], k=1)
    low = np.minimum(labels[:, first], labels[:, second])
    high = np.maximum(labels[:, first], labels[:, second])
    member = (low * n_labels + high)[:, :, None] == codes[None, None, :]  # (B, P, G)
    member = np.ascontiguousarray(member.transpose(1, 0, 2).reshape(member.shape[1], -1), dtype=float)  # (P, B*G)
    centred = similarities - similarities.mean(axis=1, keepdims=True)  # Pearson is shift-invariant
    datasets = len(similarities)
    a, b = np.triu_indices(datasets, k=1)
    stacked = np.concatenate([centred, centred**2, centred[a] * centred[b]])  # (2D + dataset pairs, P)
    grouped = (stacked @ member).reshape(len(stacked), len(labels), len(codes)).transpose(1, 0, 2)  # one GEMM
    sums, squares, products = grouped[:, :datasets], grouped[:, datasets : 2 * datasets], grouped[:, 2 * datasets :]
    n = member.sum(axis=0).reshape(len(labels), 1, len(codes))
    var = n * squares - sums**2
    var = np.where(var > 1e-12 * n * squares, var, np.nan)  # a constant vector has no correlation
    rho = (n * products - sums[:, a] * sums[:, b]) / np.sqrt(var[:, a] * var[:, b])
    return _nanmedian(rho, axis=1)


def spread(medians: np.ndarray) -> np.ndarray:
    """The test statistic: population standard deviation (ddof 0) of the set-pair medians of each row."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(medians, axis=-1)


def permutation_test(
    matrices: Mapping[str, pd.DataFrame], metadata: pd.DataFrame, permutations: int, seed: int, batch: int = 32
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Permutation test, per model category, of "the category's labels drive consistency".

    Statistic: the standard deviation (ddof 0), across the category's within-category set pairs (Θ, Φ)
    with at least MIN_PAIRS model pairs, of the median over dataset pairs of rho(s(A,Θ,Φ), s(B,Θ,Φ)).
    Null: the category's labels shuffled across models (set sizes kept, so the same set pairs qualify).
    A category without two such set pairs, or whose statistic is undefined (no set pair has a median: one dataset,
    or constant similarity vectors), gets a note instead of a statistic and p-value.
    p-value: (1 + #permutations with statistic >= observed) / (1 + permutations); when `permutations`
    reaches M!, all M! orders are enumerated and p = #(statistic >= observed) / M! (exact).
    Returns the test table (one row per category) and the null distributions (category, permutation, spread).
    """
    from scipy import stats  # only this job tests; scipy.stats takes a second to import

    order = check_same_models(matrices)
    similarities = pair_similarities(matrices)
    tests, nulls = [], []
    for category, column in tqdm(MODEL_CATEGORIES.items(), desc="permutation tests"):
        labels, names = pd.factorize(metadata.loc[order, column].astype(str), sort=True)
        counts = np.bincount(labels, minlength=len(names))
        codes = np.array(
            [
                lo * len(names) + hi
                for lo in range(len(names))
                for hi in range(lo, len(names))
                if (counts[lo] * (counts[lo] - 1) // 2 if lo == hi else counts[lo] * counts[hi]) >= MIN_PAIRS
            ]
        )
        row = {"category": category, "statistic": SPREAD, "n_labels": len(names), "n_set_pairs": len(codes)}
        if len(codes) < 2:
            tests.append(
                row | {"note": f"fewer than two set pairs with at least {MIN_PAIRS} model pairs: nothing to compare"}
            )
            continue

        def statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:  # called within this iteration only
            x = np.asarray(x, dtype=int)
            flat = x.reshape(-1, x.shape[-1])
            return spread(set_pair_medians(similarities, flat, codes, len(names))).reshape(x.shape[:-1])  # noqa: B023

        if not np.isfinite(statistic(labels)):
            tests.append(row | {"note": "no set pair has a median rho (fewer than two datasets, or constant vectors)"})
            continue
        result = stats.permutation_test(
            (labels,),
            statistic,
            permutation_type="pairings",
            vectorized=True,
            n_resamples=permutations,
            batch=batch,
            alternative="greater",
            rng=np.random.default_rng(seed),
        )
        null = np.asarray(result.null_distribution)
        tests.append(
            row
            | {
                "observed": float(result.statistic),
                "null_mean": float(null.mean()),
                "p_value": float(result.pvalue),
                "n_permutations": len(null),
                "exact": permutations >= math.factorial(len(order)),
                "note": "",
            }
        )
        nulls.append(pd.DataFrame({"category": category, "permutation": np.arange(len(null)), "spread": null}))
    columns = [
        "category",
        "statistic",
        "n_labels",
        "n_set_pairs",
        "observed",
        "null_mean",
        "p_value",
        "n_permutations",
        "exact",
        "note",
    ]
    null_columns = ["category", "permutation", "spread"]
    return (
        pd.DataFrame(tests).reindex(columns=columns),
        pd.concat(nulls, ignore_index=True) if nulls else pd.DataFrame(columns=null_columns),
    )
