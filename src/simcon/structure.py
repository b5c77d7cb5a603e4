"""Structure of similarity matrices across datasets and metrics (paper Sec. 4.2-4.4, Appendices C and D).

The analyses take model-by-model similarity matrices (DataFrames with model ids as index and columns,
the same models in the same order) keyed by dataset or metric, and return tidy tables; App. C's
analogue on one dataset recomputes similarities from features on class-stratified subsets.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from simcon import datasets
from simcon.consistency import check_same_models, consistency, pearson_r
from simcon.formats import to_long
from simcon.metrics import get_metric

# Transforms of Appendix D: both stretch the range near the upper bound 1 of CKA.
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda s: s,
    "arccos": lambda s: np.arccos(np.clip(s, -1.0, 1.0)),
    "tan": np.tan,
}
# Fig. 3 compares the paper's local and second global metric with its reference (simcon.metrics.REFERENCE_METRIC).
PAPER_METRICS = ("cka_rbf0.4_unbiased", "rsa_correlation_spearman")
# The paper's t-SNE perplexity (its code: sklearn TSNE, perplexity 5, random init, seed 42).
TSNE_PERPLEXITY = 5.0
TSNE_SEED = 42


def pair_similarities(matrices: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per unordered model pair (model_a before model_b in matrix order), one column per key of `matrices`."""
    order = check_same_models(matrices)
    rows, cols = np.triu_indices(len(order), k=1)
    table = pd.DataFrame({"model_a": np.asarray(order)[rows], "model_b": np.asarray(order)[cols]})
    for key, matrix in matrices.items():
        table[key] = matrix.to_numpy()[rows, cols]
    return table


def mean_std(matrices: Mapping[str, pd.DataFrame], transforms: Sequence[str] = ("identity",)) -> pd.DataFrame:
    """Per model pair and transform: mean and standard deviation (ddof=0, as the paper's code) across
    datasets of the transformed similarity. Columns: transform, model_a, model_b, mean, std."""
    pairs = pair_similarities(matrices)
    values = pairs[list(matrices)].to_numpy()
    frames = []
    for name in transforms:
        transformed = TRANSFORMS[name](values)
        frames.append(
            pairs[["model_a", "model_b"]]
            .assign(mean=transformed.mean(axis=1), std=transformed.std(axis=1, ddof=0))
            .assign(transform=name)
        )
    return pd.concat(frames, ignore_index=True)[["transform", "model_a", "model_b", "mean", "std"]]


def mean_matrix(matrices: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The element-wise mean of the matrices."""
    order = check_same_models(matrices)
    return pd.DataFrame(np.mean([m.to_numpy() for m in matrices.values()], axis=0), index=order, columns=order)


def metric_means(
    means: Mapping[str, pd.DataFrame], reference: str, expected: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean similarity (across datasets) of each model pair under every metric, and the Pearson r of each
    metric's mean similarities with the reference metric's.

    `means` maps metric to its mean matrix. Returns (pairs, correlations): pairs has model_a, model_b
    and one column per metric; correlations has metric, reference, n_pairs, r, note, with a row for every
    metric besides the reference and for every metric in `expected` that `means` lacks (r empty, note
    'not configured').
    """
    if reference not in means:
        raise ValueError(f"reference metric '{reference}' is not among the metrics {list(means)}")
    pairs = pair_similarities(means)
    rows = []
    for metric in means:
        if metric == reference:
            continue
        r = pearson_r(pairs[reference], pairs[metric])
        note = "" if np.isfinite(r) else "fewer than 3 model pairs or a constant vector"
        rows.append({"metric": metric, "reference": reference, "n_pairs": len(pairs), "r": r, "note": note})
    for metric in expected:
        if metric not in means and metric != reference:
            rows.append({"metric": metric, "reference": reference, "n_pairs": 0, "r": np.nan, "note": "not configured"})
    return pairs, pd.DataFrame(rows, columns=["metric", "reference", "n_pairs", "r", "note"])


def dataset_consistency(matrices: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Pearson rho between the all-model-pair similarity vectors of every dataset pair.
    Columns: dataset_a, dataset_b, n_pairs, rho."""
    order = check_same_models(matrices)
    table = consistency(matrices, {"all": {"All": order}})
    return table[["dataset_a", "dataset_b", "n_pairs", "rho"]]


def headline(matrices_by_metric: Mapping[str, Mapping[str, pd.DataFrame]]) -> pd.DataFrame:
    """Sec. 4.4's headline per metric: mean and standard deviation (ddof=1) of rho over all dataset pairs,
    all models. Columns: metric, n_models, n_datasets, n_dataset_pairs, mean_rho, std_rho."""
    rows = []
    for metric, matrices in matrices_by_metric.items():
        rho = dataset_consistency(matrices)["rho"]
        rows.append(
            {
                "metric": metric,
                "n_models": len(check_same_models(matrices)),
                "n_datasets": len(matrices),
                "n_dataset_pairs": len(rho),
                "mean_rho": rho.mean(),
                "std_rho": rho.std(ddof=1),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "n_models", "n_datasets", "n_dataset_pairs", "mean_rho", "std_rho"])


def choose_dataset_pairs(rho: pd.DataFrame) -> list[tuple[str, str]]:
    """The most consistent, the median and the least consistent dataset pair of a `dataset_consistency` table
    (fewer when there are fewer pairs), most consistent first."""
    ranked = rho.sort_values("rho", ascending=False, kind="stable").reset_index(drop=True)
    positions = sorted({0, (len(ranked) - 1) // 2, len(ranked) - 1}) if len(ranked) else []
    return [(ranked.at[i, "dataset_a"], ranked.at[i, "dataset_b"]) for i in positions]


def dataset_pair_scatter(
    matrices: Mapping[str, pd.DataFrame], dataset_pairs: Sequence[tuple[str, str]], objective: Mapping[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each model pair's similarity on dataset A against dataset B, for the given dataset pairs (Fig. 5).

    Returns (points, correlations): points has dataset_a, dataset_b, model_a, model_b, similarity_a,
    similarity_b and group (the shared objective of a within-objective pair, else 'between objectives');
    correlations has dataset_a, dataset_b, group, n_pairs, r: per dataset pair, the Pearson r over all model
    pairs (group 'All', Fig. 5's top row), then over each objective's within-objective pairs (group the
    objective, alphabetically, the bottom row; r NaN with fewer than MIN_PAIRS pairs or a constant vector).
    """
    for dataset in {d for pair in dataset_pairs for d in pair}:
        if dataset not in matrices:
            raise ValueError(
                f"dataset pair names '{dataset}', which has no similarity matrix; datasets: {list(matrices)}"
            )
    pairs = pair_similarities(matrices)
    models = check_same_models(matrices)
    missing = [model for model in models if model not in objective]
    if missing:
        raise ValueError(f"no objective for model(s) {missing}")
    objective_a, objective_b = pairs["model_a"].map(objective), pairs["model_b"].map(objective)
    group = objective_a.where(objective_a == objective_b, "between objectives")
    groups = {"All": np.ones(len(pairs), dtype=bool)} | {
        name: (group == name).to_numpy() for name in sorted({objective[model] for model in models})
    }
    points, correlations = [], []
    for a, b in dataset_pairs:
        points.append(
            pd.DataFrame(
                {
                    "dataset_a": a,
                    "dataset_b": b,
                    "model_a": pairs["model_a"],
                    "model_b": pairs["model_b"],
                    "similarity_a": pairs[a],
                    "similarity_b": pairs[b],
                    "group": group,
                }
            )
        )
        for name, chosen in groups.items():
            r = pearson_r(pairs[a][chosen], pairs[b][chosen])
            correlations.append({"dataset_a": a, "dataset_b": b, "group": name, "n_pairs": int(chosen.sum()), "r": r})
    point_columns = ["dataset_a", "dataset_b", "model_a", "model_b", "similarity_a", "similarity_b", "group"]
    return (
        pd.concat(points, ignore_index=True) if points else pd.DataFrame(columns=point_columns),
        pd.DataFrame(correlations, columns=["dataset_a", "dataset_b", "group", "n_pairs", "r"]),
    )


def tsne_perplexity(n_models: int) -> float:
    """The paper's perplexity 5, lowered to n_models - 1 where there are too few models (t-SNE needs perplexity < n)."""
    if n_models < 2:
        raise ValueError(f"t-SNE needs at least 2 models, got {n_models}")
    return min(TSNE_PERPLEXITY, n_models - 1.0)


def tsne_embedding(matrices: Mapping[str, pd.DataFrame], seed: int = TSNE_SEED) -> pd.DataFrame:
    """2-d t-SNE of the models from each dataset's matrix, on the distance 1 - similarity (clipped at 0).
    Columns: dataset, model, x, y, perplexity."""
    from sklearn.manifold import TSNE  # scikit-learn only for the t-SNE job

    order = check_same_models(matrices)
    perplexity = tsne_perplexity(len(order))
    frames = []
    for dataset, matrix in matrices.items():
        distance = np.clip(1.0 - (matrix.to_numpy() + matrix.to_numpy().T) / 2.0, 0.0, None)
        np.fill_diagonal(distance, 0.0)
        tsne = TSNE(n_components=2, perplexity=perplexity, metric="precomputed", init="random", random_state=seed)
        xy = tsne.fit_transform(distance)
        frames.append(
            pd.DataFrame({"dataset": dataset, "model": order, "x": xy[:, 0], "y": xy[:, 1], "perplexity": perplexity})
        )
    return pd.concat(frames, ignore_index=True)


def per_class_subset(labels: np.ndarray, samples_per_class: int, seed: int, nested: bool = False) -> np.ndarray:
    """Sorted indices of `samples_per_class` random samples of each class: drawn for this size alone (from a
    generator seeded with seed and the size), or, nested, the first of one permutation per class fixed by `seed`,
    so that a smaller subset lies inside a larger one. ValueError if a class has fewer samples."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if samples_per_class > counts.min():
        raise ValueError(
            f"{samples_per_class} samples per class requested, but class {classes[counts.argmin()].item()!r} has {counts.min()}"
        )
    return datasets.per_class_subset(labels, samples_per_class, seed, nested)


def usable_sample_sizes(labels: np.ndarray, samples_per_class: Sequence[int], metrics: Sequence[str]) -> list[int]:
    """The k of `samples_per_class`, sorted, that every class has and that give every metric the samples it needs."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    needed = max(get_metric(metric).min_samples for metric in metrics)
    return [k for k in sorted(samples_per_class) if k <= counts.min() and k * len(counts) >= needed]


def unmet_sample_sizes(labels: np.ndarray, samples_per_class: Sequence[int], metrics: Sequence[str]) -> str:
    """Why the sample-size analysis of one dataset is skipped (it compares consecutive sizes, so it needs two usable
    ones), or '' when at least two k of `samples_per_class` are usable (usable_sample_sizes)."""
    usable = usable_sample_sizes(labels, samples_per_class, metrics)
    if len(usable) >= 2:
        return ""
    smallest = int(np.unique(np.asarray(labels), return_counts=True)[1].min())
    return (
        f"needs at least 2 of samples_per_class {sorted(samples_per_class)} that every class has and that give each "
        f"metric its minimum of samples; {usable or 'none'} of them here, where the smallest class of the "
        f"similarity subset has {smallest} images"
    )


def similarity_by_sample_size(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    samples_per_class: Sequence[int],
    metrics: Sequence[str],
    seed: int,
    device: str = "cpu",
    nested: bool = False,
) -> tuple[pd.DataFrame, list[int]]:
    """Every model pair's similarity under each metric on class-stratified subsets of the samples, k samples per
    class for each k in `samples_per_class` (the analogue of Appendix C on one dataset), each k drawn alone or,
    `nested`, all from one permutation per class (per_class_subset).

    Returns (similarities, skipped): similarities has metric, samples_per_class, model_a, model_b,
    similarity; skipped lists the k larger than the smallest class, or too few samples for a metric.
    """
    from simcon.similarity import compute_similarity  # torch only for the jobs that compute similarities

    usable = usable_sample_sizes(labels, samples_per_class, metrics)
    frames = []
    for k in usable:
        index = per_class_subset(labels, k, seed, nested)
        subset = {model: array[index] for model, array in features.items()}
        for metric in metrics:
            matrix = compute_similarity(subset, metric, device=device).matrix
            frames.append(to_long(matrix).assign(metric=metric, samples_per_class=k))
    columns = ["metric", "samples_per_class", "model_a", "model_b", "similarity"]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return table, [k for k in sorted(samples_per_class) if k not in usable]


def sample_size_differences(similarities: pd.DataFrame) -> pd.DataFrame:
    """Absolute change of each model pair's similarity between consecutive sample sizes (Appendix C).

    `similarities` has metric, samples_per_class, model_a, model_b, similarity. Returns metric, k_from,
    k_to, model_a, model_b, abs_difference, for each metric and each consecutive pair of its sample sizes.
    """
    frames = []
    for metric, rows in similarities.groupby("metric", sort=False):
        wide = rows.pivot(index=["model_a", "model_b"], columns="samples_per_class", values="similarity")
        ks = sorted(wide.columns)
        for k_from, k_to in itertools.pairwise(ks):
            change = (wide[k_to] - wide[k_from]).abs().rename("abs_difference").reset_index()
            frames.append(change.assign(metric=metric, k_from=k_from, k_to=k_to))
    columns = ["metric", "k_from", "k_to", "model_a", "model_b", "abs_difference"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
