"""Permutation tests: does each model category's labelling drive the spread of median consistency?"""

import pandas as pd

from simcon import plots
from simcon.io import read_matrices, write_csv
from simcon.logs import analysis_job
from simcon.significance import permutation_test

with analysis_job(snakemake):
    params = snakemake.params
    matrices = read_matrices(snakemake.input, snakemake.wildcards.metric, params.datasets)
    metadata = pd.DataFrame.from_dict(params.metadata, orient="index")
    tests, nulls = permutation_test(matrices, metadata, params.options["permutations"], params.options["seed"])
    print(tests.to_string())
    write_csv(snakemake.output.table, tests)
    write_csv(snakemake.output.null, nulls)
    plots.save_png(plots.permutation_nulls(tests, nulls, snakemake.wildcards.metric), snakemake.output.figure)
