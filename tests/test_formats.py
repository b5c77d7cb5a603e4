"""The on-disk formats (simcon.formats): each format written, verified and read back; every kind of damage (a
truncated file, another shape or dtype, another checksum, a missing file, an empty or unparsable JSON file, no
record) refused with the file, the fault and the regenerating command named; long tables; no torch or PIL."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, TINY, snakemake
from simcon.formats import (
    LAYER_INDEX,
    RUN_COMMAND,
    ResultError,
    Subset,
    feature_files,
    feature_record,
    read_feature_info,
    read_feature_rows,
    read_features,
    read_layer_folder,
    read_layer_table,
    read_subset,
    regenerate_command,
    run_command,
    to_long,
    write_feature_info,
    write_layer_index,
    write_subset,
)

RNG = np.random.default_rng(0)
TRAIN = RNG.normal(size=(30, 8)).astype(np.float32)
TEST = RNG.normal(size=(12, 8)).astype(np.float32)
TRAIN_LABELS = np.repeat(np.arange(3), 10).astype(np.int64)
TEST_LABELS = np.repeat(np.arange(3), 4).astype(np.int64)
ARRAYS = {"train": TRAIN, "test": TEST, "train_labels": TRAIN_LABELS, "test_labels": TEST_LABELS}
COMMAND = "snakemake --cores all --forcerun"  # outside a run: the command without the run's own options


@pytest.fixture(autouse=True)
def outside_a_run(monkeypatch):
    monkeypatch.delenv(RUN_COMMAND, raising=False)


def write_feature_folder(folder: Path) -> dict[str, str]:
    """A feature folder as the features job writes it: the four arrays, then info.json with their records."""
    paths = feature_files(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in ARRAYS.items():
        np.save(paths[name], array)
    write_feature_info(paths, {"model": "m", "dataset": "d", "d": 8})
    return paths


def subset(path: Path = Path("results/subsets/d.json"), n_train: int = 30) -> Subset:
    return Subset(path, "d", n_train, ["a", "b", "c"], np.array([0, 4, 11, 17, 29]))


# --------------------------------------------------------------------------- records


def test_the_record_of_each_array_is_its_shape_dtype_size_and_sha256(tmp_path):
    paths = write_feature_folder(tmp_path)
    info = json.loads(Path(paths["info"]).read_text())
    assert {key: info[key] for key in ("model", "dataset", "d")} == {"model": "m", "dataset": "d", "d": 8}
    assert sorted(info["files"]) == ["test.npy", "test_labels.npy", "train.npy", "train_labels.npy"]
    for name, array in ARRAYS.items():
        data = Path(paths[name]).read_bytes()
        expected = {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        assert info["files"][f"{name}.npy"] == expected == feature_record(paths[name])
    assert read_feature_info(paths["info"]) == info == read_feature_info(paths["train"])


def test_feature_files_read_back_whole_and_by_subset_rows(tmp_path):
    paths = write_feature_folder(tmp_path)
    for name, array in ARRAYS.items():
        loaded = read_features(paths[name])
        assert loaded.dtype == array.dtype and loaded.flags.c_contiguous and loaded.flags.writeable
        np.testing.assert_array_equal(loaded, array)
    rows = read_feature_rows(paths["train"], subset())
    np.testing.assert_array_equal(rows, TRAIN[[0, 4, 11, 17, 29]])
    np.testing.assert_array_equal(read_feature_rows(paths["train_labels"], subset()), [0, 0, 1, 1, 2])


def test_a_fortran_ordered_file_reads_back_as_numpy_reads_it(tmp_path):
    paths = feature_files(str(tmp_path))
    for name, array in ARRAYS.items():
        np.save(paths[name], np.asfortranarray(array))
    write_feature_info(paths, {})
    np.testing.assert_array_equal(read_features(paths["train"]), TRAIN)


def test_feature_files_must_share_the_folder_of_info(tmp_path):
    paths = write_feature_folder(tmp_path / "a")
    with pytest.raises(ValueError, match="not all in the folder"):
        write_feature_info({**paths, "test": str(tmp_path / "test.npy")}, {})


# --------------------------------------------------------------------------- damage to feature files


def truncate(path: str | Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)


def flip_last_byte(path: str | Path) -> None:
    data = bytearray(Path(path).read_bytes())
    data[-1] ^= 0xFF
    Path(path).write_bytes(bytes(data))


RECORD = r"damaged, unlike its record in \S+/info.json: "
DAMAGE = {  # how to damage train.npy, what the error says of it
    "truncated": (lambda p: truncate(p, 500), RECORD + r"500 bytes where the record says 1088 \(truncated\)"),
    "header cut": (
        lambda p: truncate(p, 60),
        RECORD + r"no readable .npy header; 60 bytes where the record says 1088 \(truncated\)",
    ),
    "empty": (
        lambda p: truncate(p, 0),
        RECORD + r"no readable .npy header; 0 bytes where the record says 1088 \(truncated\)",
    ),
    "other shape": (
        lambda p: np.save(p, np.zeros((34, 8), np.float32)),
        RECORD + r"shape \(34, 8\) where the record says \(30, 8\); 1216 bytes where the record says 1088",
    ),
    "other dtype": (
        lambda p: np.save(p, np.zeros((60, 4), np.float16)),
        RECORD + r"shape \(60, 4\) where the record says \(30, 8\); dtype float16 \(<f2\) where the record says "
        r"<f4; 608 bytes where the record says 1088 \(truncated\)",
    ),
    "same size, other dtype": (
        lambda p: np.save(p, TRAIN.view(np.int32)),
        RECORD + r"dtype int32 \(<i4\) where the record says <f4",
    ),
    "missing": (os.remove, r"missing \(listed in \S+/info.json\)"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_feature_file_is_refused_naming_it_the_fault_and_the_command(tmp_path, kind):
    paths = write_feature_folder(tmp_path)
    damage, fault = DAMAGE[kind]
    damage(paths["train"])
    message = rf"^{paths['train']}: {fault}\. Regenerate with: {COMMAND} {paths['train']}$"
    for read in (read_features, lambda path: read_feature_rows(path, subset())):
        with pytest.raises(ResultError, match=message):
            read(paths["train"])


def test_another_checksum_is_refused_by_whole_reads_row_reads_do_not_hash(tmp_path):
    paths = write_feature_folder(tmp_path)
    flip_last_byte(paths["train"])  # the last row's last value: same size, shape and dtype
    with pytest.raises(
        ResultError,
        match=rf"^{paths['train']}: damaged, unlike its record in {paths['info']}: another sha256 \(its content "
        rf"changed\)\. Regenerate with: {COMMAND} {paths['train']}$",
    ):
        read_features(paths["train"])
    # a row read verifies shape, dtype and size only (hashing the full split per similarity job would cost more
    # than the job): the rows it reads are the file's as they are
    rows = read_feature_rows(paths["train"], subset())
    np.testing.assert_array_equal(rows[:-1], TRAIN[[0, 4, 11, 17]])
    assert not np.array_equal(rows[-1], TRAIN[29])


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("", r"damaged: empty \(0 bytes\), not JSON"),
        ("\n", r"damaged: empty \(1 bytes\), not JSON"),
        ('{"model": "m", "files": {"train.n', r"damaged: not valid JSON \(Unterminated string"),
        ('{"model": "m"}', r'no integrity records of its feature files \(no valid "files" entry\)'),
        ('{"files": {"train.npy": {"shape": [30, 8]}}}', r"no integrity records of its feature files"),
    ],
)
def test_a_damaged_info_file_or_one_without_records_is_refused(tmp_path, content, fault):
    paths = write_feature_folder(tmp_path)
    Path(paths["info"]).write_text(content)
    for read in (read_features, lambda path: read_feature_rows(path, subset()), read_feature_info):
        with pytest.raises(
            ResultError, match=rf"^{paths['info']}: {fault}.*\. Regenerate with: {COMMAND} {paths['info']}$"
        ):
            read(paths["train"])


def test_a_file_without_its_record_is_refused(tmp_path):
    paths = write_feature_folder(tmp_path)
    info = json.loads(Path(paths["info"]).read_text())
    del info["files"]["train.npy"]
    Path(paths["info"]).write_text(json.dumps(info))
    with pytest.raises(
        ResultError,
        match=rf"^{paths['train']}: no integrity record in {paths['info']}\. Regenerate with: {COMMAND} "
        rf"{paths['train']}$",
    ):
        read_features(paths["train"])
    np.testing.assert_array_equal(read_features(paths["test"]), TEST)  # the others are still readable


def test_features_of_another_split_than_the_subset_name_both_files(tmp_path):
    paths = write_feature_folder(tmp_path)
    with pytest.raises(
        ResultError,
        match=rf"^results/subsets/d.json: drawn from 40 train images of dataset 'd', but {paths['train']} has 30 "
        rf"\(the dataset changed on disk since one of them was made\)\. Regenerate with: {COMMAND} "
        rf"results/subsets/d.json {paths['train']}$",
    ):
        read_feature_rows(paths["train"], subset(n_train=40))


# --------------------------------------------------------------------------- the regenerating command


def test_the_command_is_the_runs_own_with_forcerun(monkeypatch):
    module_run = [
        "/env/lib/python3.11/site-packages/snakemake/__main__.py",
        "--cores",
        "2",
        "--configfile",
        "my x.yaml",
    ]
    assert run_command(module_run) == f"{sys.executable} -m snakemake --cores 2 --configfile 'my x.yaml'"
    assert run_command(["/env/bin/snakemake", "-d", "out", "--cores", "4"]) == "/env/bin/snakemake -d out --cores 4"
    assert regenerate_command("results/a b.json") == "snakemake --cores all --forcerun 'results/a b.json'"
    monkeypatch.setenv(RUN_COMMAND, "/env/bin/snakemake --cores 4 --configfile my.yaml")
    assert regenerate_command("results/x.npy", "results/y") == (
        "/env/bin/snakemake --cores 4 --configfile my.yaml --forcerun results/x.npy results/y"
    )


# --------------------------------------------------------------------------- subsets


def test_a_subset_file_reads_back(tmp_path):
    path = tmp_path / "d.json"
    write_subset(path, "d", 30, ["a", "b", "c"], np.array([0, 4, 11, 17, 29]))
    assert json.loads(path.read_text()) == {
        "dataset": "d",
        "n_train": 30,
        "classes": ["a", "b", "c"],
        "indices": [0, 4, 11, 17, 29],
    }
    read = read_subset(path)
    assert (read.path, read.dataset, read.n_train, read.classes) == (path, "d", 30, ["a", "b", "c"])
    assert read.indices.dtype == np.int64 and read.indices.tolist() == [0, 4, 11, 17, 29]


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("", r"damaged: empty \(0 bytes\), not JSON"),
        ("[1, 2", r"damaged: not valid JSON \(Expecting"),
        (b"\xff\xfe\x00", r"damaged: not valid JSON"),
        ("[1, 2]", r"damaged: not a subset \(expected a JSON object with dataset, n_train, classes, indices\)"),
        ('{"dataset": "d", "n_train": 30, "classes": []}', r"damaged: not a subset"),
        (
            '{"dataset": "d", "n_train": 30, "classes": [], "indices": [3, 2]}',
            r"damaged: its indices are not sorted distinct integers in \[0, 30\)",
        ),
        (
            '{"dataset": "d", "n_train": 30, "classes": [], "indices": [2, 30]}',
            r"damaged: its indices are not sorted distinct integers",
        ),
        (
            '{"dataset": "d", "n_train": 30, "classes": [], "indices": [0.5]}',
            r"damaged: its indices are not sorted distinct integers",
        ),
    ],
)
def test_a_damaged_subset_file_is_refused_naming_it_and_the_command(tmp_path, content, fault):
    path = tmp_path / "d.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ResultError, match=rf"^{path}: {fault}.*\. Regenerate with: {COMMAND} {path}$"):
        read_subset(path)


def test_a_missing_subset_file_is_refused(tmp_path):
    with pytest.raises(ResultError, match=rf"^{tmp_path}/d.json: missing\. Regenerate with"):
        read_subset(tmp_path / "d.json")


# --------------------------------------------------------------------------- layer folders

LAYERS = {"block0": (0.5, RNG.normal(size=(5, 6))), "head": (1.0, RNG.normal(size=(5, 3)))}


def write_layers(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (name, (depth, features)) in enumerate(LAYERS.items()):
        np.save(folder / f"{index:02d}.npy", features.astype(np.float32))
        entries.append({"name": name, "file": f"{index:02d}.npy", "relative_depth": depth, "d": features.shape[1]})
    write_layer_index(folder, {"model": "m", "dataset": "d", "n": 5, "layers": entries})
    return folder


def test_a_layer_folder_lists_its_files_with_records_and_reads_back(tmp_path):
    folder = write_layers(tmp_path / "m")
    index = json.loads((folder / LAYER_INDEX).read_text())
    for file in ("00.npy", "01.npy"):
        data = (folder / file).read_bytes()
        assert index["files"][file]["sha256"] == hashlib.sha256(data).hexdigest()
        assert index["files"][file]["bytes"] == len(data)
    assert index["files"]["01.npy"]["shape"] == [5, 3] and index["files"]["01.npy"]["dtype"] == "<f4"
    representations = read_layer_folder(folder, 5)
    assert [(r.model, r.layer, r.depth, r.path) for r in representations] == [
        ("m", "block0", 0.5, folder / "00.npy"),
        ("m", "head", 1.0, folder / "01.npy"),
    ]


LAYER_DAMAGE = {
    "truncated": (lambda p: truncate(p, 140), r"140 bytes where the record says 248 \(truncated\)"),
    "other shape": (
        lambda p: np.save(p, np.zeros((5, 7), np.float32)),
        r"shape \(5, 7\) where the record says \(5, 6\)",
    ),
    "other dtype": (lambda p: np.save(p, np.zeros((5, 6), np.float64)), r"dtype float64 \(<f8\) where the record"),
    "other checksum": (flip_last_byte, r"another sha256 \(its content changed\)"),
    "missing": (os.remove, r"missing \(listed in \S+layers.json\)"),
}


@pytest.mark.parametrize("kind", sorted(LAYER_DAMAGE))
def test_a_damaged_layer_file_is_refused_naming_it_and_the_command_that_remakes_the_folder(tmp_path, kind):
    folder = write_layers(tmp_path / "m")
    damage, fault = LAYER_DAMAGE[kind]
    damage(folder / "00.npy")
    with pytest.raises(ResultError, match=rf"^{folder}/00.npy: .*{fault}.*\. Regenerate with: {COMMAND} {folder}$"):
        read_layer_folder(folder)


@pytest.mark.parametrize(
    ("edit", "fault"),
    [
        (lambda index: "", r"layers.json: damaged: empty \(0 bytes\)"),
        (lambda index: json.dumps(index)[:-20], r"layers.json: damaged: not valid JSON"),
        (lambda index: json.dumps({**index, "files": None}), r"layers.json: no integrity records of its layer files"),
        (lambda index: json.dumps({**index, "layers": 3}), r"layers.json: damaged: not a layer index"),
        (
            lambda index: json.dumps({**index, "files": {"01.npy": index["files"]["01.npy"]}}),
            r"00.npy: no integrity record in \S+layers.json",
        ),
    ],
)
def test_a_damaged_layer_index_or_a_file_without_record_is_refused(tmp_path, edit, fault):
    folder = write_layers(tmp_path / "m")
    (folder / LAYER_INDEX).write_text(edit(json.loads((folder / LAYER_INDEX).read_text())))
    with pytest.raises(ResultError, match=rf"^{folder}/{fault}.*\. Regenerate with: {COMMAND} {folder}$"):
        read_layer_folder(folder)


def test_a_layer_folder_of_another_subset_size_is_refused(tmp_path):
    folder = write_layers(tmp_path / "m")
    with pytest.raises(
        ResultError, match=rf"^{folder}/00.npy: layer 'block0' has shape \(5, 6\), expected \(4, 6\)\. Regenerate"
    ):
        read_layer_folder(folder, 4)


# --------------------------------------------------------------------------- long tables and imports


def test_to_long_lists_each_pair_once_in_matrix_order():
    matrix = pd.DataFrame(
        [[1.0, 0.2, 0.3], [0.2, 1.0, 0.4], [0.3, 0.4, 1.0]], index=["c", "a", "b"], columns=["c", "a", "b"]
    )
    table = to_long(matrix)
    assert list(table.columns) == ["model_a", "model_b", "similarity"]
    assert table.values.tolist() == [["c", "a", 0.2], ["c", "b", 0.3], ["a", "b", 0.4]]


def test_a_layer_table_keeps_model_and_layer_names_as_strings(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("model_a,layer_a,depth_a,model_b,layer_b,depth_b,similarity\n1,2,0.5,1,10,1.0,0.25\n")
    table = read_layer_table(path)
    assert table.loc[0, ["model_a", "layer_a", "layer_b"]].tolist() == ["1", "2", "10"]
    assert table.loc[0, "similarity"] == 0.25


def test_the_formats_module_imports_neither_torch_nor_pil_nor_pandas():
    code = "import sys, simcon.formats\nprint(sorted(m for m in ('torch', 'PIL', 'pandas') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- end to end: damaged results of a run

METRIC, ADDED = "cka_linear_unbiased", "cka_linear_biased"
DAMAGE_CONFIG = copy.deepcopy(TINY)
DAMAGE_CONFIG["models"] = {
    "resnet18_random": {**TINY["models"]["resnet18_random"], "layers": ["layer2"]},
    "vit_random": TINY["models"]["vit_random"],
}


def damage_targets(metric: str) -> list[str]:
    """A metric's similarity matrices and the layer similarity on shapes."""
    return [
        *(f"results/similarity/{dataset}/{metric}.csv" for dataset in TINY["datasets"]),
        f"results/layers/similarity/shapes/{metric}.csv",
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of one metric: features, subsets, similarity matrices, a layer folder and its similarity."""
    workdir = tmp_path_factory.mktemp("finished")
    run = snakemake(workdir, {**DAMAGE_CONFIG, "metrics": [METRIC]}, *damage_targets(METRIC))
    assert run.returncode == 0, run.stderr[-5000:]
    return workdir


def result_digests(workdir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(workdir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((workdir / "results").rglob("*"))
        if path.is_file()
    }


def damage_and_add_a_metric(finished: Path, workdir: Path, damaged: str, damage) -> tuple[dict, str, Path]:
    """Copy the finished run to `workdir`, damage the file `damaged` keeping its modification time (as a restore or
    `cp -p` does), and run again with one more metric, --keep-going. Returns the digests of every result file
    before the damage, the run's output and the config file."""
    shutil.copytree(finished, workdir, symlinks=True)  # keeps modification times
    before = result_digests(workdir)
    path = workdir / damaged
    stat = path.stat()
    damage(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    quiet = snakemake(workdir, {**DAMAGE_CONFIG, "metrics": [METRIC]}, *damage_targets(METRIC), "-n")
    assert quiet.returncode == 0 and "Nothing to be done" in quiet.stdout + quiet.stderr  # Snakemake cannot see it
    run = snakemake(
        workdir,
        {**DAMAGE_CONFIG, "metrics": [METRIC, ADDED]},
        *damage_targets(METRIC),
        *damage_targets(ADDED),
        "--keep-going",
    )
    assert run.returncode != 0
    return before, run.stdout + run.stderr, workdir / "config.yaml"


def regenerate_and_compare(
    workdir: Path, output: str, config: Path, log: Path, fault: str, target: str, before
) -> None:
    """The failed job's log names the damaged file, the fault and the command: the run's own with --forcerun of the
    target. That command repairs the run, and every result file but the added metric's is as before the damage."""
    message = re.search(r"ResultError: (.*)\. Regenerate with: (.*)$", log.read_text(), flags=re.M)
    assert message, log.read_text()[-3000:]
    assert re.fullmatch(fault, message[1]), message[1]
    command = shlex.split(message[2])
    argv = ["-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile", str(config), "--cores", "2"]
    targets = [*damage_targets(METRIC), *damage_targets(ADDED)]
    assert command == [sys.executable, "-m", "snakemake", *argv, *targets, "--keep-going", "--forcerun", target]
    assert message[0] in output  # Snakemake shows the failed job's log (profiles/default: show-failed-logs)
    assert (workdir / f"results/similarity/cells/{ADDED}.csv").is_file()  # the other jobs ran: the DAG was built

    env = {**os.environ, "SIMCON_CACHE_DIR": str(workdir / "cache")}
    repaired = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert repaired.returncode == 0, repaired.stderr[-5000:]
    after = result_digests(workdir)
    assert {path: after.get(path) for path in before} == before
    assert all(Path(workdir / path).is_file() for path in targets)


@pytest.mark.slow
@pytest.mark.workflow
def test_a_truncated_feature_file_fails_the_job_that_reads_it_and_its_command_repairs_it(finished, tmp_path):
    damaged = "results/features/shapes/resnet18_random/train.npy"
    size = (finished / damaged).stat().st_size
    before, output, config = damage_and_add_a_metric(finished, tmp_path / "run", damaged, lambda p: truncate(p, 4096))
    regenerate_and_compare(
        tmp_path / "run",
        output,
        config,
        tmp_path / f"run/logs/similarity/shapes/{ADDED}.log",
        rf"{damaged}: damaged, unlike its record in results/features/shapes/resnet18_random/info.json: 4096 bytes "
        rf"where the record says {size} \(truncated\)",
        damaged,
        before,
    )


@pytest.mark.slow
@pytest.mark.workflow
def test_a_truncated_layer_file_fails_the_layer_similarity_and_its_command_repairs_the_folder(finished, tmp_path):
    folder = "results/layers/shapes/resnet18_random"
    size = (finished / folder / "00.npy").stat().st_size
    before, output, config = damage_and_add_a_metric(
        finished, tmp_path / "run", f"{folder}/00.npy", lambda p: truncate(p, size // 2)
    )
    regenerate_and_compare(
        tmp_path / "run",
        output,
        config,
        tmp_path / f"run/logs/layer_similarity/shapes/{ADDED}.log",
        rf"{folder}/00.npy: damaged, unlike its record in {folder}/layers.json: {size // 2} bytes where the record "
        rf"says {size} \(truncated\)",
        folder,
        before,
    )


@pytest.mark.slow
@pytest.mark.workflow
def test_an_empty_subset_file_fails_the_jobs_that_read_it_and_its_command_repairs_it(finished, tmp_path):
    damaged = "results/subsets/shapes.json"
    before, output, config = damage_and_add_a_metric(finished, tmp_path / "run", damaged, lambda p: truncate(p, 0))
    regenerate_and_compare(
        tmp_path / "run",
        output,
        config,
        tmp_path / f"run/logs/similarity/shapes/{ADDED}.log",
        rf"{damaged}: damaged: empty \(0 bytes\), not JSON",
        damaged,
        before,
    )
