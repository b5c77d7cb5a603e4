"""Single-model anchor sets against each objective set (paper Appendix F)."""

from simcon import plots
from simcon.consistency import read_consistency
from simcon.io import write_csv
from simcon.logs import analysis_job

with analysis_job(snakemake):
    table = read_consistency(snakemake.input.consistency)
    plotted = table[table["category"].isin(["all", "anchor"])]
    write_csv(snakemake.output.table, plotted)
    plots.save_png(plots.anchor_consistency(plotted, snakemake.wildcards.metric), snakemake.output.figure)
