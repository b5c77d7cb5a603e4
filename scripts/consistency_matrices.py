"""Dataset × dataset consistency matrices of chosen set pairs, datasets sorted by category (paper Fig. 7)."""

from simcon import plots
from simcon.consistency import dataset_matrices, read_consistency, sort_by_category
from simcon.io import write_csv
from simcon.logs import analysis_job

with analysis_job(snakemake):
    params = snakemake.params
    table = read_consistency(snakemake.input.consistency)
    datasets = sort_by_category(params.datasets, params.categories)
    matrices, long = dataset_matrices(table, params.set_pairs, datasets)
    for title, matrix in matrices.items():
        print(f"{title}: " + ("no values in this config" if matrix is None else f"{len(matrix)} datasets"))
    write_csv(snakemake.output.table, long)
    figure = plots.consistency_matrices(matrices, params.categories, snakemake.wildcards.metric)
    plots.save_png(figure, snakemake.output.figure)
