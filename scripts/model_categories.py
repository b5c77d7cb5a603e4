"""Table 1: the number of configured models in each set of each category."""

import pandas as pd

from simcon.consistency import category_counts
from simcon.io import write_csv
from simcon.logs import snakemake_job
from simcon.report import write_table_html

with snakemake_job(snakemake.log[0]):
    metadata = pd.DataFrame.from_dict(snakemake.params.metadata, orient="index")
    table = category_counts(metadata)
    print(table.to_string(index=False))
    write_csv(snakemake.output.table, table)
    write_table_html(
        snakemake.output.table_html, table, f"Number of models in each category (Table 1; {len(metadata)} models)"
    )
