"""The layer preset 'blocks' on every torchvision classification builder and on the timm families the docs list:
each resolves to its family's stages (or blocks), written out here per family, from the first to the last, and a
forward pass reaches them in that order. Networks are built with random weights on the meta device (no memory,
no download), RegNets on the CPU (their builders compute their widths with tensors) and then moved there."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from simcon.models import ModelError, block_layers, channels_last, resolve_layers


def _names(*names: str) -> list[str]:
    return list(names)


def _where(network: nn.Module, parent: str, kind: type[nn.Module] | str) -> list[str]:
    """The children of `parent` of class `kind` (a class or a class name), by name."""
    return [
        f"{parent}.{name}"
        for name, child in network.get_submodule(parent).named_children()
        if (type(child).__name__ == kind if isinstance(kind, str) else isinstance(child, kind))
    ]


def _all(network: nn.Module, parent: str) -> list[str]:
    return [f"{parent}.{name}" for name, _ in network.get_submodule(parent).named_children()]


# A family's stages, as its torchvision code builds them: (expected names, how many there are).
TORCHVISION_STAGES = {
    # the ends of its resolution stages: 3 max-poolings (AlexNet), 5 (VGG)
    "AlexNet": lambda net: (_where(net, "features", nn.MaxPool2d), 3),
    "VGG": lambda net: (_where(net, "features", nn.MaxPool2d), 5),
    # features: stem, 4 stages with a downsampling between each two
    "ConvNeXt": lambda net: (_names("features.1", "features.3", "features.5", "features.7"), 4),
    "SwinTransformer": lambda net: (_names("features.1", "features.3", "features.5", "features.7"), 4),
    "DenseNet": lambda net: ([f"features.denseblock{i}" for i in range(1, 5)], 4),
    # features: the stem, every stage (EfficientNet) or inverted residual block (MobileNet), the head convolution
    "EfficientNet": lambda net: (_all(net, "features"), len(net.features)),
    "MobileNetV2": lambda net: (_all(net, "features"), 19),
    "MobileNetV3": lambda net: (_all(net, "features"), len(net.features)),
    "GoogLeNet": lambda net: (
        _names(*(f"inception{s}" for s in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))),
        9,
    ),
    "Inception3": lambda net: (
        _names(*(f"Mixed_{s}" for s in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"))),
        11,
    ),
    "MaxVit": lambda net: ([f"blocks.{i}" for i in range(4)], 4),
    # layers: 8 stem layers, 6 stacks of inverted residuals, the head's convolution, norm and activation
    "MNASNet": lambda net: ([*(f"layers.{i}" for i in range(8, 14)), "layers.16"], 7),
    "RegNet": lambda net: ([f"trunk_output.block{i}" for i in range(1, 5)], 4),
    "ResNet": lambda net: ([f"layer{i}" for i in range(1, 5)], 4),
    "ShuffleNetV2": lambda net: (_names("stage2", "stage3", "stage4", "conv5"), 4),
    "SqueezeNet": lambda net: (_where(net, "features", "Fire"), 8),
    "VisionTransformer": lambda net: (
        [f"encoder.layers.encoder_layer_{i}" for i in range(len(net.encoder.layers))],
        len(net.encoder.layers),
    ),
}
LARGE = 300e6
"""Parameters from which a network built on the CPU (a RegNet) is a `large_model` case (regnet_y_128gf: 9 s, 2.6 GB);
the smaller RegNets are `slow` (up to 1 s each on an idle CPU)."""


def _builders() -> list:
    params = []
    for name in torchvision.models.list_models(module=torchvision.models):
        on_cpu = name.startswith("regnet")
        parameters = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
        marks = [pytest.mark.large_model if parameters >= LARGE else pytest.mark.slow] if on_cpu else []
        params.append(pytest.param(name, on_cpu, id=name, marks=marks))
    return params


def _build(name: str, on_cpu: bool) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # GoogLeNet's and Inception's notes on their initialisation
        if on_cpu:
            return torchvision.models.get_model(name, weights=None).to("meta").eval()
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None).eval()


def _call_order(network: nn.Module, names: list[str], size: int) -> list[str]:
    """The modules of `names` in the order a forward pass of one image (on the meta device) first calls them."""
    order: list[str] = []
    hooks = [
        network.get_submodule(name).register_forward_hook(lambda *_, name=name: order.append(name)) for name in names
    ]
    with torch.inference_mode():
        network(torch.zeros(1, 3, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return list(dict.fromkeys(order))


def test_the_walk_covers_every_classification_builder():
    assert len(_builders()) == len(torchvision.models.list_models(module=torchvision.models)) >= 80


@pytest.mark.parametrize("name,on_cpu", _builders())
def test_torchvision_blocks_are_the_familys_stages_first_to_last_in_depth_order(name, on_cpu):
    network = _build(name, on_cpu)
    family = type(network).__name__
    assert family in TORCHVISION_STAGES, f"torchvision {name}: family {family} has no stages written out here"
    expected, count = TORCHVISION_STAGES[family](network)
    blocks = block_layers(network)
    assert blocks == expected and len(blocks) == count
    assert _call_order(network, blocks, 299 if family == "Inception3" else 224) == blocks


def test_torchvision_swin_stages_are_averaged_channels_last():
    network = _build("swin_t", on_cpu=False)
    assert all(channels_last(network, network.get_submodule(name)) for name in block_layers(network))
    assert not channels_last(network, network.avgpool) and not channels_last(network, network.features[0][0])
    convnext = _build("convnext_tiny", on_cpu=False)
    assert not any(channels_last(convnext, convnext.get_submodule(name)) for name in block_layers(convnext))


# timm: its own feature_info, by family (the docs' backends table), at the family's depth
TIMM_STAGES = {
    "resnet18": ["act1", *(f"layer{i}" for i in range(1, 5))],
    "resnext50_32x4d": ["act1", *(f"layer{i}" for i in range(1, 5))],
    "seresnet50": ["act1", *(f"layer{i}" for i in range(1, 5))],
    "tf_efficientnet_lite0": ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"],  # its reductions
    "vit_base_patch16_224": [f"blocks.{i}" for i in range(12)],
    "vit_small_patch14_dinov2": [f"blocks.{i}" for i in range(12)],
    "vit_huge_patch14_clip_224": [f"blocks.{i}" for i in range(32)],
    "deit3_base_patch16_224": [f"blocks.{i}" for i in range(12)],
    "beit_base_patch16_224": [f"blocks.{i}" for i in range(12)],
    "xcit_small_12_p16_224": [f"blocks.{i}" for i in range(12)],  # before its 2 class-attention blocks
    "swin_base_patch4_window7_224": [f"layers.{i}" for i in range(4)],
    "convnext_base": [f"stages.{i}" for i in range(4)],
}


@pytest.mark.parametrize("name", TIMM_STAGES)
def test_timm_blocks_are_the_familys_stages_first_to_last_in_depth_order(name):
    import timm

    with torch.device("meta"):
        network = timm.create_model(name).eval()
    blocks = block_layers(network)
    assert blocks == TIMM_STAGES[name]
    assert _call_order(network, blocks, network.pretrained_cfg["input_size"][-1]) == blocks


def test_a_network_of_no_known_family_is_refused_naming_the_model():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(*(nn.Conv2d(4, 4, 3) for _ in range(3))), nn.ReLU())
    assert block_layers(network) == []
    with pytest.raises(ModelError, match=r"model 'mine': 'blocks' does not know the stages of its Sequential"):
        resolve_layers("mine", network, "blocks")
