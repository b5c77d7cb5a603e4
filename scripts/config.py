"""The run's config with every default filled in, for the report."""

import yaml

from simcon.io import atomic_path
from simcon.logs import snakemake_job

with snakemake_job(snakemake.log[0]):
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text(yaml.safe_dump(dict(snakemake.params.config), sort_keys=False))
