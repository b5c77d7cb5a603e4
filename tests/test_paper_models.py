"""config/paper.yaml: the code's 64 models (Table 1), each built offline with random weights, each one's own
evaluation transform against its library's, and the full DAG."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms

from conftest import REPO, job_counts, snakemake
from simcon.datasets import Split
from simcon.extract import extract_features
from simcon.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PINNED_PROCESSORS,
    Model,
    build_model,
    model_transform,
    own_preprocessing,
)

PAPER = REPO / "config" / "paper.yaml"
TABLE = pd.read_csv(REPO / "resources" / "paper_models.csv", dtype={"parameters": str}).set_index("model")
CONFIG = yaml.safe_load(PAPER.read_text())
# Models of 300M parameters or more take minutes and gigabytes each on a CPU: `pytest -m large_model` runs them.
LARGE = {model for model, spec in CONFIG["models"].items() if spec["metadata"]["parameters"] >= 300e6}


def _parameters(count: str) -> float:
    return float(count[:-1]) * {"M": 1e6, "B": 1e9}[count[-1]]


def test_table_has_the_codes_64_models_with_every_column():
    assert TABLE.index.is_unique and len(TABLE) == 64
    assert list(TABLE.columns) == [
        "authors_id",
        "layer",
        "objective",
        "training_data",
        "data_class",
        "architecture",
        "architecture_class",
        "parameters",
        "size_class",
        "embedding_dim",
        "note",
    ]
    assert TABLE["objective"].value_counts().to_dict() == {"Sup": 30, "SSL": 20, "Img-Txt": 14}
    assert TABLE["architecture_class"].value_counts().to_dict() == {"TX": 40, "CNN": 24}
    assert TABLE.loc["OpenCLIP-ViT-B-16-SigLIP-webli", ["parameters", "size_class"]].tolist() == ["203.2M", "medium"]
    assert TABLE.loc["vgg19", "layer"] == "classifier.3"
    assert TABLE["authors_id"].is_unique and TABLE["authors_id"].notna().all()
    # the ids of the paper authors' model config and published results
    assert TABLE.loc["OpenCLIP-ViT-L-14-openai", "authors_id"] == "OpenCLIP_ViT-L-14_openai"
    assert (
        TABLE.loc["deit3-base-patch16-224.fb-in22k-ft-in1k", "authors_id"] == "deit3_base_patch16_224.fb_in22k_ft_in1k"
    )
    assert TABLE.loc["dinov2-vit-large-p14", "authors_id"] == "dinov2-vit-large-p14"
    # Where Table 2 differs from what the code ran, the row says so.
    assert "barlowtwins-rn50" in TABLE.index and "vit-large-patch14-clip-224.laion2b" not in TABLE.index
    assert "vit-large-patch14-clip-224.laion2b" in TABLE.loc["OpenCLIP-ViT-L-14-laion2b-s32b-b82k", "note"]
    assert "Not in Table 2" in TABLE.loc["barlowtwins-rn50", "note"]


def test_table_1_counts_from_the_paper_config():
    metadata = [spec["metadata"] for spec in CONFIG["models"].values()]
    counts = {
        key: dict(Counter(m[key] for m in metadata))
        for key in ("objective", "architecture_class", "data_class", "size_class")
    }
    assert counts == {
        "objective": {"Img-Txt": 14, "SSL": 20, "Sup": 30},
        "architecture_class": {"CNN": 24, "TX": 40},
        "data_class": {"IN1k": 37, "IN21k": 9, "Large": 11, "XLarge": 7},
        "size_class": {"small": 32, "medium": 14, "large": 8, "xlarge": 10},
    }


@pytest.mark.parametrize(
    "model_id,name",
    [
        ("convnext-base", "convnext_base.fb_in22k_ft_in1k"),
        ("convnext-large", "convnext_large.fb_in22k_ft_in1k"),
        ("vit-base-patch16-224", "vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    ],
)
def test_untagged_timm_names_of_the_code_load_timms_default_weights(model_id, name):
    import timm

    assert CONFIG["models"][model_id]["name"] == name
    architecture, tag = name.split(".")
    assert timm.models.get_pretrained_cfg(architecture).tag == tag  # what the code's untagged name loaded
    assert CONFIG["models"][model_id]["metadata"]["data_class"] == "IN1k"  # the code's class, which Table 1 counts


def test_appendix_f_anchors_are_the_codes():
    # notebooks/app_F_validating_infl_train_obj_with_anchor_modles.ipynb: OpenCLIP_RN50_openai, simclr-rn50,
    # resnet50, OpenCLIP_ViT-L-14_openai, dinov2-vit-large-p14, vit_large_patch16_224
    assert CONFIG["anchors"] == [
        "OpenCLIP-RN50-openai",
        "OpenCLIP-ViT-L-14-openai",
        "simclr-rn50",
        "dinov2-vit-large-p14",
        "resnet50",
        "vit-large-patch16-224",
    ]
    assert CONFIG["models"]["OpenCLIP-ViT-L-14-openai"]["kwargs"] == {"pretrained": "openai"}
    assert CONFIG["models"]["vit-large-patch16-224"]["name"] == "vit_large_patch16_224.augreg_in21k_ft_in1k"


def test_paper_config_has_every_table_model_with_its_metadata():
    assert list(CONFIG["models"]) == list(TABLE.index)
    for model, row in TABLE.iterrows():
        spec = CONFIG["models"][model]
        assert spec["metadata"] == {
            "objective": row.objective,
            "architecture": row.architecture,
            "architecture_class": row.architecture_class,
            "training_data": row.training_data,
            "data_class": row.data_class,
            "parameters": pytest.approx(_parameters(row.parameters)),
            "size_class": row.size_class,
        }, model
        assert spec["layer"] == row.layer or spec["layer"].endswith(f".{row.layer}"), model
        assert spec.get("weights", "pretrained") != "random", model


def _two_images() -> Split:
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 40, 56, 3), dtype=np.uint8)
    return Split(np.zeros(2, dtype=np.int64), ["x"], lambda i: Image.fromarray(pixels[i]))


@pytest.mark.parametrize(
    "model_id",
    [pytest.param(m, marks=pytest.mark.large_model) if m in LARGE else m for m in TABLE.index],
)
@pytest.mark.paper_models
def test_paper_model_builds_offline_and_gives_its_embedding(model_id):
    model = build_model(model_id, {**CONFIG["models"][model_id], "weights": "random"})
    features = extract_features(
        model,
        _two_images(),
        np.arange(2),
        image_size=CONFIG["image_size"],
        crop_pct=CONFIG["crop_pct"],
        batch_size=2,
        device=torch.device("cpu"),
        progress=False,
    )
    assert features.shape == (2, TABLE.loc[model_id, "embedding_dim"])  # (0, 0) if the layer never ran


# Images of several shapes and sizes: portrait, landscape, tiny, large.
IMAGES = [
    Image.fromarray(np.random.default_rng(size[0]).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    for size in [(300, 500), (640, 360), (20, 13), (1200, 900)]
]
# thingsvision 2.7's PyTorchExtractor.get_default_transformation(mean, std, 256, 224): its `ssl` source's transform.
THINGSVISION_SSL = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
)


def _library_transform(spec):
    """The model's evaluation transform as the paper's code had thingsvision 2.7 build it, each library called as
    thingsvision calls it. Networks are built on the meta device: structure only, no weights, no memory."""
    backend, name = spec["backend"], spec["name"]
    if backend == "ssl_resnet50" or spec.get("transform") == "ssl":
        return THINGSVISION_SSL
    if backend == "timm":  # TimmExtractor.get_default_transformation
        import timm

        with torch.device("meta"):
            network = timm.create_model(name, pretrained=False, **spec.get("kwargs", {}))
        return timm.data.create_transform(**timm.data.resolve_model_data_config(network), is_training=False)
    if backend == "torchvision":  # TorchvisionExtractor: getattr(torchvision.models, <Name>_Weights).DEFAULT
        import torchvision

        enum = next(getattr(torchvision.models, m) for m in dir(torchvision.models) if m.lower() == f"{name}_weights")
        return enum.DEFAULT.transforms()
    if backend == "open_clip":  # thingsvision's OpenCLIP: create_model_and_transforms(variant, pretrained=dataset)
        import open_clip

        with mock.patch("open_clip.factory.download_pretrained", return_value=""), torch.device("meta"):
            _, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=spec["kwargs"]["pretrained"], load_weights=False, device="meta"
            )
        return preprocess
    if backend == "huggingface":  # thingsvision's Kakaobrain_Align: the processor's pixel_values, squeezed
        from transformers import EfficientNetImageProcessorPil

        settings = json.loads((PINNED_PROCESSORS / name / "preprocessor_config.json").read_text())
        processor = EfficientNetImageProcessorPil(**settings)
        return lambda image: processor(images=image, return_tensors="pt")["pixel_values"].squeeze(0)
    raise AssertionError(f"no library transform for backend {backend!r}")


@pytest.mark.parametrize("model_id", list(TABLE.index))
def test_paper_model_preprocessing_is_its_librarys_own_evaluation_transform(model_id):
    # No model of the paper config has the thingsvision backend (it would be skipped: thingsvision builds its
    # transform from the network, in its own environment).
    spec = CONFIG["models"][model_id]
    assert spec["backend"] != "thingsvision"
    ours = model_transform(
        Model(torch.nn.Identity(), torch.nn.Identity(), own_preprocessing(model_id, spec)),
        CONFIG["image_size"],
        CONFIG["crop_pct"],
    )
    theirs = _library_transform(spec)
    for image in IMAGES:
        expected = theirs(image)
        got = ours(image)
        assert got.dtype == torch.float32 and got.shape == expected.shape, (model_id, image.size)
        torch.testing.assert_close(got, expected.float(), rtol=0, atol=1e-6, msg=f"{model_id} on {image.size}")


def test_the_code_loaded_through_thingsvisions_ssl_source_gets_its_transform():
    ssl = {
        m for m, spec in CONFIG["models"].items() if spec["backend"] == "ssl_resnet50" or spec.get("transform") == "ssl"
    }
    assert ssl == set(TABLE.index[TABLE["objective"] == "SSL"])  # the code's 20 `ssl`-source models


@pytest.mark.workflow
def test_paper_dry_run_lists_the_full_dag(tmp_path: Path):
    # The default config is merged in (beside the Snakefile), so this also checks that paper.yaml's models and
    # datasets replace the default's instead of adding to them.
    result = snakemake(tmp_path, None, "--configfile", str(PAPER), "-n", "--quiet", "rules", timeout=300)
    assert result.returncode == 0, result.stderr
    n_models, n_datasets, n_metrics = len(CONFIG["models"]), len(CONFIG["datasets"]), len(CONFIG["metrics"])
    counts = job_counts(result.stdout)
    assert counts["features"] == n_models * n_datasets == 64 * n_datasets
    assert counts["similarity"] == n_datasets * n_metrics
    assert counts["probe"] == n_models * n_datasets * len(CONFIG["probe"]["seeds"])
    assert counts["subset"] == n_datasets == 23
    assert "features_thingsvision" not in counts


@pytest.mark.workflow
def test_appendix_c_datasets_replace_the_papers_when_given_after_it(tmp_path: Path):
    configs = [str(PAPER), str(REPO / "config" / "paper-appendix-c.yaml")]
    result = snakemake(tmp_path, None, "--configfile", *configs, "-n", "--quiet", "rules", timeout=300)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["subset"] == 6 and counts["features"] == 64 * 6 and counts["similarity"] == 6 * 5


FAKE_THINGSVISION = """
import torchvision
from torchvision import transforms


class Extractor:
    def __init__(self, model_name, source, device, pretrained):
        self.model = torchvision.models.resnet18()

    def forward(self, batch):
        return self.model(batch)

    def get_transformations(self, resize_dim, crop_dim):
        return transforms.Compose([transforms.Resize(resize_dim), transforms.CenterCrop(crop_dim),
                                   transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)])


def get_extractor(**kwargs):
    return Extractor(**kwargs)
"""


@pytest.mark.workflow
def test_thingsvision_models_run_in_their_own_python_and_the_rest_in_the_main_one(tmp_path: Path):
    # A stand-in thingsvision environment: a python that sees a fake `thingsvision` package.
    (tmp_path / "tv" / "thingsvision").mkdir(parents=True)
    (tmp_path / "tv" / "thingsvision" / "__init__.py").write_text(FAKE_THINGSVISION)
    python = tmp_path / "tv-python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{tmp_path / "tv"}" exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    metadata = {
        "objective": "Sup",
        "architecture": "ResNet",
        "architecture_class": "CNN",
        "training_data": "IN1k",
        "data_class": "IN1k",
        "parameters": 11.7e6,
    }
    config = {
        "image_size": 32,
        "device": "cpu",
        "thingsvision_python": str(python),
        "models": {
            "tv_resnet18": {
                "backend": "thingsvision",
                "name": "resnet18",
                "layer": "avgpool",
                "kwargs": {"source": "torchvision"},
                "metadata": metadata,
            },
            "timm_resnet18": {
                "backend": "timm",
                "name": "resnet18",
                "layer": "global_pool",
                "weights": "random",
                "metadata": metadata,
            },
        },
        "datasets": {
            "shapes": {
                "source": "generated",
                "domain": "shapes",
                "category": "structured",
                "train_per_class": 5,  # 30 images: enough for the probe's validation split of 6 classes
                "test_per_class": 2,
                "resolution": 32,
            }
        },
    }
    dry = snakemake(tmp_path, config, "-n", "-p", "--quiet", "rules", timeout=300)
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout)
    assert counts["features_thingsvision"] == 1 and counts["features"] == 1
    folders = [f"results/features/shapes/{model}" for model in ("tv_resnet18", "timm_resnet18")]
    run = snakemake(tmp_path, config, *(f"{folder}/info.json" for folder in folders), timeout=300)
    assert run.returncode == 0, run.stderr + (tmp_path / "logs/features/shapes/tv_resnet18.log").read_text()
    for folder in folders:
        train, test = np.load(tmp_path / folder / "train.npy"), np.load(tmp_path / folder / "test.npy")
        assert train.shape[1] == test.shape[1] == 512
        assert len(test) == len(np.load(tmp_path / folder / "test_labels.npy")) == 2 * 6  # 6 shape classes
        np.testing.assert_allclose(np.linalg.norm(test, axis=1), 1.0, rtol=1e-5)
