"""Feature extraction: the DataLoader pipeline against the serial per-image reference, the feature files of a
(model, dataset) job (full splits, subset rows read by memory map, atomic writes), and reduced precision."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import REPO, TINY, make_image_folder, make_wds, snakemake
from simcon.datasets import DatasetError, Split, load_split, stratified_subset
from simcon.extract import extract_features, image_transform, model_dataset_features
from simcon.formats import Subset, feature_files, read_feature_rows
from simcon.io import read_json
from simcon.models import build_model
from simcon.similarity import compute_similarity

RESNET = {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"}
SHAPES = {
    "source": "generated",
    "domain": "shapes",
    "train_per_class": 4,
    "test_per_class": 2,
    "resolution": 32,
    "seed": 0,
}
CPU = torch.device("cpu")
OPTIONS = {"image_size": 32, "crop_pct": 1.0, "batch_size": 4, "device": "cpu", "normalize": True}


@torch.inference_mode()
def serial_features(model, split: Split, transform, batch_size: int) -> np.ndarray:
    """The extraction before the DataLoader: each batch decoded and transformed image by image in this process,
    the (B, D) layer outputs concatenated, then L2-normalised (the reference for a layer of vector outputs)."""
    captured = []
    hook = model.layer.register_forward_hook(lambda _m, _i, out: captured.append(out.float().cpu()))
    try:
        for start in range(0, len(split), batch_size):
            model.network(
                torch.stack([transform(split.load_image(i)) for i in range(start, min(start + batch_size, len(split)))])
            )
    finally:
        hook.remove()
    return torch.nn.functional.normalize(torch.cat(captured), dim=1).numpy()


def _folder(tmp_path: Path) -> Split:
    return load_split(
        "folder", {"source": "image_folder", "path": str(make_image_folder(tmp_path, {"a": 5, "b": 6}))}, "train"
    )


def _wds(tmp_path: Path) -> Split:
    make_wds(tmp_path, "train", [c % 3 for c in range(13)], per_shard=5, extension="png")
    return load_split("shards", {"source": "wds", "path": str(tmp_path)}, "train")


def _generated(tmp_path: Path) -> Split:
    return load_split("shapes", SHAPES, "train")


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("make_split", [_folder, _wds, _generated])
def test_loader_extraction_equals_the_serial_extraction_bit_for_bit(tmp_path, make_split, workers):
    split = make_split(tmp_path)
    model = build_model("r", RESNET)
    expected = serial_features(model, split, image_transform(model, 32, 1.0), batch_size=5)
    features = extract_features(
        model,
        split,
        np.arange(len(split)),
        image_size=32,
        crop_pct=1.0,
        batch_size=5,
        device=CPU,
        workers=workers,
        progress=False,
    )
    assert len(split) % 5 != 0  # a last, partial batch too
    np.testing.assert_array_equal(features, expected)


def test_transforms_are_picklable():
    model = build_model("r", RESNET)
    transform = pickle.loads(pickle.dumps(image_transform(model, 32, 1.0)))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    assert torch.equal(transform(image), image_transform(model, 32, 1.0)(image))


def _outputs(folder: Path) -> dict[str, str]:
    return feature_files(str(folder))


def test_feature_files_hold_the_full_splits_and_the_subset_rows_equal_a_direct_extraction(tmp_path):
    spec = {**SHAPES, "train_per_class": 6, "max_samples": 12}
    outputs = _outputs(tmp_path / "features")
    info = model_dataset_features("r", RESNET, "shapes", spec, outputs, **OPTIONS)
    train, test = load_split("shapes", spec, "train"), load_split("shapes", spec, "test")
    assert info == read_json(outputs["info"])
    assert {k: info[k] for k in ("model", "dataset", "layer", "precision", "normalize", "n_train", "n_test", "d")} == {
        "model": "r",
        "dataset": "shapes",
        "layer": "global_pool",
        "precision": "float32",
        "normalize": True,
        "n_train": 36,
        "n_test": 12,
        "d": 512,
    }
    assert "CenterCrop(size=(32, 32))" in info["preprocessing"]
    for name in ("train", "test", "train_labels", "test_labels"):  # the integrity record of each array
        data = Path(outputs[name]).read_bytes()
        array = np.load(outputs[name])
        assert info["files"][f"{name}.npy"] == {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    features = np.load(outputs["train"], mmap_mode="r")
    assert features.shape == (36, 512) and features.dtype == np.float32 and np.load(outputs["test"]).shape == (12, 512)
    np.testing.assert_array_equal(np.load(outputs["train_labels"]), train.labels)
    np.testing.assert_array_equal(np.load(outputs["test_labels"]), test.labels)

    indices = stratified_subset(train.labels, spec["max_samples"])
    subset = Subset(tmp_path / "subset.json", "shapes", len(train), train.class_names, indices)
    rows = read_feature_rows(outputs["train"], subset)
    assert len(rows) == 12 < len(train)
    np.testing.assert_array_equal(read_feature_rows(outputs["train_labels"], subset), train.labels[indices])
    alone = Split(train.labels[indices], train.class_names, lambda i: train.load_image(int(indices[i])))
    direct = extract_features(
        build_model("r", RESNET),
        alone,
        np.arange(12),
        image_size=32,
        crop_pct=1.0,
        batch_size=4,
        device=CPU,
        progress=False,
    )
    # other batch neighbours: the same images' features, up to the batch-size dependence of the CPU kernels
    np.testing.assert_allclose(rows, direct, rtol=0, atol=1e-6)


def test_bfloat16_features_are_close_to_float32_and_recorded(tmp_path):
    float32 = model_dataset_features("r", RESNET, "shapes", SHAPES, _outputs(tmp_path / "f32"), **OPTIONS)
    bfloat16 = model_dataset_features(
        "r", RESNET, "shapes", SHAPES, _outputs(tmp_path / "bf16"), **OPTIONS, precision="bfloat16"
    )
    assert (float32["precision"], bfloat16["precision"]) == ("float32", "bfloat16")
    assert read_json(tmp_path / "bf16/info.json")["precision"] == "bfloat16"
    for split in ("train", "test"):
        exact, reduced = np.load(tmp_path / f"f32/{split}.npy"), np.load(tmp_path / f"bf16/{split}.npy")
        assert reduced.dtype == np.float32 and not np.array_equal(exact, reduced)  # the forward did run in bfloat16
        # unit vectors: with bfloat16's 8-bit mantissa through 18 layers each stays within 0.02 of float32's
        # (measured: 0.006), cosine above 0.9998
        assert np.linalg.norm(exact - reduced, axis=1).max() < 0.02
        assert np.min(np.sum(exact * reduced, axis=1)) > 0.9998


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        extract_features(
            build_model("r", RESNET),
            load_split("shapes", SHAPES, "test"),
            np.arange(2),
            batch_size=2,
            device=CPU,
            precision="float8",
            progress=False,
        )


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failed_extraction_leaves_no_partial_file(tmp_path, workers):
    root = make_image_folder(tmp_path / "data", {"a": 5, "b": 6})
    (root / "train/b/5.png").write_bytes(b"not a png")  # the last image: the failure comes after two batches
    folder = tmp_path / "features"
    with pytest.raises(DatasetError, match=r"cannot read image .*train/b/5.png"):
        model_dataset_features(
            "r",
            RESNET,
            "broken",
            {"source": "image_folder", "path": str(root)},
            _outputs(folder),
            **OPTIONS,
            workers=workers,
        )
    assert list(folder.iterdir()) == []


KILLED_JOB = """
import sys
from simcon.extract import model_dataset_features
from simcon.formats import feature_files
folder, data = sys.argv[1:]
outputs = feature_files(folder)
model_dataset_features("r", {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random"},
                       "photos", {"source": "image_folder", "path": data}, outputs, image_size=32, crop_pct=1.0,
                       batch_size=2, device="cpu", normalize=True)
"""


def test_a_killed_extraction_leaves_no_partial_file(tmp_path):
    root = make_image_folder(tmp_path / "data", {"a": 40, "b": 40}, size=64)
    folder = tmp_path / "features"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        [sys.executable, "-c", KILLED_JOB, str(folder), str(root)], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in folder.glob(".train.npy.*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the train features are partly written
    job.kill()
    job.wait()
    assert list(folder.glob(".train.npy.*")), "the job ended before it was killed"
    assert not any((folder / f"{name}.npy").exists() for name in ("train", "test", "train_labels", "test_labels"))


@pytest.mark.slow
@pytest.mark.workflow
def test_probes_train_on_the_full_split_and_similarities_use_the_subset(tmp_path):
    models = {"resnet": TINY["models"]["resnet18_random"], "vit": TINY["models"]["vit_random"]}
    config = {
        "image_size": 32,
        "crop_pct": 1.0,
        "batch_size": 8,
        "device": "cpu",
        "metrics": ["cka_linear_unbiased"],
        "probe": {"seeds": [0], "weight_decay_steps": 7, "learning_rates": [0.01], "epochs": 2},
        "models": models,
        "datasets": {"shapes": {**SHAPES, "train_per_class": 6, "category": "structured", "max_samples": 12}},
    }
    targets = ["results/probes/shapes/resnet/seed0.json", "results/similarity/shapes/cka_linear_unbiased.csv"]
    run = snakemake(tmp_path, config, *targets, timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    probe = read_json(tmp_path / targets[0])
    assert (probe["n_train"], probe["n_test"]) == (36, 12)
    subset = read_json(tmp_path / "results/subsets/shapes.json")
    assert len(subset["indices"]) == 12
    features = {m: np.load(tmp_path / f"results/features/shapes/{m}/train.npy")[subset["indices"]] for m in models}
    expected = compute_similarity(features, "cka_linear_unbiased").matrix
    matrix = pd.read_csv(tmp_path / targets[1], index_col=0)
    np.testing.assert_allclose(matrix.loc[list(models), list(models)].to_numpy(), expected.to_numpy(), atol=1e-9)
