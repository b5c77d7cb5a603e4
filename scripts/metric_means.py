"""Fig. 3 (centre, right): mean similarity across datasets under each metric vs the reference metric."""

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.report import write_table_html
from simcon.structure import PAPER_METRICS, mean_matrix, metric_means

with analysis_job(snakemake):
    params = snakemake.params
    by_metric = {metric: read_matrices(snakemake.input, metric, params.datasets) for metric in params.metrics}
    means = {metric: mean_matrix(matrices) for metric, matrices in by_metric.items()}
    pairs, correlations = metric_means(means, params.reference, PAPER_METRICS)
    print(correlations.to_string(index=False))
    write_csv(snakemake.output.data, pairs)
    write_csv(snakemake.output.correlations, correlations)
    write_table_html(
        snakemake.output.correlations_html, correlations, "Mean similarity: Pearson r with the reference metric"
    )
    plots.save_png(plots.metric_means(pairs, correlations), snakemake.output.figure)
