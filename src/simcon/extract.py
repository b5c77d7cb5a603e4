"""Representations of a model's layer for the images of a dataset split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from simcon.datasets import SPLITS, DatasetError, Split, load_split
from simcon.device import acquire_device
from simcon.models import Model, build_model, model_transform


class FeatureError(ValueError):
    """Extracted features are unusable (NaN or Inf); the message names the model and dataset."""


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
    image_size: int | None = None,
    crop_pct: float | None = None,
    batch_size: int,
    device: torch.device,
    normalize: bool = True,
    name: str = "",
    progress: bool = True,
) -> np.ndarray:
    """Float32 features (len(indices), d) of `model.layer` for split images `indices`, L2-normalised if `normalize`.
    Images go through the model's own preprocessing; `image_size` and `crop_pct`, when given, replace its own."""
    transform = model_transform(model, image_size, crop_pct)
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


def model_dataset_features(
    model_id: str,
    model_spec: Mapping[str, Any],
    dataset_id: str,
    dataset_spec: Mapping[str, Any],
    subset: Mapping[str, Any],
    *,
    image_size: int | None,
    crop_pct: float | None,
    batch_size: int,
    device: str,
    normalize: bool,
) -> dict[str, np.ndarray]:
    """Features and labels of one model on one dataset: `train` on the subset's train indices, `test` on every
    test image, with `train_labels` and `test_labels`."""
    model = build_model(model_id, model_spec)
    arrays = {}
    with acquire_device(device) as torch_device:
        print(f"{model_id} on {dataset_id}: device {torch_device}")
        for split in SPLITS:
            data = load_split(dataset_id, dataset_spec, split)
            if split == "train" and len(data) != subset["n_train"]:
                raise DatasetError(
                    f"dataset '{dataset_id}' has {len(data)} train images but its subset was made for "
                    f"{subset['n_train']}; delete results/subsets/{dataset_id}.json to remake it"
                )
            indices = np.asarray(subset["indices"]) if split == "train" else np.arange(len(data))
            arrays[split] = extract_features(
                model,
                data,
                indices,
                image_size=image_size,
                crop_pct=crop_pct,
                batch_size=batch_size,
                device=torch_device,
                normalize=normalize,
                name=f"{model_id} on {dataset_id} ({split})",
            )
            arrays[f"{split}_labels"] = data.labels[indices]
    return arrays
