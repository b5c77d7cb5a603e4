"""Check that a model's backend knows it, its weights can be found and its network has the configured layer."""

from simcon.io import write_json
from simcon.logs import snakemake_job
from simcon.models import check_model

with snakemake_job(snakemake.log[0]):
    model_id = snakemake.wildcards.model
    found = check_model(model_id, snakemake.params.model)
    print(f"{model_id}: layer {found['layer']!r} is a {found['layer_type']}; {found['parameters']:,} parameters")
    write_json(snakemake.output[0], {"model": model_id, **found})
