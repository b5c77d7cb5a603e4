"""Figures of the paper, drawn with matplotlib from the workflow's tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.cluster.hierarchy import leaves_list, linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from simcon.io import atomic_path  # noqa: E402

CATEGORY_TITLES = {"objective": "Training objective", "architecture": "Architecture", "data": "Training data", "size": "Model size"}

# One colour per label, the same in every figure; labels not listed get the next free colour of tab20.
LABEL_COLOURS = {
    "Sup": "#1f77b4", "SSL": "#2ca02c", "Img-Txt": "#d62728", "Untrained": "#7f7f7f",
    "CNN": "#9467bd", "TX": "#ff7f0e",
    "IN1k": "#17becf", "IN21k": "#8c564b", "Large": "#bcbd22", "XLarge": "#e377c2", "None": "#c7c7c7",
    "small": "#aec7e8", "medium": "#6baed6", "large": "#2171b5", "xlarge": "#08306b",
}


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """A colour for each label: LABEL_COLOURS where listed, else tab20 colours in the order of first appearance."""
    spare = iter(c for c in plt.get_cmap("tab20").colors if matplotlib.colors.to_hex(c) not in LABEL_COLOURS.values())
    colours: dict[str, str] = {}
    for label in labels:
        if label not in colours:
            colours[label] = LABEL_COLOURS.get(label) or matplotlib.colors.to_hex(next(spare))
    return colours


def _grid(count: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, layout="constrained"
    )
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)


def cluster_order(matrices: Sequence[pd.DataFrame]) -> list[str]:
    """Model ids ordered by average-linkage clustering of 1 - the mean similarity matrix."""
    mean = sum(m.to_numpy() for m in matrices) / len(matrices)
    names = list(matrices[0].index)
    if len(names) < 3:
        return names
    distance = np.clip(1.0 - (mean + mean.T) / 2.0, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    order = leaves_list(linkage(squareform(distance, checks=False), method="average"))
    return [names[i] for i in order]


def similarity_matrices(matrices: Mapping[str, pd.DataFrame], metric: str) -> Figure:
    """One heatmap per dataset plus the mean and std across datasets, models in clustering order."""
    order = cluster_order(list(matrices.values()))
    panels = {name: m.loc[order, order] for name, m in matrices.items()}
    stacked = np.stack([m.to_numpy() for m in panels.values()])
    panels["mean"] = pd.DataFrame(stacked.mean(0), index=order, columns=order)
    panels["std"] = pd.DataFrame(stacked.std(0), index=order, columns=order)
    size = max(3.2, 0.22 * len(order) + 1.5)
    figure, axes = _grid(len(panels), size, size)
    for axis, (name, matrix) in zip(axes, panels.items()):
        image = axis.imshow(matrix.to_numpy(), cmap="viridis" if name != "std" else "magma")
        axis.set_title(name, fontsize=10)
        axis.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
        axis.set_yticks(range(len(order)), order, fontsize=7)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.suptitle(f"Pairwise model similarity ({metric})")
    return figure


def consistency_by_category(table: pd.DataFrame, metric: str) -> Figure:
    """Box plots of rho over dataset pairs for each model-set pair, one panel a category, sorted by median;
    the dotted line is the median and the grey band the interquartile range of (All, All)."""
    categories = [c for c in CATEGORY_TITLES if c in set(table["category"])]
    overall = table.loc[table["category"] == "all", "rho"]
    figure, axes = _grid(max(len(categories), 1), 4.5, 4.2)
    for axis, category in zip(axes, categories):
        rows = table[table["category"] == category]
        groups = {f"{a} × {b}": g["rho"].to_numpy() for (a, b), g in rows.groupby(["set_a", "set_b"], sort=False)}
        labels = sorted(groups, key=lambda k: -np.median(groups[k]))
        if len(overall):
            axis.axhspan(overall.quantile(0.25), overall.quantile(0.75), color="0.9", zorder=0)
            axis.axhline(overall.median(), color="0.3", linestyle=":", zorder=1)
        axis.boxplot([groups[k] for k in labels], tick_labels=labels, vert=True)
        axis.tick_params(axis="x", labelrotation=60, labelsize=8)
        axis.set_title(CATEGORY_TITLES[category])
        axis.set_ylabel("Pearson ρ across dataset pairs")
        axis.set_ylim(-1.05, 1.05)
    figure.suptitle(f"Consistency of similarities across datasets ({metric})")
    return figure


def similarity_vs_gap(pairs: Mapping[str, pd.DataFrame], correlations: Mapping[str, float], metric: str) -> Figure:
    """Per dataset: similarity vs absolute top-1 gap of each model pair, coloured by the better model's top-1."""
    figure, axes = _grid(len(pairs), 3.6, 3.2)
    for axis, (dataset, frame) in zip(axes, pairs.items()):
        points = axis.scatter(frame["similarity"], frame["gap"], c=frame["better_top1"], cmap="plasma", s=18, vmin=0, vmax=1)
        axis.set_title(f"{dataset}  (r = {correlations[dataset]:.2f})", fontsize=10)
        axis.set_xlabel(metric, fontsize=8)
        axis.set_ylabel("|top-1 gap|", fontsize=8)
    figure.colorbar(points, ax=axes[: len(pairs)], label="better model's top-1")
    figure.suptitle("Similarity vs performance gap")
    return figure


def save_png(figure: Figure, path: str) -> None:
    """Write a figure as PNG, atomically, and release it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
