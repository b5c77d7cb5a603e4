"""Fig. 5: each model pair's similarity on dataset A vs dataset B, for chosen (or the most, median and least
consistent) dataset pairs, with the Pearson r of all model pairs and of each objective's within-objective pairs."""

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.report import write_table_html
from simcon.structure import choose_dataset_pairs, dataset_consistency, dataset_pair_scatter

with analysis_job(snakemake):
    params = snakemake.params
    matrices = read_matrices(snakemake.input, snakemake.wildcards.metric, params.datasets)
    chosen = [tuple(pair) for pair in params.dataset_pairs] or choose_dataset_pairs(dataset_consistency(matrices))
    print(f"dataset pairs: {chosen}")
    points, correlations = dataset_pair_scatter(matrices, chosen, params.objective)
    write_csv(snakemake.output.data, points)
    write_csv(snakemake.output.correlations, correlations)
    write_table_html(
        snakemake.output.correlations_html,
        correlations,
        f"Model-pair similarities on two datasets: Pearson r of all pairs and within each objective ({snakemake.wildcards.metric})",
    )
    plots.save_png(
        plots.dataset_pair_scatter(points, correlations, snakemake.wildcards.metric), snakemake.output.figure
    )
