"""The zoo's training summary with the in-domain probe check, and its similarity within vs across objectives."""

import itertools

import pandas as pd

from simcon.io import read_json, read_matrices, write_csv
from simcon.logs import snakemake_job
from simcon.zoo import objective_similarity, zoo_summary

with snakemake_job(snakemake.log[0]):
    params = snakemake.params
    members = {model: tuple(member) for model, member in params.members.items()}
    summary = zoo_summary(
        [read_json(path) for path in snakemake.input.histories],
        members,
        params.twins,
        pd.read_csv(snakemake.input.performance),
        params.in_domain,
    )
    print(summary.to_string())
    write_csv(snakemake.output.summary, summary)
    rows = []
    for dataset, metric in itertools.product(params.datasets, params.metrics):
        means = objective_similarity(read_matrices(snakemake.input, metric, [dataset])[dataset], members)
        rows.append({"dataset": dataset, "metric": metric, **means})
    table = pd.DataFrame(rows)
    print(table.to_string())
    write_csv(snakemake.output.objective_similarity, table)
