"""Representations of a model's layer for the images of a dataset split."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchvision import transforms
from tqdm import tqdm

from simcon.datasets import Split
from simcon.models import Model


class FeatureError(ValueError):
    """Extracted features are unusable (NaN or Inf); the message names the model and dataset."""


def preprocessing(image_size: int, crop_pct: float, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """Resize the short side to image_size / crop_pct, centre-crop image_size, scale to [0, 1], normalise."""
    return transforms.Compose(
        [
            transforms.Resize(math.floor(image_size / crop_pct), antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def _to_vectors(output: torch.Tensor) -> torch.Tensor:
    """One vector per image: (B, D) as is, (B, T, D) its first (CLS) token, (B, C, H, W) averaged over space."""
    if output.ndim == 3:
        return output[:, 0]
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    return output.flatten(1)


@torch.inference_mode()
def extract_features(
    model: Model,
    split: Split,
    indices: np.ndarray,
    *,
    image_size: int,
    crop_pct: float,
    batch_size: int,
    device: torch.device,
    normalize: bool = True,
    name: str = "",
    progress: bool = True,
) -> np.ndarray:
    """Float32 features (len(indices), d) of `model.layer` for split images `indices`, L2-normalised if `normalize`."""
    transform = preprocessing(image_size, crop_pct, model.mean, model.std)
    captured: list[torch.Tensor] = []
    hook = model.layer.register_forward_hook(lambda _m, _i, out: captured.append(_to_vectors(out).float().cpu()))
    network = model.network.to(device)
    try:
        for start in tqdm(range(0, len(indices), batch_size), desc=f"features {name}", disable=not progress):
            batch = torch.stack([transform(split.load_image(int(i))) for i in indices[start : start + batch_size]])
            network(batch.to(device))
    finally:
        hook.remove()
    features = torch.cat(captured) if captured else torch.empty(0, 0)
    if normalize:
        features = torch.nn.functional.normalize(features, dim=1)
    if not torch.isfinite(features).all():
        raise FeatureError(f"{name}: features contain NaN or Inf")
    return features.numpy().astype(np.float32, copy=False)
