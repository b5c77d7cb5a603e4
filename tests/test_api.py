"""The library's entry points for your own arrays, images and tables (simcon.api), the `simcon` command that runs
them, the runnable examples of docs/api.md, and this workflow used as a Snakemake module of another."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FIVE, METADATA, REPO, five_matrices, make_image_folder
from simcon.api import (
    InputError,
    consistency_analysis,
    feature_paths,
    read_features,
    read_metadata,
    read_similarity_folder,
)
from simcon.cli import main
from simcon.consistency import consistency, model_sets
from simcon.formats import feature_files, write_feature_info
from simcon.similarity import compute_similarity

COMMAND = [sys.executable, "-m", "simcon.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The `simcon` command in a fresh Python."""
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture
def arrays(tmp_path) -> dict[str, np.ndarray]:
    """Three models' float32 features of 40 samples in tmp_path/features/<id>.npy."""
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(40, 6))
    features = {
        "alpha": shared @ rng.normal(size=(6, 12)) + 0.2 * rng.normal(size=(40, 12)),
        "beta": shared @ rng.normal(size=(6, 9)) + 0.2 * rng.normal(size=(40, 9)),
        "gamma": rng.normal(size=(40, 5)),
    }
    (tmp_path / "features").mkdir()
    for model_id, array in features.items():
        np.save(tmp_path / "features" / f"{model_id}.npy", array.astype(np.float32))
    return {model_id: array.astype(np.float32) for model_id, array in features.items()}


def test_the_console_script_is_the_command():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"simcon": "simcon.cli:main"}


@pytest.mark.parametrize("metric", ["cka_linear_unbiased", "rsa_correlation_spearman", "mutual_knn5"])
def test_the_commands_matrix_is_compute_similarity_of_the_same_arrays(tmp_path, arrays, metric):
    paths = [str(tmp_path / "features" / f"{model_id}.npy") for model_id in arrays]
    result = run("similarity", *paths, "--metric", metric, "--output", str(tmp_path / "matrix.csv"))
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(tmp_path / "matrix.csv", index_col=0)
    expected = compute_similarity(arrays, metric).matrix
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=0, atol=1e-15, check_names=False)
    assert "it/s]" in result.stderr  # the progress bar


def test_a_folder_of_arrays_and_stdout(tmp_path, arrays, capsys):
    assert main(["similarity", str(tmp_path / "features"), "--metric", "procrustes"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col=0)
    assert list(printed.index) == ["alpha", "beta", "gamma"]
    np.testing.assert_allclose(
        printed.to_numpy(), compute_similarity(arrays, "procrustes").matrix.to_numpy(), atol=1e-15
    )


def test_feature_folders_are_read_by_their_names_and_verified(tmp_path, arrays):
    for model_id, array in arrays.items():
        outputs = feature_files(str(tmp_path / "run" / model_id))
        Path(outputs["info"]).parent.mkdir(parents=True)
        for name, values in (
            ("train", array),
            ("test", array),
            ("train_labels", np.zeros(40)),
            ("test_labels", np.zeros(40)),
        ):
            np.save(outputs[name], values)
        write_feature_info(outputs, {"model": model_id})
    read = read_features([tmp_path / "run"])
    assert list(read) == list(arrays) and all(np.array_equal(read[m], arrays[m]) for m in arrays)
    with pytest.raises(InputError, match="two feature arrays would be model 'alpha'"):
        read_features([tmp_path / "run", tmp_path / "features/alpha.npy"])
    np.save(tmp_path / "run/beta/train.npy", arrays["beta"] + 1)  # not what its info.json records
    with pytest.raises(InputError, match=r"beta/train.npy"):
        read_features([tmp_path / "run"])


def _short(folder: Path) -> list[str]:
    np.save(folder / "short.npy", np.ones((30, 4), dtype=np.float32))
    return [str(folder / "alpha.npy"), str(folder / "short.npy")]


def _nan(folder: Path) -> list[str]:
    array = np.load(folder / "beta.npy")
    array[7, 2] = np.nan
    np.save(folder / "nan.npy", array)
    return [str(folder / "alpha.npy"), str(folder / "nan.npy")]


def _inf(folder: Path) -> list[str]:
    array = np.load(folder / "beta.npy")
    array[3, 0] = np.inf
    np.save(folder / "inf.npy", array)
    return [str(folder / "alpha.npy"), str(folder / "inf.npy")]


@pytest.mark.parametrize(
    "paths,metric,message",
    [
        (
            _short,
            "cka_linear_unbiased",
            r"different numbers of rows \(samples\): \{'.*alpha.npy': 40, '.*short.npy': 30\}",
        ),
        (_nan, "cka_linear_unbiased", r"nan.npy: row 7 holds NaN or infinite values"),
        (_inf, "cka_linear_unbiased", r"inf.npy: row 3 holds NaN or infinite values"),
        (
            lambda folder: [str(folder / "alpha.npy"), str(folder / "beta.npy")],
            "cka_lineer_unbiased",
            r"unknown similarity metric 'cka_lineer_unbiased'; closest: cka_linear_unbiased",
        ),
        (
            lambda folder: [str(folder / "alpha.npy"), str(folder / "missing.npy")],
            "cka_linear_unbiased",
            r"missing.npy does not exist",
        ),
    ],
)
def test_bad_input_stops_the_command_naming_the_culprit_and_writes_nothing(tmp_path, arrays, paths, metric, message):
    result = run("similarity", *paths(tmp_path / "features"), "--metric", metric, "--output", str(tmp_path / "m.csv"))
    assert result.returncode == 2
    assert re.search(f"simcon similarity: error: .*{message}", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.csv").exists()


# --------------------------------------------------------------------------- consistency of similarity tables


def test_the_consistency_command_gives_the_consistency_of_matrix_files_and_of_long_tables(tmp_path):
    matrices = five_matrices()
    (tmp_path / "matrices").mkdir()
    (tmp_path / "long").mkdir()
    for dataset, matrix in matrices.items():
        matrix.to_csv(tmp_path / "matrices" / f"{dataset}.csv", index_label="model")
        rows, cols = np.triu_indices(len(matrix), k=1)
        long = pd.DataFrame(
            {"model_b": matrix.index[cols], "model_a": matrix.index[rows], "similarity": matrix.to_numpy()[rows, cols]}
        )
        long.assign(metric="m").to_csv(tmp_path / "long" / f"{dataset}.csv", index=False)
    METADATA.assign(parameters=[5e6, 5e6, 3e8, 3e8, 5e6]).drop(columns="size_class").to_csv(
        tmp_path / "models.csv", index_label="model"
    )
    expected = consistency(matrices, model_sets(METADATA))
    for folder in ("matrices", "long"):
        result = run(
            "consistency",
            str(tmp_path / folder),
            "--metadata",
            str(tmp_path / "models.csv"),
            "--output",
            str(tmp_path / f"out_{folder}"),
        )
        assert result.returncode == 0, result.stderr
        table = pd.read_csv(tmp_path / f"out_{folder}/consistency.csv", keep_default_na=False)
        pd.testing.assert_frame_equal(table.drop(columns="metric"), expected, check_exact=False, rtol=1e-12)
        assert (tmp_path / f"out_{folder}/consistency_by_category.png").stat().st_size > 10_000
        assert "mean rho" in result.stderr
    assert read_similarity_folder(tmp_path / "long")["d2"].equals(read_similarity_folder(tmp_path / "matrices")["d2"])


def test_the_consistency_command_names_a_model_without_metadata_and_writes_nothing(tmp_path):
    (tmp_path / "sims").mkdir()
    for dataset, matrix in five_matrices().items():
        matrix.to_csv(tmp_path / "sims" / f"{dataset}.csv", index_label="model")
    METADATA.drop(index="e").to_csv(tmp_path / "models.csv", index_label="model")
    result = run(
        "consistency",
        str(tmp_path / "sims"),
        "--metadata",
        str(tmp_path / "models.csv"),
        "--output",
        str(tmp_path / "out"),
    )
    assert (
        result.returncode == 2
        and "model(s) ['e'] of the similarity matrices have no row in the metadata" in result.stderr
    )
    assert not (tmp_path / "out").exists()
    METADATA.drop(columns="size_class").to_csv(tmp_path / "no_size.csv", index_label="model")
    with pytest.raises(
        InputError, match=r"lacks the column\(s\) \['size_class'\] \(size_class may come from parameters\)"
    ):
        read_metadata(tmp_path / "no_size.csv")
    assert consistency_analysis(five_matrices(), METADATA, metric="m").table["metric"].eq("m").all()


def test_a_matrix_file_that_is_not_one_is_named(tmp_path):
    (tmp_path / "sims").mkdir()
    for dataset, matrix in five_matrices().items():
        matrix.to_csv(tmp_path / "sims" / f"{dataset}.csv", index_label="model")
    broken = five_matrices()["d3"]
    broken.iloc[0, 1] = 0.0
    broken.to_csv(tmp_path / "sims" / "d3.csv", index_label="model")
    with pytest.raises(InputError, match=r"d3.csv: the matrix is not symmetric"):
        read_similarity_folder(tmp_path / "sims")


# --------------------------------------------------------------------------- features of an image folder


@pytest.mark.slow
def test_the_extract_command_writes_the_feature_folder_or_nothing(tmp_path):
    images = make_image_folder(tmp_path / "photos", {"cat": 3, "dog": 2})
    model = [
        "--backend",
        "timm",
        "--name",
        "resnet18",
        "--layer",
        "global_pool",
        "--weights",
        "random",
        "--device",
        "cpu",
    ]
    result = run("extract", str(images), str(tmp_path / "out"), *model, "--image-size", "32")
    assert result.returncode == 0, result.stderr
    train = np.load(tmp_path / "out/train.npy")
    assert train.shape == (5, 512) and np.allclose(np.linalg.norm(train, axis=1), 1, atol=1e-5)
    assert np.load(tmp_path / "out/test_labels.npy").tolist() == [0, 0, 0, 1, 1]
    assert feature_paths([tmp_path / "out"]) == {"out": tmp_path / "out/train.npy"}

    bad = run("extract", str(tmp_path / "nowhere"), str(tmp_path / "out2"), *model)
    assert bad.returncode == 2 and "image folder" in bad.stderr and "nowhere does not exist" in bad.stderr
    unknown = [*model[:3], "resnet_nonexistent", *model[4:]]
    bad = run("extract", str(images), str(tmp_path / "out3"), *unknown)
    assert bad.returncode == 2 and "has no model named 'resnet_nonexistent'" in bad.stderr
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
    assert not list(tmp_path.glob(".out3*"))  # no temporary folder left either


# --------------------------------------------------------------------------- docs/api.md


def doc_blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of docs/api.md: (language, code), in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", (REPO / "docs/api.md").read_text(), flags=re.M | re.S)


@pytest.mark.slow
def test_the_examples_of_the_api_page_run(tmp_path, monkeypatch):
    """Every Python block, in order in one namespace, and every `simcon` line of the bash blocks, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = {"python": 0, "simcon": 0}
    for language, code in doc_blocks():
        if language == "python":
            exec(compile(code, "docs/api.md", "exec"), namespace)
            ran["python"] += 1
        elif language == "bash":
            for line in code.splitlines():
                if line.startswith("simcon "):
                    result = run(*shlex.split(line)[1:], cwd=tmp_path)
                    assert result.returncode == 0, f"{line}\n{result.stderr}"
                    ran["simcon"] += 1
    assert ran == {"python": 4, "simcon": 5}
    assert (tmp_path / "imagenet_cka.csv").is_file() and (tmp_path / "consistency_cli/consistency.csv").is_file()
    assert (tmp_path / "photo_features/vit_tiny/train.npy").is_file()


# --------------------------------------------------------------------------- the workflow as a module


OUTER = """
configfile: "simcon.yaml"


module simcon:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from simcon exclude all as simcon_*


rule headline:
    input:
        "results/consistency/cka_linear_unbiased/consistency.csv",
    output:
        "headline.csv",
    default_target: True
    shell:
        "grep -e '^metric' -e ',all,' {{input}} > {{output}}"
"""


@pytest.mark.slow
@pytest.mark.workflow
def test_another_workflow_uses_this_one_as_a_module(tmp_path):
    import yaml

    rows = []
    for dataset, matrix in five_matrices().items():
        for i, a in enumerate(FIVE):
            for b in FIVE[i + 1 :]:
                rows.append(
                    {
                        "model_a": a,
                        "model_b": b,
                        "dataset": dataset,
                        "metric": "cka_linear_unbiased",
                        "similarity": matrix.loc[a, b],
                    }
                )
    pd.DataFrame(rows).to_csv(tmp_path / "sims.csv", index=False)
    metadata = {"architecture": "ResNet", "training_data": "IN1k", "parameters": 1e7}
    config = {
        "similarities": {"tables": ["sims.csv"]},
        "models": {m: {"metadata": {**metadata, **METADATA.loc[m].drop("size_class").to_dict()}} for m in FIVE},
        "datasets": {d: {"category": "structured"} for d in ("d1", "d2", "d3")},
    }
    (tmp_path / "simcon.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "Snakefile").write_text(OUTER.format(snakefile=REPO / "Snakefile"))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(tmp_path / "Snakefile"),
        "-d",
        str(tmp_path),
        "--cores",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    assert re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M) == [
        *["simcon_similarity_table"] * 3,
        "simcon_consistency",
        "headline",
    ]
    headline = pd.read_csv(tmp_path / "headline.csv")
    expected = consistency(five_matrices(), model_sets(METADATA))
    np.testing.assert_allclose(headline["rho"], expected[expected["category"] == "all"]["rho"], rtol=1e-12)
