"""Check that a model's `layers` resolve to modules of its network (`blocks`: its backend's stages or blocks)."""

from simcon.io import write_json
from simcon.logs import snakemake_job
from simcon.models import check_model

with snakemake_job(snakemake.log[0]):
    model_id = snakemake.wildcards.model
    layers = check_model(model_id, snakemake.params.model)["layers"]
    print(f"{model_id}: {len(layers)} layers: {', '.join(layers)}")
    write_json(snakemake.output[0], {"model": model_id, "layers": layers})
