"""Representations of a model's layer for the images of a dataset split, and the feature files of a
(model, dataset) job: every train and every test image, extracted once through a DataLoader.

Feature files (one folder per model and dataset): `train.npy` and `test.npy`, float32 (n, d), row i the
features of image i of the full split, memory-mappable; `train_labels.npy` and `test_labels.npy`, int64;
`info.json`, what produced them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from simcon.datasets import SPLITS, Split, load_split
from simcon.device import acquire_device
from simcon.io import atomic_path, write_json
from simcon.models import Model, build_model, model_transform

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FEATURE_FILES = ("train", "test", "train_labels", "test_labels", "info")


class FeatureError(ValueError):
    """Extracted features are unusable (NaN or Inf, or no vector per image); the message names the model and dataset."""


def image_transform(
    model: Model, image_size: int | None, crop_pct: float | None
) -> Callable[[Image.Image], torch.Tensor]:
    """The per-image transform (PIL image to normalised tensor) every extraction uses for `model`."""
    return model_transform(model, image_size, crop_pct)


class SplitImages(Dataset):
    """The transformed images `indices` of a split, item j being image indices[j]."""

    def __init__(self, split: Split, indices: np.ndarray, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.split, self.indices, self.transform = split, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.transform(self.split.load_image(int(self.indices[j])))


def image_loader(images: SplitImages, *, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches of `images` in order (batch k holds items k*batch_size ...), decoded and transformed by `workers`
    worker processes (none: in this process). Workers take whole batches in turn, so each reads consecutive
    images: consecutive files of a folder, a consecutive byte range of a webdataset shard. Workers are forked,
    so splits and transforms need not be picklable and in-memory splits are shared, not copied."""
    return DataLoader(
        images,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        multiprocessing_context="fork" if workers else None,
    )


def _to_vectors(output: torch.Tensor) -> torch.Tensor:
    """One vector per image: (B, D) as is, (B, T, D) its first (CLS) token, (B, C, H, W) averaged over space."""
    if output.ndim == 3:
        return output[:, 0]
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    return output.flatten(1)


@torch.inference_mode()
def feature_batches(
    model: Model,
    split: Split,
    indices: np.ndarray,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    device: torch.device,
    normalize: bool = True,
    precision: str = "float32",
    workers: int = 0,
    name: str = "",
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Float32 features of `model.layer` for split images `indices`, one (batch, d) array per batch in order,
    L2-normalised if `normalize`. The forward runs under autocast to `precision` unless it is float32; the
    features are float32 either way. Raises FeatureError on NaN or Inf, or when the layer does not give one
    vector per image."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    cuda = device.type == "cuda"
    captured: list[torch.Tensor] = []
    hook = model.layer.register_forward_hook(lambda _m, _i, out: captured.append(_to_vectors(out)))
    network = model.network.to(device)
    loader = image_loader(
        SplitImages(split, indices, transform), batch_size=batch_size, workers=workers, pin_memory=cuda
    )
    autocast = torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "float32")
    try:
        with tqdm(total=len(indices), desc=f"features {name}", unit="img", disable=not progress) as bar:
            for batch in loader:
                captured.clear()
                with autocast:
                    network(batch.to(device, non_blocking=cuda))
                if len(captured) != 1 or len(captured[0]) != len(batch):
                    raise FeatureError(
                        f"{name}: the layer gave {len(captured)} outputs for a batch, not one vector per image"
                    )
                features = captured[0].float()
                if normalize:
                    features = torch.nn.functional.normalize(features, dim=1)
                if not torch.isfinite(features).all():
                    raise FeatureError(f"{name}: features contain NaN or Inf")
                bar.update(len(batch))
                yield features.cpu().numpy()
    finally:
        hook.remove()


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
    precision: str = "float32",
    workers: int = 0,
    name: str = "",
    progress: bool = True,
) -> np.ndarray:
    """Float32 features (len(indices), d) of `model.layer` for split images `indices`, in memory (see
    feature_batches). Images go through the model's own preprocessing; `image_size` and `crop_pct`, when
    given, replace its own."""
    batches = feature_batches(
        model,
        split,
        indices,
        image_transform(model, image_size, crop_pct),
        batch_size=batch_size,
        device=device,
        normalize=normalize,
        precision=precision,
        workers=workers,
        name=name,
        progress=progress,
    )
    return np.concatenate(list(batches)) if len(indices) else np.empty((0, 0), dtype=np.float32)


def write_split_features(path: str | os.PathLike, batches: Iterator[np.ndarray], n: int, name: str = "") -> int:
    """Write the (n, d) features `batches` yields to the .npy file `path` batch by batch (memory-mapped, never
    whole in memory), atomically; the width d."""
    with atomic_path(path) as tmp:
        array, row = None, 0
        for features in batches:
            if array is None:
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, features.shape[1]))
            array[row : row + len(features)] = features
            row += len(features)
        if array is None or row != n:
            raise FeatureError(f"{name}: {row} feature vectors for {n} images")
        array.flush()
        width = array.shape[1]
        del array
    return width


def model_dataset_features(
    model_id: str,
    model_spec: Mapping[str, Any],
    dataset_id: str,
    dataset_spec: Mapping[str, Any],
    outputs: Mapping[str, str | os.PathLike],
    *,
    image_size: int | None,
    crop_pct: float | None,
    batch_size: int,
    device: str,
    normalize: bool,
    precision: str = "float32",
    workers: int = 0,
) -> dict[str, Any]:
    """Write the feature files of one model on one dataset: `outputs` maps each of FEATURE_FILES to its path.
    Every image of the full train and test splits is extracted once; each file is written atomically. Returns
    what info.json records."""
    model = build_model(model_id, model_spec)
    transform = image_transform(model, image_size, crop_pct)
    info: dict[str, Any] = {
        "model": model_id,
        "dataset": dataset_id,
        "layer": model_spec["layer"],
        "precision": precision,
        "normalize": normalize,
        "preprocessing": str(transform),
    }
    with acquire_device(device) as torch_device:
        print(f"{model_id} on {dataset_id}: device {torch_device}, {workers} loader workers, {precision}")
        for split in SPLITS:
            data = load_split(dataset_id, dataset_spec, split)
            label = f"{model_id} on {dataset_id} ({split})"
            batches = feature_batches(
                model,
                data,
                np.arange(len(data)),
                transform,
                batch_size=batch_size,
                device=torch_device,
                normalize=normalize,
                precision=precision,
                workers=workers,
                name=label,
            )
            info["d"] = write_split_features(outputs[split], batches, len(data), label)
            info[f"n_{split}"] = len(data)
            with atomic_path(outputs[f"{split}_labels"]) as tmp:
                np.save(tmp, data.labels.astype(np.int64))
    write_json(outputs["info"], info)
    return info
