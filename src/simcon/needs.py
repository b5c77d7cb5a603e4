"""What each analysis needs of a run, and what a skipped analysis writes.

An analysis that needs more than the run has (consistency needs two datasets and three model pairs) is not left
out of the workflow: its job runs, and writes every output as a placeholder that says what the analysis needs
(`write_skipped`), so that the DAG and the report are the same for every config and `snakemake --report` finds
every file it shows. Whether an analysis runs is known when the workflow parses (`unmet_needs`, from the counts
of the config); the few needs that only the data show (the class sizes of the sample-size analysis) are decided
by the job, which writes the same placeholders.

Torch-free, and imports neither numpy nor pandas at module level: the workflow asks it while it parses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

COUNTED = {
    "datasets": ("dataset", "datasets"),
    "models": ("model", "models"),
    "metrics": ("metric", "metrics"),
    "anchors": ("anchor model", "anchor models"),
    "per_k_datasets": ("per-k dataset", "per-k datasets"),
    "layer_models": ("model with layers", "models with layers"),
}
"""What a run is counted by (the keys of its counts), with the singular and plural of each in a message."""

# Consistency (Pearson rho of two datasets' similarity vectors) needs two datasets and three model pairs;
# a Pearson r over model pairs needs three pairs, and so three models.
_CONSISTENCY = {"datasets": 2, "models": 3}

NEEDS: dict[str, dict[str, int]] = {
    "mean_vs_std": {"datasets": 2, "models": 2},
    "metric_means": {"metrics": 2, "models": 3},
    "tsne": {"models": 3},
    "dataset_pairs": _CONSISTENCY,
    "headline_consistency": _CONSISTENCY,
    "sample_size": {"models": 2},
    "sample_size_per_k_datasets": {"per_k_datasets": 2, "models": 2},
    "consistency": _CONSISTENCY,
    "consistency_anchors": {**_CONSISTENCY, "anchors": 1},
    "consistency_matrices": _CONSISTENCY,
    # resamples of two datasets hold one dataset pair or none: an interval of width 0
    "consistency_bootstrap": {**_CONSISTENCY, "datasets": 3},
    # a category is tested with two set pairs of three model pairs each: the fewest models that form them are 4
    "permutation_test": {**_CONSISTENCY, "models": 4},
    "consistency_metrics": {**_CONSISTENCY, "metrics": 2},
    "similarity_vs_performance": {"models": 3},
    "layer_best_pairs": {"layer_models": 2},
    "layer_consistency": {"datasets": 2, "layer_models": 3},
}
"""The least each analysis (by rule name) needs of the run's counts (COUNTED). An analysis reads the outputs of
another only where it needs at least as much, so a skipped analysis's placeholders are never read as results."""

SKIPPED_COLUMN = "skipped"
"""The one column of a skipped analysis's tables; its one row says what the analysis needs."""


def _count(what: str, number: int) -> str:
    singular, plural = COUNTED[what]
    return f"{number} {singular if number == 1 else plural}"


def unmet_needs(analysis: str, counts: Mapping[str, int]) -> str:
    """Why `analysis` is skipped on a run with these counts ('needs at least 2 datasets; this run has 1 dataset'),
    or '' when the run has what it needs."""
    unmet = {what: least for what, least in NEEDS[analysis].items() if counts[what] < least}
    if not unmet:
        return ""
    needed = " and ".join(_count(what, least) for what, least in unmet.items())
    has = " and ".join(_count(what, counts[what]) for what in unmet)
    return f"needs at least {needed}; this run has {has}"


def skipped_analyses(counts: Mapping[str, int]) -> dict[str, str]:
    """unmet_needs of every analysis of NEEDS: rule name -> reason ('' for those that run)."""
    return {analysis: unmet_needs(analysis, counts) for analysis in NEEDS}


def write_skipped(outputs: Iterable[str | os.PathLike], analysis: str, reason: str) -> None:
    """Write every output of a skipped job as a placeholder that says why, and print the reason (to the job's log):
    a table (.csv) with the one column SKIPPED_COLUMN, an HTML page of that table, a figure (.png) with the text."""
    import pandas as pd

    from simcon import plots
    from simcon.io import write_csv
    from simcon.report import write_table_html

    line = f"{analysis} skipped: {reason}"
    print(line)
    table = pd.DataFrame({SKIPPED_COLUMN: [line]})
    for path in map(str, outputs):
        if path.endswith(".csv"):
            write_csv(path, table)
        elif path.endswith(".html"):
            write_table_html(path, table, f"{analysis}: skipped")
        elif path.endswith(".png"):
            plots.save_png(plots.skipped(analysis, reason), path)
        else:
            raise ValueError(f"no placeholder for the output {path} of {analysis}")
