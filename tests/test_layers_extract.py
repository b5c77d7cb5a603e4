"""Layer features: the `layers` and `token_pooling` options, what 'blocks' resolves to per backend, one forward
pass capturing every layer (bit for bit each layer's single-layer extraction), relative depths, the layer folder
of a (model, dataset) job, and the `layer_features` rule."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import simcon.extract
from conftest import REPO, TINY, job_counts, make_image_folder, snakemake
from simcon.config import ConfigError
from simcon.datasets import DatasetError, load_split
from simcon.extract import (
    LayerCapture,
    layer_batches,
    model_dataset_features,
    model_layer_features,
    write_features,
)
from simcon.formats import LAYER_INDEX, ResultError, Subset, feature_files, read_feature_rows, read_subset
from simcon.io import read_json
from simcon.models import ModelError, block_layers, build_model, check_model, model_transform, resolve_layers
from test_config import _config, _model, _resolved

CPU = torch.device("cpu")
RESNET = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"}
VIT = {**TINY["models"]["vit_random"]}
VIT.pop("metadata")
SHAPES = {
    "source": "generated",
    "domain": "shapes",
    "train_per_class": 4,
    "test_per_class": 2,
    "resolution": 32,
    "seed": 0,
}
OPTIONS = {"image_size": 32, "crop_pct": 1.0, "device": "cpu", "normalize": True}
ZOO = yaml.safe_load((REPO / "config/zoo.yaml").read_text())["zoo"]["architectures"]


def _batches(spec, layers, split, indices, batch_size=3, **options):
    """Every batch of layer_batches for `layers` (names) of a freshly built model."""
    model = build_model("m", spec)
    modules = resolve_layers("m", model.network, layers)
    transform = model_transform(model, 32, 1.0)
    return list(
        layer_batches(
            model.network,
            modules,
            split,
            indices,
            transform,
            batch_size=batch_size,
            device=CPU,
            progress=False,
            **options,
        )
    )


def _stacked(batches, layer):
    return np.concatenate([batch.features[layer] for batch in batches])


# --------------------------------------------------------------------------- 'blocks' per backend

BLOCKS = {  # what 'blocks' resolves to, by backend and architecture
    "timm resnet18": (RESNET, ["act1", "layer1", "layer2", "layer3", "layer4"]),
    "timm vit_tiny": (VIT, [f"blocks.{i}" for i in range(12)]),
    "timm lite0": (
        {"backend": "timm", "name": "tf_efficientnet_lite0", "layer": "global_pool"},
        ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"],
    ),
    "zoo cnn": (
        {"backend": "timm", "name": "resnet18", "layer": "global_pool", "kwargs": ZOO["cnn"]["kwargs"]},
        ["act1", "layer1", "layer2", "layer3", "layer4"],
    ),
    "zoo vit": (
        {"backend": "timm", "name": "vit_tiny_patch16_224", "layer": "norm", "kwargs": ZOO["vit"]["kwargs"]},
        [f"blocks.{i}" for i in range(4)],
    ),
    "torchvision resnet18": (
        {"backend": "torchvision", "name": "resnet18", "layer": "avgpool"},
        ["layer1", "layer2", "layer3", "layer4"],
    ),
    "torchvision vit_b_16": (
        {"backend": "torchvision", "name": "vit_b_16", "layer": "encoder.ln"},
        [f"encoder.layers.encoder_layer_{i}" for i in range(12)],
    ),
    "torchvision efficientnet_b0": (
        {"backend": "torchvision", "name": "efficientnet_b0", "layer": "avgpool"},
        [f"features.{i}" for i in range(9)],
    ),
    "torchvision vgg11": (  # its stage ends, the max-pooling layers
        {"backend": "torchvision", "name": "vgg11", "layer": "classifier.3"},
        ["features.2", "features.5", "features.10", "features.15", "features.20"],
    ),
    "ssl_resnet50": (
        {"backend": "ssl_resnet50", "name": "simclr", "layer": "avgpool"},
        ["layer1", "layer2", "layer3", "layer4"],
    ),
    "open_clip RN50": (
        {"backend": "open_clip", "name": "RN50", "layer": "visual"},
        ["visual.layer1", "visual.layer2", "visual.layer3", "visual.layer4"],
    ),
    "open_clip ViT-B-32": (
        {"backend": "open_clip", "name": "ViT-B-32", "layer": "visual"},
        [f"visual.transformer.resblocks.{i}" for i in range(12)],
    ),
    "huggingface align": (  # its encoder's MBConv blocks
        {
            "backend": "huggingface",
            "name": "kakaobrain/align-base",
            "layer": "pooler",
            "kwargs": {"model_type": "align"},
        },
        [f"encoder.blocks.{i}" for i in range(55)],
    ),
}
SLOW_BLOCKS = ("torchvision vgg11", "open_clip RN50", "open_clip ViT-B-32", "huggingface align")  # 5-10 s each


@pytest.mark.parametrize(
    "spec,expected",
    [
        pytest.param(spec, expected, id=name, marks=[pytest.mark.slow] if name in SLOW_BLOCKS else [])
        for name, (spec, expected) in BLOCKS.items()
    ],
)
def test_blocks_resolve_to_every_stage_or_block_in_depth_order(spec, expected):
    model = build_model("m", {**spec, "weights": "random"})
    assert list(resolve_layers("m", model.network, "blocks")) == expected


def test_blocks_of_a_timm_trunk_inside_another_network_keep_its_prefix():
    import timm

    network = nn.Sequential()
    network.add_module("visual", nn.Sequential())
    network.visual.add_module("trunk", timm.create_model("resnet18", num_classes=0))
    assert block_layers(network) == ["visual.trunk.act1", *(f"visual.trunk.layer{i}" for i in range(1, 5))]


def test_blocks_that_resolve_to_nothing_name_the_model():
    with pytest.raises(ModelError, match=r"model 'tiny': 'blocks' does not know the stages of its Sequential"):
        resolve_layers("tiny", nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), "blocks")


def test_an_unknown_layer_names_model_and_layer_with_similar_names():
    network = build_model("r18", RESNET).network
    with pytest.raises(ModelError, match=r"model 'r18' has no layer 'layer5'; similar names: \[.*'layer1'"):
        resolve_layers("r18", network, ["layer1", "layer5"])


def test_the_check_job_resolves_the_layers_and_names_an_unknown_one():
    found = check_model("r18", {**RESNET, "layers": "blocks"})
    assert found["layers"] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert "layers" not in check_model("r18", RESNET)
    with pytest.raises(ModelError, match=r"model 'r18' has no layer 'layer9'"):
        check_model("r18", {**RESNET, "layers": ["layer9"]})


# --------------------------------------------------------------------------- one forward pass, every layer


@pytest.mark.parametrize(
    "spec,layers,pooling",
    [
        (RESNET, ["act1", "layer1", "layer3", "global_pool", "fc"], "cls"),
        (VIT, ["patch_embed", "blocks.0", "blocks.5", "blocks.11", "norm"], "cls"),
        (VIT, ["blocks.0", "blocks.11", "norm"], "mean"),
    ],
)
def test_multi_layer_extraction_equals_single_layer_extraction_bit_for_bit(spec, layers, pooling):
    split = load_split("shapes", SHAPES, "train")
    indices = np.array([0, 3, 4, 9, 10, 17, 20])  # 3 batches, the last partial
    together = _batches(spec, layers, split, indices, token_pooling=pooling)
    assert [len(batch.features[layers[0]]) for batch in together] == [3, 3, 1]
    for layer in layers:
        alone = _batches(spec, [layer], split, indices, token_pooling=pooling)
        assert np.array_equal(_stacked(together, layer), _stacked(alone, layer)), layer


def test_mean_pooling_is_the_mean_over_tokens():
    split = load_split("shapes", SHAPES, "train")
    model = build_model("vit", VIT)
    batch = torch.stack([model_transform(model, 32, 1.0)(split.load_image(i)) for i in range(4)])
    outputs = []
    hook = model.network.blocks[3].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with torch.inference_mode():
        model.network(batch)
    hook.remove()
    tokens = outputs[0].numpy()
    assert tokens.shape == (4, 5, 192)  # CLS and 2 x 2 patches
    expected = tokens.sum(axis=1) / tokens.shape[1]
    batches = _batches(VIT, ["blocks.3"], split, np.arange(4), batch_size=4, token_pooling="mean", normalize=False)
    np.testing.assert_allclose(batches[0].features["blocks.3"], expected, rtol=1e-5, atol=1e-6)
    cls = _batches(VIT, ["blocks.3"], split, np.arange(4), batch_size=4, normalize=False)
    np.testing.assert_array_equal(cls[0].features["blocks.3"], tokens[:, 0])


def test_unknown_token_pooling_is_refused():
    with pytest.raises(ValueError, match=r"token_pooling must be one of \['cls', 'mean'\], got 'max'"):
        _batches(RESNET, ["layer1"], load_split("shapes", SHAPES, "test"), np.arange(2), token_pooling="max")


def test_leaf_calls_count_each_call_of_a_leaf_and_the_layers_own():
    relu = nn.ReLU()
    network = nn.Sequential(nn.Linear(2, 2), relu, nn.Sequential(nn.Linear(2, 2), relu), nn.Linear(2, 2))
    layers = {"0": network[0], "2": network[2], "3": network[3]}
    with LayerCapture(network, layers) as capture:
        network(torch.zeros(1, 2))
    assert capture.leaf_calls_at == {"0": 1, "2": 4, "3": 5}  # the shared ReLU counts twice
    assert capture.leaf_calls == 5
    network(torch.zeros(1, 2))
    assert capture.leaf_calls == 5  # hooks removed


def test_channels_last_stages_are_averaged_over_space():
    model = build_model(
        "swin", {"backend": "timm", "name": "swin_tiny_patch4_window7_224", "layer": "norm", "weights": "random"}
    )
    layers = resolve_layers("swin", model.network, [*block_layers(model.network), "patch_embed.proj", "norm"])
    assert list(layers)[:4] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    outputs = {}
    hooks = [module.register_forward_hook(lambda m, _i, out: outputs.__setitem__(m, out)) for module in layers.values()]
    with LayerCapture(model.network, layers) as capture, torch.inference_mode():
        model.network(torch.randn(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    assert outputs[layers["layers.0"]].shape == (1, 56, 56, 96) and outputs[layers["patch_embed.proj"]].shape[1] == 96
    widths = {name: captured[0].shape[1] for name, captured in capture.outputs.items()}
    assert widths == {
        "layers.0": 96,
        "layers.1": 192,
        "layers.2": 384,
        "layers.3": 768,
        "patch_embed.proj": 96,
        "norm": 768,
    }
    torch.testing.assert_close(capture.outputs["norm"][0], outputs[layers["norm"]].mean(dim=(1, 2)))
    torch.testing.assert_close(
        capture.outputs["patch_embed.proj"][0], outputs[layers["patch_embed.proj"]].mean(dim=(2, 3))
    )


# --------------------------------------------------------------------------- the layer folder of a job


def _subset(indices, n_train=None):
    train = load_split("shapes", SHAPES, "train")
    n_train = len(train) if n_train is None else n_train
    return Subset(Path("results/subsets/shapes.json"), "shapes", n_train, train.class_names, np.asarray(indices))


def test_layer_folder_holds_every_layer_in_depth_order_and_the_representation_rows_of_the_main_features(tmp_path):
    spec = {**RESNET, "layers": ["layer3", "fc", "layer1", "global_pool"]}  # out of order, the representation in it
    subset = _subset([1, 4, 5, 8, 13, 21])
    index = model_layer_features("r", spec, "shapes", SHAPES, subset, tmp_path / "layers", batch_size=1, **OPTIONS)
    assert index == read_json(tmp_path / "layers" / LAYER_INDEX)
    assert {key: index[key] for key in ("model", "dataset", "representation_layer", "token_pooling", "n")} == {
        "model": "r",
        "dataset": "shapes",
        "representation_layer": "global_pool",
        "token_pooling": "cls",
        "n": 6,
    }
    assert [(entry["name"], entry["file"], entry["d"]) for entry in index["layers"]] == [
        ("layer1", "00.npy", 64),
        ("layer3", "01.npy", 256),
        ("global_pool", "02.npy", 512),
        ("fc", "03.npy", 1000),
    ]
    depths = [entry["relative_depth"] for entry in index["layers"]]
    assert 0 < depths[0] < depths[1] < depths[2] == 1.0 < depths[3]  # a layer after the representation: > 1
    assert sorted(path.name for path in (tmp_path / "layers").iterdir()) == [
        "00.npy",
        "01.npy",
        "02.npy",
        "03.npy",
        LAYER_INDEX,
    ]
    for entry in index["layers"]:
        rows = np.load(tmp_path / "layers" / entry["file"])
        assert rows.dtype == np.float32 and rows.shape == (6, entry["d"])
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)

    outputs = feature_files(str(tmp_path / "main"))
    model_dataset_features("r", RESNET, "shapes", SHAPES, outputs, batch_size=1, **OPTIONS)
    representation = np.load(tmp_path / "layers/02.npy")
    # one image a batch in both: the same computation, so the same bits
    assert np.array_equal(representation, read_feature_rows(outputs["train"], subset))


def test_blocks_depths_rise_with_depth_to_the_representation(tmp_path):
    index = model_layer_features(
        "vit", {**VIT, "layers": "blocks"}, "shapes", SHAPES, _subset([0, 1, 2]), tmp_path, batch_size=2, **OPTIONS
    )
    names = [entry["name"] for entry in index["layers"]]
    depths = [entry["relative_depth"] for entry in index["layers"]]
    assert names == [*(f"blocks.{i}" for i in range(12)), "norm"]
    assert 0 < depths[0] and all(a < b for a, b in zip(depths, depths[1:])) and depths[-1] == 1.0


def test_the_writer_receives_the_features_batch_by_batch(tmp_path, monkeypatch):
    received = []

    def spy(paths, batches, n, name=""):
        def recorded():
            for features in batches:
                received.append({layer: len(rows) for layer, rows in features.items()})
                yield features

        return write_features(paths, recorded(), n, name)

    monkeypatch.setattr(simcon.extract, "write_features", spy)
    model_layer_features(
        "r",
        {**RESNET, "layers": "blocks"},
        "shapes",
        SHAPES,
        _subset(list(range(10))),
        tmp_path,
        batch_size=4,
        **OPTIONS,
    )
    assert [set(sizes.values()) for sizes in received] == [{4}, {4}, {2}]
    assert set(received[0]) == {"act1", "layer1", "layer2", "layer3", "layer4", "global_pool"}


def test_each_batch_is_on_disk_before_the_next_is_made(tmp_path):
    rng = np.random.default_rng(0)
    batches = [{"a": rng.random((3, 2), dtype=np.float32), "b": rng.random((3, 5), dtype=np.float32)} for _ in range(3)]

    def produced():
        for k, features in enumerate(batches):
            if k:  # the previous batch is in the (temporary) files already
                for layer in ("a", "b"):
                    (tmp,) = tmp_path.glob(f".{layer}.npy.*")
                    written = np.load(tmp, mmap_mode="r")[3 * (k - 1) : 3 * k]
                    np.testing.assert_array_equal(written, batches[k - 1][layer])
            yield features

    widths = write_features({"a": tmp_path / "a.npy", "b": tmp_path / "b.npy"}, produced(), 9)
    assert widths == {"a": 2, "b": 5}
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.concatenate([b["b"] for b in batches]))


def test_a_subset_of_another_split_size_names_the_command_that_remakes_it(tmp_path):
    with pytest.raises(
        ResultError,
        match=r"^results/subsets/shapes.json: drawn from 7 train images of dataset 'shapes', but the train split of "
        r"dataset 'shapes' has 24 .* Regenerate with: snakemake --cores all --forcerun results/subsets/shapes.json$",
    ):
        model_layer_features(
            "r",
            {**RESNET, "layers": ["layer1"]},
            "shapes",
            SHAPES,
            _subset([0], n_train=7),
            tmp_path,
            **OPTIONS,
            batch_size=2,
        )


def test_a_failed_layer_extraction_leaves_no_folder(tmp_path):
    root = make_image_folder(tmp_path / "data", {"a": 5, "b": 6})
    (root / "train/b/5.png").write_bytes(b"not a png")  # the last image: the failure comes after two batches
    dataset = {"source": "image_folder", "path": str(root)}
    subset = Subset(Path("results/subsets/broken.json"), "broken", 11, ["a", "b"], np.arange(11))
    with pytest.raises(DatasetError, match=r"cannot read image .*train/b/5.png"):
        model_layer_features(
            "r",
            {**RESNET, "layers": "blocks"},
            "broken",
            dataset,
            subset,
            tmp_path / "out/layers",
            **OPTIONS,
            batch_size=4,
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_nan_in_a_layer_names_model_dataset_and_layer(tmp_path):
    model = build_model("r", RESNET)
    with torch.no_grad():
        model.network.layer2[0].conv1.weight.fill_(float("nan"))
    split = load_split("shapes", SHAPES, "train")
    modules = resolve_layers("r", model.network, ["layer1", "layer2"])
    batches = layer_batches(
        model.network,
        modules,
        split,
        np.arange(2),
        model_transform(model, 32, 1.0),
        batch_size=2,
        device=CPU,
        name="r on shapes (subset)",
        progress=False,
    )
    with pytest.raises(
        simcon.extract.FeatureError, match=r"r on shapes \(subset\): layer 'layer2' features contain NaN"
    ):
        next(batches)


# --------------------------------------------------------------------------- the options


def test_models_take_the_top_level_layers_and_pooling_unless_they_set_their_own(tmp_path):
    models = {
        "r": _model(),
        "s": {**_model(), "layers": ["fc"], "token_pooling": "cls"},
        "n": {**_model(), "layers": None},
    }
    config = _resolved(_config(models=models, layers="blocks", token_pooling="mean"), tmp_path)
    assert {m: (spec.get("layers"), spec["token_pooling"]) for m, spec in config["models"].items()} == {
        "r": ("blocks", "mean"),
        "s": (["fc"], "cls"),
        "n": (None, "mean"),
    }


def test_without_the_options_the_model_specs_are_unchanged(tmp_path):
    config = _resolved(_config(), tmp_path)
    assert not {"layers", "token_pooling"} & set(config["models"]["r"])


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.update(layers="block"), r"layers: 'block' is neither a preset \['blocks'\] nor a list"),
        (lambda c: c["models"]["r"].update(layers="stages"), r"models.r.layers: 'stages' is neither a preset"),
        (lambda c: c["models"]["r"].update(layers=[]), r"models.r.layers: \[\] should be non-empty"),
        (lambda c: c["models"]["r"].update(layers=["fc", "fc"]), r"models.r.layers: .*non-unique"),
        (lambda c: c["models"]["r"].update(layers=[3]), r"models.r.layers.0: 3 is not of type 'string'"),
        (lambda c: c.update(token_pooling="max"), r"token_pooling: 'max' is not one of \['cls', 'mean'\]"),
        (
            lambda c: c["models"]["r"].update(backend="thingsvision", layers="blocks"),
            r"models.r.layers: .*thingsvision model 'r' takes no layers",
        ),
    ],
)
def test_malformed_layer_options_are_config_errors_naming_the_option(tmp_path, change, message):
    config = _config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        _resolved(config, tmp_path)


def test_thingsvision_models_do_not_inherit_the_layers(tmp_path):
    config = _config(layers="blocks")
    config["models"]["t"] = {**_model(), "backend": "thingsvision"}
    assert "layers" not in _resolved(config, tmp_path)["models"]["t"]


def _zoo_config(**architecture):
    """config/zoo.yaml without its top-level `layers`, the cnn architecture updated with `architecture`."""
    config = yaml.safe_load((REPO / "config/zoo.yaml").read_text())
    config.pop("layers")
    config["zoo"]["architectures"]["cnn"].update(architecture)
    return config


def test_zoo_models_take_their_twins_layers_and_the_architecture_must_agree(tmp_path):
    config = _zoo_config(layers="blocks")
    config["models"]["cnn_random"]["layers"] = "blocks"
    models = _resolved(config, tmp_path)["models"]
    assert models["cnn_sup_seed0"]["layers"] == "blocks" and "layers" not in models["vit_sup_seed0"]
    config = _zoo_config(layers=["layer1"])
    with pytest.raises(ConfigError, match=r"twin 'cnn_random' .* differs in \['layers'\]"):
        _resolved(config, tmp_path)
    config = _zoo_config(layers="stages")
    with pytest.raises(ConfigError, match=r"zoo.architectures.cnn.layers: 'stages' is neither a preset"):
        _resolved(config, tmp_path)


# --------------------------------------------------------------------------- the rule


@pytest.mark.slow
@pytest.mark.workflow
def test_layer_features_rule_writes_the_folder_and_a_bad_layer_fails_its_check(tmp_path):
    """The layer_features job of a tiny config writes the folder of the contract; a model whose layer does not
    exist fails its layers check (naming model and layer) and starts no layer job; turning the layers on reruns no
    model check and no features job."""
    config = copy.deepcopy(TINY)
    config["models"] = {m: TINY["models"][m] for m in ("resnet18_random", "vit_random")}
    config["datasets"] = {"shapes": {**TINY["datasets"]["shapes"], "max_samples": 12}}
    run = snakemake(tmp_path, config, "results/features/shapes/vit_random/info.json")
    assert run.returncode == 0, run.stderr[-5000:]

    config["layers"] = "blocks"
    config["models"]["resnet18_random"] = {**config["models"]["resnet18_random"], "layers": ["layer1", "layer9"]}
    targets = [f"results/layers/shapes/{model}" for model in config["models"]]
    planned = snakemake(tmp_path, config, *targets, "-n")
    assert planned.returncode == 0, planned.stderr[-5000:]
    counts = job_counts(planned.stdout + planned.stderr)
    assert counts["layer_features"] == counts["check_layers"] == 2
    assert "features" not in counts and "check_model" not in counts  # the main features and their checks stay

    run = snakemake(tmp_path, config, *targets, "--keep-going")
    assert run.returncode != 0
    log = (tmp_path / "logs/check_layers/resnet18_random.log").read_text()
    assert re.search(r"model 'resnet18_random' has no layer 'layer9'; similar names: .*layer1", log)
    assert not (tmp_path / "logs/layer_features/shapes/resnet18_random.log").exists()
    assert not (tmp_path / targets[0]).exists()

    folder = tmp_path / targets[1]
    index = read_json(folder / LAYER_INDEX)
    subset = read_subset(tmp_path / "results/subsets/shapes.json")
    assert index["n"] == len(subset.indices) == 12 and index["representation_layer"] == "norm"
    assert [entry["name"] for entry in index["layers"]] == [*(f"blocks.{i}" for i in range(12)), "norm"]
    files = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))  # .snakemake_timestamp
    assert files == sorted([LAYER_INDEX, *(f"{i:02d}.npy" for i in range(13))])
    main = read_feature_rows(tmp_path / "results/features/shapes/vit_random/train.npy", subset)
    np.testing.assert_allclose(np.load(folder / "12.npy"), main, rtol=0, atol=1e-6)  # other batch neighbours
    assert read_json(tmp_path / "results/checks/layers/vit_random.json")["layers"] == [f"blocks.{i}" for i in range(12)]
