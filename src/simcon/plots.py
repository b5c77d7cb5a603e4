"""Figures of the paper, drawn with matplotlib from the workflow's tables."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simcon.io import atomic_path  # noqa: E402
from simcon.vocabulary import (
    ARCHITECTURE_CLASSES,
    CATEGORY_TITLES,
    DATA_CLASSES,
    MODEL_CATEGORIES,
    OBJECTIVES,
    SIZE_CLASSES,
)  # noqa: E402

GRID_COLUMNS = 4  # panels per row of multi-panel figures
# Pixels per inch of the PNGs. The report shows a figure at its pixel size (narrower than the page: scaled down to
# fit), so a 6-inch figure is 1200 px wide there, its 8-point tick labels 22 px high.
DPI = 200

# One colour per label, the same in every figure; labels not listed get the next free colour of tab20.
LABEL_COLOURS = {
    **dict(zip(OBJECTIVES, ("#1f77b4", "#2ca02c", "#d62728", "#7f7f7f"), strict=True)),
    **dict(zip(ARCHITECTURE_CLASSES, ("#9467bd", "#ff7f0e"), strict=True)),
    **dict(zip(DATA_CLASSES, ("#17becf", "#8c564b", "#bcbd22", "#e377c2", "#c7c7c7"), strict=True)),
    **dict(zip(SIZE_CLASSES, ("#aec7e8", "#6baed6", "#2171b5", "#08306b"), strict=True)),
}


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """A colour for each label: LABEL_COLOURS where listed, else tab20 colours in the order of first appearance."""
    spare = iter(c for c in plt.get_cmap("tab20").colors if matplotlib.colors.to_hex(c) not in LABEL_COLOURS.values())
    colours: dict[str, str] = {}
    for label in labels:
        if label not in colours:
            colours[label] = LABEL_COLOURS.get(label) or matplotlib.colors.to_hex(next(spare))
    return colours


def _ordered_labels(labels: Sequence[str]) -> list[str]:
    """The distinct labels, those of LABEL_COLOURS first in its order (e.g. small, medium, large, xlarge)."""
    known = list(LABEL_COLOURS)
    return sorted(set(labels), key=lambda label: (known.index(label) if label in known else len(known), label))


def _grid(count: int, width: float, height: float, columns: int = GRID_COLUMNS) -> tuple[Figure, np.ndarray]:
    columns = min(count, columns)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, layout="constrained"
    )
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)


def cluster_order(matrices: Sequence[pd.DataFrame]) -> list[str]:
    """Model ids ordered by average-linkage clustering of 1 - the mean similarity matrix."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    mean = sum(m.to_numpy() for m in matrices) / len(matrices)
    names = list(matrices[0].index)
    if len(names) < 3:
        return names
    distance = np.clip(1.0 - (mean + mean.T) / 2.0, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    order = leaves_list(linkage(squareform(distance, checks=False), method="average"))
    return [names[i] for i in order]


# Metadata columns shown as colour strips and t-SNE colourings, with their titles.
METADATA_COLUMNS = {MODEL_CATEGORIES[category]: title for category, title in CATEGORY_TITLES.items()}
MAX_TICK_LABELS = 40  # above this many models, matrices show colour strips instead of model names


def _category_strips(axis, models: Sequence[str], metadata: pd.DataFrame | None, named: bool) -> None:
    """Thin rows of metadata colours above a heatmap, one per metadata column; `named` writes their titles."""
    if metadata is None:
        return
    columns = [c for c in METADATA_COLUMNS if c in metadata.columns]
    rows = []
    for column in columns:
        labels = metadata.loc[list(models), column].astype(str)
        colours = label_colours(_ordered_labels(labels))
        rows.append([matplotlib.colors.to_rgb(colours[label]) for label in labels])
    rgb = np.array(rows)
    strip = axis.inset_axes([0.0, 1.01, 1.0, 0.06 * len(columns)])
    strip.imshow(rgb, aspect="auto", interpolation="nearest")
    strip.set_xticks([])
    strip.set_yticks(range(len(columns)), [METADATA_COLUMNS[c] for c in columns] if named else [], fontsize=6)


def _metadata_legend(figure: Figure, metadata: pd.DataFrame) -> None:
    """One legend row per metadata column, below the figure."""
    handles = []
    for column, title in METADATA_COLUMNS.items():
        if column in metadata.columns:
            colours = label_colours(_ordered_labels(metadata[column].astype(str)))
            handles.append(matplotlib.patches.Patch(color="none", label=f"{title}:"))
            handles += [matplotlib.patches.Patch(color=colour, label=label) for label, colour in colours.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize=8, frameon=False)


def similarity_matrices(
    matrices: Mapping[str, pd.DataFrame], metric: str, metadata: pd.DataFrame | None = None
) -> tuple[Figure, pd.DataFrame]:
    """One heatmap per dataset plus the mean and the std (ddof=0) across datasets, models in clustering order,
    with metadata colour strips above each heatmap. Returns the figure and its data (panel, model_a, model_b, value)."""
    order = cluster_order(list(matrices.values()))
    panels = {name: m.loc[order, order] for name, m in matrices.items()}
    stacked = np.stack([m.to_numpy() for m in panels.values()])
    panels["mean over datasets"] = pd.DataFrame(stacked.mean(0), index=order, columns=order)
    panels["std over datasets"] = pd.DataFrame(stacked.std(0), index=order, columns=order)
    similarity_range = (min(0.0, float(stacked.min())), max(1.0, float(stacked.max())))
    figure, axes = _grid(len(panels), 3.4, 3.6)
    labelled = len(order) <= MAX_TICK_LABELS
    for index, (axis, (name, matrix)) in enumerate(zip(axes, panels.items())):
        is_std = name == "std over datasets"
        vmin, vmax = (0.0, float(matrix.to_numpy().max()) or 1.0) if is_std else similarity_range
        image = axis.imshow(matrix.to_numpy(), cmap="magma" if is_std else "viridis", vmin=vmin, vmax=vmax)
        axis.set_title(name, fontsize=10, pad=4 + 16 * (metadata is not None))
        ticks = range(len(order)) if labelled else []
        fontsize = max(4.0, min(7.0, 220 / max(len(order), 1)))
        axis.set_xticks(ticks, order if labelled else [], rotation=90, fontsize=fontsize)
        axis.set_yticks(ticks, order if labelled else [], fontsize=fontsize)
        _category_strips(
            axis, order, metadata.loc[order] if metadata is not None else None, named=index % GRID_COLUMNS == 0
        )
        if is_std or name == "mean over datasets" or axis is axes[0]:
            figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="std" if is_std else metric)
    if metadata is not None:
        _metadata_legend(figure, metadata)
    figure.suptitle(f"Pairwise model similarity ({metric}), models ordered by clustering of the mean", wrap=True)
    data = pd.concat(
        [
            m.rename_axis(index="model_a", columns="model_b").stack().rename("value").reset_index().assign(panel=name)
            for name, m in panels.items()
        ],
        ignore_index=True,
    )[["panel", "model_a", "model_b", "value"]]
    return figure, data


def mean_vs_std(table: pd.DataFrame, metric: str) -> Figure:
    """Scatter of each model pair's mean against its std across datasets, one panel per transform in `table`
    (columns transform, mean, std)."""
    transforms = list(dict.fromkeys(table["transform"]))
    figure, axes = _grid(len(transforms), 3.8, 3.4)
    for axis, transform in zip(axes, transforms):
        rows = table[table["transform"] == transform]
        axis.scatter(rows["mean"], rows["std"], s=14, alpha=0.7, color="#1f77b4", linewidths=0)
        label = metric if transform == "identity" else f"{transform}({metric})"
        axis.set_xlabel(f"mean of {label}", fontsize=8)
        axis.set_ylabel(f"std of {label}", fontsize=8)
        axis.set_title(transform, fontsize=10)
    figure.suptitle(f"Mean vs std of each model pair's similarity across datasets ({metric})", wrap=True)
    return figure


def metric_means(pairs: pd.DataFrame, correlations: pd.DataFrame) -> Figure:
    """Each model pair's mean similarity under every other metric against the reference metric, with Pearson r;
    a metric without data gets a panel that says why."""
    figure, axes = _grid(max(len(correlations), 1), 3.8, 3.4)
    if correlations.empty:
        axes[0].text(0.5, 0.5, "only one metric configured:\nnothing to compare", ha="center", va="center")
        axes[0].set_axis_off()
    for axis, row in zip(axes, correlations.itertuples()):
        if row.note:
            axis.text(0.5, 0.5, f"{row.metric}:\n{row.note}", ha="center", va="center", fontsize=9, wrap=True)
            axis.set_axis_off()
            continue
        axis.scatter(pairs[row.reference], pairs[row.metric], s=14, alpha=0.7, color="#2ca02c", linewidths=0)
        axis.set_xlabel(f"mean {row.reference}", fontsize=8)
        axis.set_ylabel(f"mean {row.metric}", fontsize=8)
        axis.set_title(f"r = {_r_text(row.r)}", fontsize=10)
    figure.suptitle("Mean similarity across datasets: other metrics vs the reference", wrap=True)
    return figure


def tsne_grid(embedding: pd.DataFrame, metadata: pd.DataFrame, metric: str) -> Figure:
    """t-SNE embeddings of the models, one row per dataset and one column per metadata category, coloured by label."""
    datasets = list(dict.fromkeys(embedding["dataset"]))
    columns = [c for c in METADATA_COLUMNS if c in metadata.columns]
    figure, axes = plt.subplots(
        len(datasets),
        len(columns),
        figsize=(2.6 * len(columns), 2.4 * len(datasets) + 1.0),
        squeeze=False,
        layout="constrained",
    )
    for j, column in enumerate(columns):
        colours = label_colours(_ordered_labels(metadata[column].astype(str)))
        for i, dataset in enumerate(datasets):
            axis = axes[i, j]
            rows = embedding[embedding["dataset"] == dataset]
            labels = metadata.loc[rows["model"], column].astype(str).to_numpy()
            for label, colour in colours.items():
                chosen = labels == label
                axis.scatter(
                    rows["x"][chosen], rows["y"][chosen], s=22, color=colour, label=label, alpha=0.85, linewidths=0
                )
            axis.set_xticks([])
            axis.set_yticks([])
            if j == 0:
                axis.set_ylabel(dataset, fontsize=9)
            if i == 0:
                axis.set_title(METADATA_COLUMNS[column], fontsize=10)
            if i == len(datasets) - 1:
                axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=2, frameon=False)
    perplexity = embedding["perplexity"].iloc[0]
    figure.suptitle(
        f"t-SNE of the models from each dataset's similarities ({metric}, perplexity {perplexity:g})", wrap=True
    )
    return figure


def _r_text(r: float) -> str:
    """r to two decimals; 'n/a' where there is none (NaN)."""
    return f"{r:.2f}" if np.isfinite(r) else "n/a"


def _fit_line(axis, x: pd.Series, y: pd.Series, colour: str) -> None:
    """The least-squares line of y on x over the range of x, dashed (as the paper's regression lines)."""
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        ends = np.array([x.min(), x.max()])
        axis.plot(ends, slope * ends + intercept, ls="--", lw=1.5, color=colour)


def dataset_pair_scatter(points: pd.DataFrame, correlations: pd.DataFrame, metric: str) -> Figure:
    """Per dataset pair, each model pair's similarity on A against B: top row all pairs with their Pearson r,
    bottom row the within-objective pairs coloured, each objective with its own r (grey: pairs across objectives)."""
    overall = correlations[correlations["group"] == "All"]
    count = max(len(overall), 1)
    figure, axes = plt.subplots(2, count, figsize=(3.4 * count, 6.6), squeeze=False, layout="constrained")
    colours = label_colours(_ordered_labels([g for g in correlations["group"] if g != "All"]))
    for j, row in enumerate(overall.itertuples()):
        rows = points[(points["dataset_a"] == row.dataset_a) & (points["dataset_b"] == row.dataset_b)]
        panel = correlations[
            (correlations["dataset_a"] == row.dataset_a) & (correlations["dataset_b"] == row.dataset_b)
        ]
        r_of = panel.set_index("group")["r"]
        top, bottom = axes[0, j], axes[1, j]
        top.scatter(rows["similarity_a"], rows["similarity_b"], s=14, alpha=0.7, color="#1f77b4", linewidths=0)
        _fit_line(top, rows["similarity_a"], rows["similarity_b"], "0.3")
        top.set_title(f"{row.dataset_a} vs {row.dataset_b}\n(r = {_r_text(row.r)})", fontsize=9)
        between = rows[rows["group"] == "between objectives"]
        bottom.scatter(
            between["similarity_a"],
            between["similarity_b"],
            s=12,
            color="0.8",
            label="between objectives",
            linewidths=0,
        )
        for group, colour in colours.items():
            within = rows[rows["group"] == group]
            label = f"within {group}: r = {_r_text(r_of[group])}"
            bottom.scatter(
                within["similarity_a"], within["similarity_b"], s=16, color=colour, label=label, linewidths=0
            )
            _fit_line(bottom, within["similarity_a"], within["similarity_b"], colour)
        bottom.legend(fontsize=7, frameon=False)
        for axis in (top, bottom):
            axis.set_xlabel(f"{metric} on {row.dataset_a}", fontsize=8)
            axis.set_ylabel(f"{metric} on {row.dataset_b}", fontsize=8)
    if overall.empty:
        axes[0, 0].text(0.5, 0.5, "fewer than two datasets:\nno dataset pair to compare", ha="center", va="center")
        for axis in axes.flat:
            axis.set_axis_off()
    figure.suptitle(
        "Model-pair similarities on two datasets: all pairs (top), within each training objective (bottom)", wrap=True
    )
    return figure


def sample_size_differences(differences: pd.DataFrame, dataset: str, note: str = "") -> Figure:
    """Box plots of the absolute change in model-pair similarity between consecutive samples per class,
    one panel per metric; `note` is printed on the figure (e.g. sample sizes left out)."""
    metrics = list(dict.fromkeys(differences["metric"]))
    figure, axes = _grid(max(len(metrics), 1), 4.2, 3.4)
    if not metrics:
        axes[0].text(0.5, 0.5, note or "no sample sizes to compare", ha="center", va="center", wrap=True)
        axes[0].set_axis_off()
    for axis, metric in zip(axes, metrics):
        rows = differences[differences["metric"] == metric]
        steps = {
            f"{a}→{b}": g["abs_difference"].to_numpy() for (a, b), g in rows.groupby(["k_from", "k_to"], sort=True)
        }
        axis.boxplot(list(steps.values()), tick_labels=list(steps))
        axis.set_title(metric, fontsize=10)
        axis.set_xlabel("samples per class", fontsize=8)
        axis.set_ylabel("|Δ similarity|", fontsize=8)
        axis.tick_params(labelsize=8)
    figure.suptitle(
        f"Change of model-pair similarity with samples per class ({dataset})"
        + (f"\n{note}" if note and metrics else ""),
        wrap=True,
    )
    return figure


def consistency_by_category(table: pd.DataFrame, metric: str) -> Figure:
    """Box plots of rho over dataset pairs for each model-set pair, one panel a category, sorted by median;
    the dotted line is the median and the grey band the interquartile range of (All, All)."""
    categories = [c for c in CATEGORY_TITLES if c in set(table["category"])]
    overall = table.loc[table["category"] == "all", "rho"]
    colours = label_colours(sorted(set(table["set_a"]) | set(table["set_b"])))
    most = max([table[table["category"] == c].groupby(["set_a", "set_b"]).ngroups for c in categories], default=1)
    figure, axes = _grid(max(len(categories), 1), 5.0, 0.32 * most + 1.3, columns=2)
    for axis, category in zip(axes, categories):
        rows = table[table["category"] == category]
        groups = {key: g["rho"].to_numpy() for key, g in rows.groupby(["set_a", "set_b"], sort=False)}
        set_pair_boxes(axis, groups, overall, colours, _rho_limits(table["rho"]))
        axis.set_title(CATEGORY_TITLES[category], fontsize=10)
    figure.suptitle(f"Consistency of similarities across datasets ({metric})", wrap=True)
    return figure


def similarity_vs_gap(pairs: Mapping[str, pd.DataFrame], correlations: Mapping[str, float], metric: str) -> Figure:
    """Per dataset: similarity vs absolute top-1 gap of each model pair, coloured by the better model's top-1."""
    figure, axes = _grid(len(pairs), 3.6, 3.2)
    for axis, (dataset, frame) in zip(axes, pairs.items()):
        points = axis.scatter(
            frame["similarity"], frame["gap"], c=frame["better_top1"], cmap="plasma", s=18, vmin=0, vmax=1
        )
        axis.set_title(f"{dataset}  (r = {_r_text(correlations[dataset])})", fontsize=10)
        axis.set_xlabel(metric, fontsize=8)
        axis.set_ylabel("|top-1 gap|", fontsize=8)
    figure.colorbar(points, ax=axes[: len(pairs)], label="better model's top-1")
    figure.suptitle("Similarity vs performance gap", wrap=True)
    return figure


def save_png(figure: Figure, path: str) -> None:
    """Write a figure as PNG at DPI, atomically, and release it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, format="png")
    plt.close(figure)


def skipped(analysis: str, reason: str) -> Figure:
    """The placeholder figure of a skipped analysis (simcon.needs): its name and what it needs, in a frame."""
    figure = plt.figure(figsize=(6.0, 1.6))
    figure.patch.set_edgecolor("0.6")
    figure.patch.set_linewidth(2)
    figure.text(0.5, 0.68, f"{analysis}: skipped", ha="center", va="center", fontsize=12, weight="bold")
    figure.text(0.5, 0.34, textwrap.fill(reason, 70), ha="center", va="center", fontsize=10)
    return figure


def _colour_squares(axis, positions: Sequence[float], colour_pairs: Sequence[tuple[str, str]]) -> None:
    """Two colour squares (set_a, set_b) left of each y position, between the tick labels and the axis."""
    for column, offset in enumerate((-0.27, -0.13)):
        shift = matplotlib.transforms.ScaledTranslation(offset, 0, axis.figure.dpi_scale_trans)
        transform = matplotlib.transforms.blended_transform_factory(axis.transAxes, axis.transData) + shift
        colours = [pair[column] for pair in colour_pairs]
        axis.scatter(
            np.zeros(len(positions)), positions, c=colours, marker="s", s=45, transform=transform, clip_on=False
        )
    axis.tick_params(axis="y", pad=26)


def _rho_limits(values: pd.Series | np.ndarray) -> tuple[float, float]:
    """An x range around the values, within [-1.05, 1.05], shared by a figure's panels."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return -1.05, 1.05
    return max(-1.05, np.nanmin(values) - 0.05), min(1.05, np.nanmax(values) + 0.05)


def _overall_band(axis, overall: pd.Series) -> None:
    """The median (dotted line) and interquartile range (grey band) of the (All, All) consistency."""
    if len(overall):
        axis.axvspan(overall.quantile(0.25), overall.quantile(0.75), color="0.9", zorder=0)
        axis.axvline(overall.median(), color="0.3", linestyle=":", zorder=1)


def set_pair_boxes(
    axis,
    groups: Mapping[tuple[str, str], np.ndarray],
    overall: pd.Series,
    colours: Mapping[str, str],
    limits: tuple[float, float],
) -> None:
    """Horizontal box plots of rho per set pair, highest median on top, with colour squares per set and the
    (All, All) median and interquartile band behind."""
    keys = sorted(groups, key=lambda k: -np.median(groups[k]))
    positions = np.arange(len(keys), 0, -1)
    _overall_band(axis, overall)
    axis.boxplot(
        [groups[k] for k in keys],
        positions=positions,
        orientation="horizontal",
        widths=0.6,
        patch_artist=True,
        boxprops={"facecolor": "white"},
        medianprops={"color": "black"},
        flierprops={"markersize": 3},
    )
    axis.set_yticks(positions, [f"{a} × {b}" for a, b in keys], fontsize=8)
    _colour_squares(axis, positions, [(colours[a], colours[b]) for a, b in keys])
    axis.set_xlim(*limits)
    axis.set_xlabel("Pearson ρ over dataset pairs", fontsize=8)


def _note(axis, text: str) -> None:
    """An empty panel that says why it is empty."""
    wrapped = "\n".join(textwrap.fill(line, 45) for line in text.splitlines())
    axis.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=9, transform=axis.transAxes)
    axis.set_axis_off()


def consistency_matrices(
    panels: Mapping[str, pd.DataFrame | None], categories: Mapping[str, str], metric: str
) -> Figure:
    """Dataset × dataset heatmaps of rho on one colour scale (lowest value to 1), one per set pair (datasets in
    the matrices' order, which groups them by category): dotted lines between categories, a colour strip of
    categories on top; set pairs without values (None) are named in the title."""
    present = {title: matrix for title, matrix in panels.items() if matrix is not None}
    missing = [title for title, matrix in panels.items() if matrix is None]
    datasets = list(next(iter(present.values())).index) if present else []
    colours = label_colours([categories[d] for d in datasets])
    size = max(3.6, 0.24 * len(datasets) + 2.2)
    figure, axes = _grid(max(len(present), 1), size, size + 0.4)
    if not present:
        _note(axes[0], "None of the configured set pairs has values in this config.")
    lowest = min([np.nanmin(m.to_numpy()) for m in present.values()], default=0.0)
    norm = matplotlib.colors.Normalize(vmin=min(math.floor(lowest * 10) / 10, 0.9), vmax=1.0)
    for axis, (title, matrix) in zip(axes, present.items()):
        image = axis.imshow(matrix.to_numpy(), cmap="viridis", norm=norm)
        axis.set_title(title, fontsize=10, pad=14)
        axis.set_xticks(range(len(datasets)), datasets, rotation=90, fontsize=7)
        axis.set_yticks(range(len(datasets)), datasets, fontsize=7)
        above = matplotlib.transforms.blended_transform_factory(axis.transData, axis.transAxes)
        above += matplotlib.transforms.ScaledTranslation(0, 0.08, figure.dpi_scale_trans)
        axis.scatter(
            range(len(datasets)),
            np.ones(len(datasets)),
            c=[colours[categories[d]] for d in datasets],
            marker="s",
            s=30,
            clip_on=False,
            transform=above,
        )
        axis.set_xlim(-0.5, len(datasets) - 0.5)
        axis.set_ylim(len(datasets) - 0.5, -0.5)
        for k in range(1, len(datasets)):
            if categories[datasets[k]] != categories[datasets[k - 1]]:
                axis.axhline(k - 0.5, color="black", linestyle=":", linewidth=1)
                axis.axvline(k - 0.5, color="black", linestyle=":", linewidth=1)
        if len(datasets) <= 10:
            for (i, j), value in np.ndenumerate(matrix.to_numpy()):
                colour = "white" if norm(value) < 0.6 else "black"
                axis.text(
                    j, i, "" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour
                )
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="Pearson ρ")
    handles = [matplotlib.patches.Patch(color=c, label=name) for name, c in colours.items()]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    title = f"Consistency per dataset pair ({metric})"
    if missing:
        title += "\nno values in this config (fewer than 3 model pairs): " + ", ".join(missing)
    figure.suptitle(title, fontsize=10, wrap=True)
    return figure


def anchor_consistency(table: pd.DataFrame, metric: str) -> Figure:
    """Appendix F: one panel per anchor model, a box of rho over dataset pairs against each objective set,
    with the (All, All) median and interquartile band."""
    anchors = list(dict.fromkeys(table.loc[table["category"] == "anchor", "set_a"]))
    overall = table.loc[table["category"] == "all", "rho"]
    colours = label_colours(sorted(set(table["set_a"]) | set(table["set_b"])))
    figure, axes = _grid(max(len(anchors), 1), 5.0, 0.32 * max(len(set(table["set_b"])), 1) + 1.6, columns=3)
    if not anchors:
        _note(
            axes[0],
            "No anchor model has at least 3 model pairs with an objective set:\n"
            "list model ids under 'anchors' in the config (paper Appendix F).",
        )
    for axis, anchor in zip(axes, anchors):
        rows = table[(table["category"] == "anchor") & (table["set_a"] == anchor)]
        groups = {(anchor, b): g["rho"].to_numpy() for b, g in rows.groupby("set_b", sort=False)}
        set_pair_boxes(axis, groups, overall, colours, _rho_limits(table["rho"]))
        axis.set_title(anchor, fontsize=10)
    figure.suptitle(f"Single-model anchors against each objective set ({metric})", fontsize=10, wrap=True)
    return figure


def bootstrap_intervals(intervals: pd.DataFrame, metric: str) -> Figure:
    """Median consistency of each set pair with its bootstrap confidence interval, one panel a category;
    the dotted line and grey band are the (All, All) median and its interval."""
    overall = intervals[intervals["category"] == "all"]
    categories = [c for c in [*CATEGORY_TITLES, "anchor"] if c in set(intervals["category"])]
    colours = label_colours(sorted(set(intervals["set_a"]) | set(intervals["set_b"])))
    most = max([int((intervals["category"] == c).sum()) for c in categories], default=1)
    figure, axes = _grid(max(len(categories), 1), 5.0, 0.32 * most + 1.3, columns=2)
    if not categories:
        _note(axes[0], "No set pair besides (All, All) has a value in this config.")
    for axis, category in zip(axes, categories):
        rows = intervals[intervals["category"] == category].sort_values("median", ascending=False)
        positions = np.arange(len(rows), 0, -1)
        if len(overall):
            axis.axvspan(overall["ci_low"].iloc[0], overall["ci_high"].iloc[0], color="0.9", zorder=0)
            axis.axvline(overall["median"].iloc[0], color="0.3", linestyle=":", zorder=1)
        errors = np.vstack([rows["median"] - rows["ci_low"], rows["ci_high"] - rows["median"]])
        axis.errorbar(rows["median"], positions, xerr=errors, fmt="o", color="black", markersize=4, capsize=3)
        axis.set_yticks(positions, [f"{a} × {b}" for a, b in zip(rows["set_a"], rows["set_b"])], fontsize=8)
        axis.set_ylim(0.4, len(rows) + 0.6)
        _colour_squares(axis, positions, [(colours[a], colours[b]) for a, b in zip(rows["set_a"], rows["set_b"])])
        axis.set_xlim(*_rho_limits(intervals[["ci_low", "ci_high", "median"]].to_numpy()))
        axis.set_xlabel("median Pearson ρ over dataset pairs", fontsize=8)
        axis.set_title(CATEGORY_TITLES.get(category, "Anchors"), fontsize=10)
    level = f"{intervals['confidence'].iloc[0]:.0%} " if len(intervals) else ""
    figure.suptitle(f"Median consistency with {level}bootstrap intervals over datasets ({metric})", wrap=True)
    return figure


def permutation_nulls(tests: pd.DataFrame, nulls: pd.DataFrame, metric: str) -> Figure:
    """Per category: the permutation null distribution of the spread of set-pair medians, the observed
    value as a red line and the p-value in the title."""
    figure, axes = _grid(len(tests), 4.2, 3.0, columns=2)
    for axis, test in zip(axes, tests.itertuples()):
        title = CATEGORY_TITLES.get(test.category, test.category)
        if pd.isna(test.p_value):
            _note(axis, f"{title}:\n{test.note}")
            continue
        axis.hist(nulls.loc[nulls["category"] == test.category, "spread"].dropna(), bins=30, color="0.6")
        axis.axvline(test.observed, color="#d62728", linewidth=2, label="observed")
        axis.set_title(f"{title}: p = {test.p_value:.3g}", fontsize=10)
        axis.set_xlabel(str(test.statistic), fontsize=8)
        axis.set_ylabel("permutations", fontsize=8)
    figure.suptitle(f"Permutation tests: labels shuffled across models ({metric})", wrap=True)
    return figure


def metric_agreement(joined: pd.DataFrame, reference: str, metrics: Sequence[str]) -> Figure:
    """Appendix E: rho of each set pair and dataset pair under each metric against the reference metric,
    coloured by model category, with the identity line and Pearson r."""
    figure, axes = _grid(max(len(metrics), 1), 4.0, 3.8)
    if not metrics:
        _note(axes[0], f"Only one metric ({reference}) is configured: add metrics to compare.")
    colours = dict(zip(["all", *CATEGORY_TITLES, "anchor"], plt.get_cmap("Dark2").colors))
    for axis, metric in zip(axes, metrics):
        rows = joined[joined["metric"] == metric]
        for category, group in rows.groupby("category", sort=False):
            axis.scatter(group["rho_reference"], group["rho"], s=10, alpha=0.7, color=colours[category], label=category)
        axis.plot([-1, 1], [-1, 1], color="0.5", linestyle="--", linewidth=1)
        both = rows[["rho_reference", "rho"]].dropna()
        r = both.corr().iloc[0, 1] if len(both) > 2 else float("nan")
        axis.set_title(f"{metric}: r = {_r_text(r)} over {len(both)} points", fontsize=9)
        axis.set_xlabel(f"ρ with {reference}", fontsize=8)
        axis.set_ylabel(f"ρ with {metric}", fontsize=8)
        axis.set_xlim(-1.05, 1.05)
        axis.set_ylim(-1.05, 1.05)
        axis.legend(fontsize=7, markerscale=1.5)
    figure.suptitle("Consistency under other metrics vs the reference metric", wrap=True)
    return figure


def gap_correlations_by_category(correlations: pd.DataFrame, metric: str, order: Sequence[str]) -> Figure:
    """Appendix G: per dataset category, a box of the per-dataset Pearson r between similarity and top-1
    gap, with each dataset as a labelled point."""
    categories = [c for c in order if c in set(correlations["category"])]
    colours = label_colours(categories)
    figure, axis = plt.subplots(figsize=(6.5, 0.9 * max(len(categories), 1) + 1.4), layout="constrained")
    positions = np.arange(len(categories), 0, -1)
    groups = [correlations.loc[correlations["category"] == c, "pearson_r"].dropna().to_numpy() for c in categories]
    axis.boxplot(
        groups,
        positions=positions,
        orientation="horizontal",
        widths=0.5,
        showfliers=False,
        medianprops={"color": "black"},
    )
    for position, category in zip(positions, categories):
        rows = correlations[correlations["category"] == category].sort_values("pearson_r")
        offsets = np.linspace(-0.2, 0.2, len(rows)) if len(rows) > 1 else np.zeros(1)
        axis.scatter(rows["pearson_r"], position + offsets, color=colours[category], s=25, zorder=3)
        for (dataset, r), offset in zip(zip(rows["dataset"], rows["pearson_r"]), offsets):
            axis.annotate(
                dataset, (r, position + offset), xytext=(4, 0), textcoords="offset points", fontsize=6, va="center"
            )
    axis.set_yticks(positions, [c.replace("_", " ") for c in categories], fontsize=8)
    axis.axvline(0, color="0.5", linewidth=1)
    axis.set_xlim(-1.05, 1.05)
    axis.set_xlabel(f"Pearson r: similarity ({metric}) vs |top-1 gap|", fontsize=8)
    figure.suptitle("Similarity vs performance gap, per dataset category", wrap=True)
    return figure


MAX_LAYER_TICKS = 16  # above this many layers, a grid labels every k-th layer


def _layer_ticks(count: int) -> np.ndarray:
    """Positions of the labelled layers of a grid axis: every layer, or every k-th and the last."""
    step = math.ceil(count / MAX_LAYER_TICKS)
    return np.unique(np.append(np.arange(0, count, step), count - 1))


def layer_grids(cells: pd.DataFrame, title: str) -> Figure:
    """One heatmap per model pair of the similarity of each layer of model_a (rows, input at the bottom) with each
    layer of model_b (columns), from a long table of grid cells (simcon.layers.grid_table), on one colour scale."""
    pairs = list(cells[["model_a", "model_b"]].drop_duplicates().itertuples(index=False, name=None))
    low, high = cells["similarity"].min(), cells["similarity"].max()
    figure, axes = _grid(len(pairs), 3.4, 3.2)
    for axis, (model_a, model_b) in zip(axes, pairs):
        rows = cells[(cells["model_a"] == model_a) & (cells["model_b"] == model_b)]
        grid = rows.pivot(index="layer_a", columns="layer_b", values="similarity")
        grid = grid.loc[rows["layer_a"].drop_duplicates(), rows["layer_b"].drop_duplicates()]  # depth order
        image = axis.imshow(grid.to_numpy(), origin="lower", vmin=low, vmax=high, cmap="magma", aspect="auto")
        for setter, labels in ((axis.set_yticks, grid.index), (axis.set_xticks, grid.columns)):
            ticks = _layer_ticks(len(labels))
            setter(ticks, [labels[t] for t in ticks], fontsize=6)
        axis.tick_params(axis="x", labelrotation=90)
        axis.set_ylabel(f"{model_a} layer", fontsize=8)
        axis.set_xlabel(f"{model_b} layer", fontsize=8)
        axis.set_title(f"{model_a} × {model_b}", fontsize=9)
    figure.colorbar(image, ax=axes[: len(pairs)], label="similarity")
    figure.suptitle(f"Layer × layer similarity ({title})", wrap=True)
    return figure


def best_layer_depths(table: pd.DataFrame, metric: str) -> Figure:
    """Per objective pair, the relative depths of the best-matching layer pair of every model pair on every
    dataset (x: the model of the first objective, y: of the second; jittered slightly); the corner (1, 1) is the
    pair of representation layers."""
    order = {
        objective: i
        for i, objective in enumerate(_ordered_labels(table["objective_a"].tolist() + table["objective_b"].tolist()))
    }
    swap = table["objective_a"].map(order) > table["objective_b"].map(order)
    oriented = table.copy()
    for left, right in (("objective_a", "objective_b"), ("depth_a", "depth_b")):
        oriented.loc[swap, [left, right]] = table.loc[swap, [right, left]].to_numpy()
    groups = list(oriented.groupby(["objective_a", "objective_b"], sort=False))
    groups.sort(key=lambda item: (order[item[0][0]], order[item[0][1]]))
    figure, axes = _grid(max(len(groups), 1), 3.0, 3.0)
    if not groups:
        _note(axes[0], "no model pairs: fewer than two models with layers")
    jitter = np.random.default_rng(0)
    for axis, ((objective_a, objective_b), rows) in zip(axes, groups):
        at_representation = ((rows["depth_a"] == 1.0) & (rows["depth_b"] == 1.0)).mean()
        axis.plot([0, 1], [0, 1], color="0.8", linewidth=1, zorder=0)
        axis.scatter(
            rows["depth_a"] + jitter.uniform(-0.015, 0.015, len(rows)),
            rows["depth_b"] + jitter.uniform(-0.015, 0.015, len(rows)),
            s=12,
            alpha=0.5,
            color=LABEL_COLOURS.get(objective_a, "0.3"),
        )
        axis.set_xlim(0, 1.05)
        axis.set_ylim(0, 1.05)
        axis.set_xlabel(f"{objective_a} model: relative depth", fontsize=8)
        axis.set_ylabel(f"{objective_b} model: relative depth", fontsize=8)
        axis.set_title(f"{objective_a} × {objective_b}: {at_representation:.0%} at (1, 1)", fontsize=9)
    figure.suptitle(f"Where the best-matching layer pairs lie ({metric})", wrap=True)
    return figure


def consistency_by_depth(summary: pd.DataFrame, metric: str) -> Figure:
    """Median consistency (line) and interquartile range (band) over dataset pairs against the relative depth of
    each depth bin's centre, one line per set pair of a summarise_by_depth table (All dashed grey)."""
    figure, axis = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    sets = _ordered_labels(summary["set_a"].tolist())
    colours = label_colours(sets)
    for name in sets:
        rows = summary[summary["set_a"] == name].sort_values("centre")
        style = {"color": "0.4", "linestyle": "--"} if name == "All" else {"color": colours[name]}
        axis.fill_between(rows["centre"], rows["q25"], rows["q75"], alpha=0.15, color=style["color"], linewidth=0)
        axis.plot(rows["centre"], rows["median"], marker="o", label=f"{name} × {name}", **style)
    if summary.empty:
        _note(axis, "no values: consistency needs two datasets and three model pairs of a set")
    else:
        axis.legend(fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("relative depth (bin centre; 1 = representation layer)", fontsize=9)
    axis.set_ylabel("Pearson ρ over dataset pairs", fontsize=9)
    axis.set_title(f"Consistency across datasets by relative depth ({metric})", fontsize=10)
    return figure
