"""Representations of a model's layers for the images of a dataset split, and the feature files of a
(model, dataset) job: every train and every test image, extracted once through a DataLoader.

Feature files (one folder per model and dataset) hold every image of the full train and test splits; layer
features (one folder per model and dataset) one file per layer for the train images of the similarity subset, all
captured in one forward pass per batch. Their formats and integrity records are simcon.formats' (docs/features.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from simcon.datasets import SPLITS, Split, load_split
from simcon.device import acquire_device
from simcon.formats import Subset, write_feature_info, write_layer_index
from simcon.io import atomic_directory, atomic_path
from simcon.models import Model, build_model, channels_last, model_transform, resolve_layers
from simcon.vocabulary import TOKEN_POOLINGS

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
REPRESENTATION = "representation"
"""The layer name under which feature_batches captures a model's representation layer."""


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


def to_vectors(output: torch.Tensor, token_pooling: str = "cls", channels_last: bool = False) -> torch.Tensor:
    """One vector per image of a module's output: (B, D) as is, (B, T, D) by `token_pooling` ('cls' its first
    token, 'mean' the mean over its tokens), (B, C, H, W) averaged over space ((B, H, W, C) if `channels_last`),
    any other shape flattened after the batch axis."""
    if output.ndim == 3:
        return output[:, 0] if token_pooling == "cls" else output.mean(dim=1)
    if output.ndim == 4:
        return output.mean(dim=(1, 2) if channels_last else (2, 3))
    return output.flatten(1)


class LayerCapture:
    """Forward hooks on `network`: each forward pass captures the output of every module of `layers` (name ->
    module) as one vector per image (to_vectors; 4-D outputs channels-last where simcon.models.channels_last says
    so), and the number of leaf-module (no children) forward calls completed when it appeared, the module's own
    included. Remove the hooks with `remove` (or use it in a `with`)."""

    def __init__(self, network: nn.Module, layers: Mapping[str, nn.Module], token_pooling: str = "cls") -> None:
        self.token_pooling = token_pooling
        self.outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        self.leaf_calls_at: dict[str, int] = {}
        self.leaf_calls = 0
        leaves = [module for module in network.modules() if next(module.children(), None) is None]
        # counting first: on a leaf layer its own call is counted before its output is captured
        self._hooks = [leaf.register_forward_hook(self._count) for leaf in leaves]
        self._hooks += [
            module.register_forward_hook(self._capturer(name, channels_last(network, module)))
            for name, module in layers.items()
        ]

    def _count(self, _module: nn.Module, _input: Any, _output: Any) -> None:
        self.leaf_calls += 1

    def _capturer(self, name: str, last: bool) -> Callable[[nn.Module, Any, Any], None]:
        def capture(_module: nn.Module, _input: Any, output: torch.Tensor) -> None:
            self.outputs[name].append(to_vectors(output, self.token_pooling, last))
            self.leaf_calls_at[name] = self.leaf_calls

        return capture

    def clear(self) -> None:
        """Forget the last forward pass."""
        for captured in self.outputs.values():
            captured.clear()
        self.leaf_calls_at.clear()
        self.leaf_calls = 0

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def __enter__(self) -> LayerCapture:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()


@dataclass(frozen=True)
class LayerBatch:
    """The features of one batch of images in every captured layer, float32 (batch, d) by layer name, and the
    leaf-module calls completed when each layer's output appeared (LayerCapture)."""

    features: dict[str, np.ndarray]
    leaf_calls: dict[str, int]


@torch.inference_mode()
def layer_batches(
    network: nn.Module,
    layers: Mapping[str, nn.Module],
    split: Split,
    indices: np.ndarray,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    device: torch.device,
    normalize: bool = True,
    precision: str = "float32",
    token_pooling: str = "cls",
    workers: int = 0,
    name: str = "",
    progress: bool = True,
) -> Iterator[LayerBatch]:
    """Features of every module of `layers` (name -> module of `network`) for split images `indices`, one
    LayerBatch per batch in order, from one forward pass per batch; each layer's features L2-normalised if
    `normalize`. The forward runs under autocast to `precision` unless it is float32; the features are float32
    either way. Raises FeatureError naming `name` when the network fails on a batch (e.g. an image size it does
    not take), and naming the layer too on NaN or Inf, or when a layer does not give one vector per image."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if token_pooling not in TOKEN_POOLINGS:
        raise ValueError(f"token_pooling must be one of {list(TOKEN_POOLINGS)}, got {token_pooling!r}")
    cuda = device.type == "cuda"
    network = network.to(device)
    loader = image_loader(
        SplitImages(split, indices, transform), batch_size=batch_size, workers=workers, pin_memory=cuda
    )
    autocast = torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "float32")
    with (
        LayerCapture(network, layers, token_pooling) as capture,
        tqdm(total=len(indices), desc=f"features {name}", unit="img", disable=not progress) as bar,
    ):
        for batch in loader:
            capture.clear()
            try:
                with autocast:
                    network(batch.to(device, non_blocking=cuda))
            except torch.OutOfMemoryError:
                raise
            except (RuntimeError, AssertionError, ValueError) as error:  # torch._assert raises AssertionError
                raise FeatureError(
                    f"{name}: the network fails on a batch of images of shape {tuple(batch.shape)} "
                    f"({type(error).__name__}: {error}); is image_size one it takes?"
                ) from error
            features = {}
            for layer, captured in capture.outputs.items():
                if len(captured) != 1 or len(captured[0]) != len(batch):
                    raise FeatureError(
                        f"{name}: layer {layer!r} gave {len(captured)} outputs for a batch, not one vector per image"
                    )
                vectors = captured[0].float()
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=1)
                if not torch.isfinite(vectors).all():
                    raise FeatureError(f"{name}: layer {layer!r} features contain NaN or Inf")
                features[layer] = vectors.cpu().numpy()
            bar.update(len(batch))
            yield LayerBatch(features, dict(capture.leaf_calls_at))


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
    token_pooling: str = "cls",
    workers: int = 0,
    name: str = "",
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Float32 features of `model.layer` for split images `indices`, one (batch, d) array per batch in order
    (layer_batches of that one layer)."""
    for batch in layer_batches(
        model.network,
        {REPRESENTATION: model.layer},
        split,
        indices,
        transform,
        batch_size=batch_size,
        device=device,
        normalize=normalize,
        precision=precision,
        token_pooling=token_pooling,
        workers=workers,
        name=name,
        progress=progress,
    ):
        yield batch.features[REPRESENTATION]


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
    token_pooling: str = "cls",
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
        token_pooling=token_pooling,
        workers=workers,
        name=name,
        progress=progress,
    )
    return np.concatenate(list(batches)) if len(indices) else np.empty((0, 0), dtype=np.float32)


def write_features(
    paths: Mapping[str, str | os.PathLike], batches: Iterable[Mapping[str, np.ndarray]], n: int, name: str = ""
) -> dict[str, int]:
    """Write the (n, d) features of each layer that `batches` yields (layer -> (batch, d) array) to its .npy file
    `paths[layer]` batch by batch (memory-mapped, never whole in memory), each file atomically; the width d of
    each layer."""
    with contextlib.ExitStack() as stack:
        tmps = {layer: stack.enter_context(atomic_path(path)) for layer, path in paths.items()}
        arrays: dict[str, np.memmap] = {}
        row = 0
        for features in batches:
            for layer, tmp in tmps.items():
                if layer not in arrays:
                    shape = (n, features[layer].shape[1])
                    arrays[layer] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                arrays[layer][row : row + len(features[layer])] = features[layer]
            row += len(next(iter(features.values())))
        if len(arrays) != len(tmps) or row != n:
            raise FeatureError(f"{name}: {row} feature vectors for {n} images")
        widths = {}
        for layer, array in arrays.items():
            array.flush()
            widths[layer] = array.shape[1]
        arrays.clear()  # closes the maps before the files move into place
    return widths


def _token_pooling(model_spec: Mapping[str, Any]) -> str:
    return model_spec.get("token_pooling", TOKEN_POOLINGS[0])


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
    """Write the feature files of one model on one dataset: `outputs` maps each of simcon.formats.FEATURE_FILES to
    its path (simcon.formats.feature_files). Every image of the full train and test splits is extracted once; each
    file is written atomically, info.json last, with the integrity record of each .npy. Returns what info.json
    records."""
    model = build_model(model_id, model_spec)
    transform = image_transform(model, image_size, crop_pct)
    layer = model_spec["layer"]
    info: dict[str, Any] = {
        "model": model_id,
        "dataset": dataset_id,
        "layer": layer,
        "precision": precision,
        "normalize": normalize,
        "preprocessing": str(transform),
    }
    with acquire_device(device) as torch_device:
        print(f"{model_id} on {dataset_id}: device {torch_device}, {workers} loader workers, {precision}")
        for split in SPLITS:
            data = load_split(dataset_id, dataset_spec, split)
            label = f"{model_id} on {dataset_id} ({split})"
            batches = layer_batches(
                model.network,
                {layer: model.layer},
                data,
                np.arange(len(data)),
                transform,
                batch_size=batch_size,
                device=torch_device,
                normalize=normalize,
                precision=precision,
                token_pooling=_token_pooling(model_spec),
                workers=workers,
                name=label,
            )
            widths = write_features({layer: outputs[split]}, (batch.features for batch in batches), len(data), label)
            info["d"] = widths[layer]
            info[f"n_{split}"] = len(data)
            with atomic_path(outputs[f"{split}_labels"]) as tmp:
                np.save(tmp, data.labels.astype(np.int64))
    return write_feature_info(outputs, info)


def model_layer_features(
    model_id: str,
    model_spec: Mapping[str, Any],
    dataset_id: str,
    dataset_spec: Mapping[str, Any],
    subset: Subset,
    folder: str | os.PathLike,
    *,
    image_size: int | None,
    crop_pct: float | None,
    batch_size: int,
    device: str,
    normalize: bool,
    precision: str = "float32",
    workers: int = 0,
) -> dict[str, Any]:
    """Write the layer features of one model on the train images of a dataset's similarity subset to the folder
    `folder`, atomically: one file per layer of the spec's `layers` and its representation `layer`, all from one
    forward pass per batch, and simcon.formats.LAYER_INDEX with their integrity records (docs/features.md).
    Returns what LAYER_INDEX records."""
    model = build_model(model_id, model_spec)
    layers = {**resolve_layers(model_id, model.network, model_spec["layers"]), model_spec["layer"]: model.layer}
    train = load_split(dataset_id, dataset_spec, "train")
    subset.check_split(len(train), f"the train split of dataset '{dataset_id}'")
    indices = subset.indices
    label = f"{model_id} on {dataset_id} (subset)"
    leaf_calls: dict[str, int] = {}

    def features(batches: Iterable[LayerBatch]) -> Iterator[dict[str, np.ndarray]]:
        for batch in batches:
            if not leaf_calls:  # the first batch's: every batch runs the same modules
                leaf_calls.update(batch.leaf_calls)
            yield batch.features

    with atomic_directory(folder) as tmp, acquire_device(device) as torch_device:
        print(f"{model_id} on {dataset_id}: {len(layers)} layers, device {torch_device}, {precision}")
        batches = layer_batches(
            model.network,
            layers,
            train,
            indices,
            image_transform(model, image_size, crop_pct),
            batch_size=batch_size,
            device=torch_device,
            normalize=normalize,
            precision=precision,
            token_pooling=_token_pooling(model_spec),
            workers=workers,
            name=label,
        )
        unordered = {layer: tmp / f"layer{position}.npy" for position, layer in enumerate(layers)}
        widths = write_features(unordered, features(batches), len(indices), label)
        representation = leaf_calls[model_spec["layer"]]
        entries = []
        for index, layer in enumerate(sorted(layers, key=lambda layer: leaf_calls[layer])):
            file = f"{index:02d}.npy"
            unordered[layer].rename(tmp / file)
            depth = leaf_calls[layer] / representation
            entries.append({"name": layer, "file": file, "relative_depth": depth, "d": widths[layer]})
        index = {
            "model": model_id,
            "dataset": dataset_id,
            "representation_layer": model_spec["layer"],
            "token_pooling": _token_pooling(model_spec),
            "n": len(indices),
            "layers": entries,
        }
        index = write_layer_index(tmp, index)
    return index
