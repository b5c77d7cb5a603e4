"""The zoo's generated training scenes: images, attributes and caption tokens."""

from simcon.io import write_npz
from simcon.logs import snakemake_job
from simcon.scenes import generate_scenes

with snakemake_job(snakemake.log[0]):
    spec = snakemake.params.scenes
    scenes = generate_scenes(spec["count"], spec["resolution"], spec["seed"])
    print(f"{len(scenes)} scenes of {spec['resolution']} px, seed {spec['seed']}")
    write_npz(snakemake.output[0], **scenes.to_arrays())
