"""Train one zoo model (architecture, objective, seed) on the generated scenes; save its backbone."""

import time

import numpy as np
import torch

from simcon.io import atomic_path, write_json
from simcon.logs import snakemake_job
from simcon.scenes import Scenes
from simcon.zoo import TrainingSettings, build_backbone, count_parameters, train

with snakemake_job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    torch.use_deterministic_algorithms(True)
    model_id, params = snakemake.wildcards.zoo_model, snakemake.params
    settings = TrainingSettings(**{**params.training, "crop_scale": tuple(params.training["crop_scale"])})
    with np.load(snakemake.input.scenes) as arrays:
        scenes = Scenes.from_arrays(arrays)
    backbone = build_backbone(params.architecture["name"], params.architecture["kwargs"], params.seed)
    start = time.process_time()
    losses = train(backbone, params.objective, scenes, settings, params.seed, name=model_id)
    seconds = time.process_time() - start
    print(f"{model_id}: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {seconds:.0f} s of CPU time")
    with atomic_path(snakemake.output.checkpoint) as tmp:
        torch.save({"state_dict": backbone.state_dict()}, tmp)
    write_json(
        snakemake.output.history,
        {
            "model": model_id,
            "objective": params.objective,
            "seed": params.seed,
            "parameters": count_parameters(backbone),
            "epoch_losses": losses,
            "cpu_seconds": seconds,
        },
    )
