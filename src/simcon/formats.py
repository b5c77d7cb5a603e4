"""The on-disk formats of the results that workflow jobs pass to one another, their writers and their verifying
readers (docs/outputs.md, docs/features.md):

- feature files, `results/features/{dataset}/{model}/` (FEATURE_FILES): `train.npy` and `test.npy`, float32
  (n, d), row i the features of image i of the full split; `train_labels.npy` and `test_labels.npy`, int64 (n,);
  `info.json`, what produced them and the record of each `.npy` (write_feature_info; read_features,
  read_feature_rows);
- layer folders, `results/layers/{dataset}/{model}/`: one float32 (n, d) `NN.npy` per layer, row i the subset's
  i-th train image, and LAYER_INDEX, which names each file's layer and relative depth and holds its record
  (write_layer_index; read_layer_folder);
- subset files, `results/subsets/{dataset}.json`: the train images the similarities are computed on (write_subset;
  read_subset);
- long similarity tables: one row per model pair (to_long) or per pair of (model, layer) representations
  (LAYER_TABLE_COLUMNS; read_layer_table).

Integrity records. `info.json` and `layers.json` hold under "files" the record of every `.npy` of their folder:
shape, dtype (numpy's dtype.str), size in bytes and sha256, taken from the file once it is written. A reader
verifies each file against its record before using it: shape, dtype and size always; the sha256 where it reads the
whole file anyway (probes, layer files), not where it reads a few rows through a memory map (the similarity jobs'
subset rows of `train.npy`, which would otherwise hash the full split, gigabytes at the paper's scale, per job).
Whatever is wrong — a missing or unparsable file, no record, another shape, dtype, size or checksum — raises
ResultError naming the file, the fault and the command that regenerates it: the run's own Snakemake command
(RUN_COMMAND) with `--forcerun` of the rule output the file belongs to.

Torch- and PIL-free: numpy, and pandas only where long tables are made or read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simcon.io import write_json

if TYPE_CHECKING:  # pandas is imported where used: a probe job reads features without it
    import pandas as pd

FEATURE_FILES = ("train", "test", "train_labels", "test_labels", "info")
"""The files of a (model, dataset) feature folder, by name: `<name>.npy`, and `info.json` for "info"."""

LAYER_INDEX = "layers.json"
"""The file of a layer folder that names its layers, their files and relative depths, and records the files."""

LAYER_ENTRY_KEYS = ("name", "file", "relative_depth", "d")
"""What LAYER_INDEX says of each layer, in its "layers" list (depth order)."""

LAYER_TABLE_COLUMNS = ["model_a", "layer_a", "depth_a", "model_b", "layer_b", "depth_b", "similarity"]
"""Columns of the long table of representation pairs (the layer similarity of a dataset under a metric)."""

RUN_COMMAND = "SIMCON_RUN_COMMAND"
"""The environment variable in which the workflow passes its jobs the command of the run (workflow/rules/common.smk),
so that an error can name the command that regenerates a damaged file."""

RECORD_KEYS = ("shape", "dtype", "bytes", "sha256")
"""What the integrity record of an .npy file holds."""

_CHUNK = 1 << 24  # bytes read at a time while hashing a file being loaded


class ResultError(ValueError):
    """A result file that a job cannot use: missing, unparsable, without its integrity record, different from it, or
    not of the split it is read with. The message names the file, what is wrong and the command that regenerates
    it."""


# --------------------------------------------------------------------------- regenerating


def run_command(argv: Sequence[str]) -> str:
    """The shell command of the Snakemake run whose arguments are `argv` (sys.argv of its main process): Snakemake's
    own executable as invoked, or this Python's `-m snakemake` where it ran as a module."""
    program = [sys.executable, "-m", "snakemake"] if argv[0].endswith("__main__.py") else [argv[0]]
    return shlex.join([*program, *argv[1:]])


def regenerate_command(*targets: str | os.PathLike) -> str:
    """The command that regenerates `targets` (outputs of rules) and everything computed from them: the run's own
    command (RUN_COMMAND; `snakemake --cores all` outside a run) with `--forcerun` of the targets."""
    run = os.environ.get(RUN_COMMAND, "snakemake --cores all")
    return f"{run} --forcerun {shlex.join(str(target) for target in targets)}"


def _error(path: str | os.PathLike, problem: str, *targets: str | os.PathLike) -> ResultError:
    return ResultError(f"{path}: {problem}. Regenerate with: {regenerate_command(*(targets or (path,)))}")


# --------------------------------------------------------------------------- integrity records of .npy files


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes (read in chunks, never whole in memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _npy_header(handle: Any) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """Shape, Fortran order and dtype from the header of the open .npy file; None when it has no readable header."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        reader = readers.get(np.lib.format.read_magic(handle))
        return None if reader is None else reader(handle)
    except (ValueError, OSError, SyntaxError):
        return None


def npy_record(path: str | os.PathLike) -> dict[str, Any]:
    """The integrity record of a complete .npy file: shape, dtype (dtype.str), size in bytes, sha256."""
    with open(path, "rb") as handle:
        header = _npy_header(handle)
    if header is None:
        raise ValueError(f"{path}: not an .npy file")
    shape, _, dtype = header
    return {
        "shape": list(shape),
        "dtype": dtype.str,
        "bytes": Path(path).stat().st_size,
        "sha256": file_sha256(path),
    }


def _records(folder: Path, files: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {file: npy_record(folder / file) for file in files}


def _check_record(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and set(RECORD_KEYS) <= set(record)
        and isinstance(record["shape"], list)
        and len(record["shape"]) > 0
        and all(isinstance(size, int) for size in record["shape"])
        and isinstance(record["dtype"], str)
        and isinstance(record["bytes"], int)
    )


def _verify_npy(path: Path, record: Mapping[str, Any], index: str, target: str | os.PathLike) -> None:
    """Raise ResultError unless the .npy file `path` has the recorded shape, dtype and size (the record read from the
    file `index`; `target` the rule output to regenerate)."""
    if not path.is_file():
        raise _error(path, f"missing (listed in {index})", target)
    with open(path, "rb") as handle:
        header = _npy_header(handle)
    size = path.stat().st_size
    problems = []
    if header is None:
        problems.append("no readable .npy header")
    else:
        shape, _, dtype = header
        if list(shape) != record["shape"]:
            problems.append(f"shape {tuple(shape)} where the record says {tuple(record['shape'])}")
        if dtype.str != record["dtype"]:
            problems.append(f"dtype {dtype.name} ({dtype.str}) where the record says {record['dtype']}")
    if size != record["bytes"]:
        cut = " (truncated)" if size < record["bytes"] else ""
        problems.append(f"{size} bytes where the record says {record['bytes']}{cut}")
    if problems:
        raise _error(path, f"damaged, unlike its record in {index}: {'; '.join(problems)}", target)


def _checksum_error(path: Path, index: str, target: str | os.PathLike) -> ResultError:
    return _error(path, f"damaged, unlike its record in {index}: another sha256 (its content changed)", target)


def _load_hashed(path: Path) -> tuple[np.ndarray, str]:
    """The array of an .npy file (its header already verified) and the sha256 of the file, from one read."""
    with open(path, "rb") as handle:
        header = _npy_header(handle)
        assert header is not None
        shape, fortran, dtype = header
        offset = handle.tell()
        handle.seek(0)
        digest = hashlib.sha256(handle.read(offset))
        buffer = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
        view = memoryview(buffer.reshape(-1).view(np.uint8))
        filled = 0
        while filled < len(view):
            count = handle.readinto(view[filled : filled + _CHUNK])
            if not count:
                break
            digest.update(view[filled : filled + count])
            filled += count
        digest.update(handle.read())
    return (buffer.T if fortran else buffer), digest.hexdigest()


def _read_index(path: Path, target: str | os.PathLike, what: str) -> dict[str, Any]:
    """A folder's JSON index (info.json, layers.json) with a record for every file under "files"."""
    index = _read_json_file(path, target)
    files = index.get("files") if isinstance(index, dict) else None
    if not isinstance(files, dict) or not all(_check_record(record) for record in files.values()):
        raise _error(path, f'no integrity records of its {what} (no valid "files" entry)', target)
    return index


def _read_json_file(path: Path, target: str | os.PathLike) -> Any:
    if not path.is_file():
        raise _error(path, "missing", target)
    data = path.read_bytes()
    if not data.strip():
        raise _error(path, f"damaged: empty ({len(data)} bytes), not JSON", target)
    try:
        return json.loads(data)
    except ValueError as error:  # not JSON, or not text
        raise _error(path, f"damaged: not valid JSON ({error})", target) from None


# --------------------------------------------------------------------------- feature files


def feature_files(folder: str) -> dict[str, str]:
    """The path of each of FEATURE_FILES in a feature folder (a path or a path pattern such as
    'results/features/{dataset}/{model}')."""
    return {name: f"{folder}/{name}.json" if name == "info" else f"{folder}/{name}.npy" for name in FEATURE_FILES}


def write_feature_info(outputs: Mapping[str, str | os.PathLike], info: Mapping[str, Any]) -> dict[str, Any]:
    """Write `info` to outputs['info'] (atomically) with the integrity record of each .npy of `outputs` (the paths
    of FEATURE_FILES, all in one folder, every .npy complete) under "files", by file name. Returns what it wrote."""
    folder = Path(outputs["info"]).parent
    paths = [Path(outputs[name]) for name in FEATURE_FILES if name != "info"]
    if any(path.parent != folder for path in paths):
        raise ValueError(f"feature files {[str(path) for path in paths]} are not all in the folder of {folder}")
    written = {**info, "files": _records(folder, [path.name for path in paths])}
    write_json(outputs["info"], written)
    return written


def read_feature_info(path: str | os.PathLike) -> dict[str, Any]:
    """A feature folder's info.json (its path, or that of a file beside it), with a valid record of each .npy;
    ResultError otherwise."""
    info_path = _info_path(Path(path))
    return _read_index(info_path, info_path, "feature files")


def _info_path(path: Path) -> Path:
    return path if path.suffix == ".json" else path.with_name(f"{FEATURE_FILES[-1]}.json")


def feature_record(path: str | os.PathLike) -> dict[str, Any]:
    """The integrity record of a feature file (.npy) in the info.json beside it; ResultError when there is none."""
    path = Path(path)
    record = read_feature_info(path)["files"].get(path.name)
    if record is None:
        raise _error(path, f"no integrity record in {_info_path(path)}")
    return record


def read_features(path: str | os.PathLike) -> np.ndarray:
    """The whole array of a feature file (features or labels), verified against its record, sha256 included."""
    path = Path(path)
    record = feature_record(path)
    _verify_npy(path, record, str(_info_path(path)), path)
    array, digest = _load_hashed(path)
    if digest != record["sha256"]:
        raise _checksum_error(path, str(_info_path(path)), path)
    return array


def read_feature_rows(path: str | os.PathLike, subset: Subset) -> np.ndarray:
    """The rows of the subset's indices in a feature file of the full train split (features or labels), read through a
    memory map: only those rows are loaded. The file is verified against its record (shape, dtype, size: the full
    file is not hashed), and its rows against the split the subset was drawn from."""
    path = Path(path)
    record = feature_record(path)
    _verify_npy(path, record, str(_info_path(path)), path)
    subset.check_split(record["shape"][0], str(path), path)
    return np.asarray(np.load(path, mmap_mode="r")[subset.indices])


# --------------------------------------------------------------------------- subsets


@dataclass(frozen=True)
class Subset:
    """The similarity subset of a dataset, as its file holds it: the sorted `indices` (int64) into a train split of
    `n_train` images with classes `classes`."""

    path: Path
    dataset: str
    n_train: int
    classes: list[str]
    indices: np.ndarray

    def check_split(self, n_train: int, what: str, *stale: str | os.PathLike) -> None:
        """Raise ResultError when `what`, a train split of `n_train` images, is not the split the subset was drawn from:
        the dataset changed on disk since one of them was made. The command regenerates the subset and `stale`."""
        if n_train != self.n_train:
            raise _error(
                self.path,
                f"drawn from {self.n_train} train images of dataset '{self.dataset}', but {what} has {n_train} "
                "(the dataset changed on disk since one of them was made)",
                self.path,
                *stale,
            )


def write_subset(
    path: str | os.PathLike, dataset: str, n_train: int, classes: Sequence[str], indices: Sequence[int]
) -> None:
    """Write a dataset's similarity subset file, atomically."""
    write_json(
        path, {"dataset": dataset, "n_train": n_train, "classes": list(classes), "indices": [int(i) for i in indices]}
    )


def read_subset(path: str | os.PathLike) -> Subset:
    """A subset file, checked: ResultError when it is missing, not JSON, or not a subset (keys, sorted distinct
    indices within the split)."""
    path = Path(path)
    data = _read_json_file(path, path)
    keys = {"dataset": str, "n_train": int, "classes": list, "indices": list}
    if not isinstance(data, dict) or not all(isinstance(data.get(key), kind) for key, kind in keys.items()):
        raise _error(path, f"damaged: not a subset (expected a JSON object with {', '.join(keys)})")
    indices = np.asarray(data["indices"])
    if len(indices) and (
        indices.dtype.kind != "i" or indices[0] < 0 or indices[-1] >= data["n_train"] or np.any(np.diff(indices) <= 0)
    ):
        raise _error(path, f"damaged: its indices are not sorted distinct integers in [0, {data['n_train']})")
    return Subset(path, data["dataset"], data["n_train"], data["classes"], indices.astype(np.int64))


# --------------------------------------------------------------------------- layer folders


@dataclass(frozen=True)
class Representation:
    """One layer of one model: its name, relative depth (1 = the representation layer) and feature file."""

    model: str
    layer: str
    depth: float
    path: Path


def write_layer_index(folder: str | os.PathLike, index: Mapping[str, Any]) -> dict[str, Any]:
    """Write a layer folder's LAYER_INDEX (atomically): `index` with the integrity record of the file of every entry of
    its "layers" (each complete) under "files", by file name. Returns what it wrote."""
    folder = Path(folder)
    written = {**index, "files": _records(folder, [entry["file"] for entry in index["layers"]])}
    write_json(folder / LAYER_INDEX, written)
    return written


def read_layer_index(folder: str | os.PathLike) -> dict[str, Any]:
    """A layer folder's LAYER_INDEX, with a valid record of every file; ResultError otherwise."""
    folder = Path(folder)
    index = _read_index(folder / LAYER_INDEX, folder, "layer files")
    entries = index.get("layers")
    if (
        not isinstance(index.get("model"), str)
        or not isinstance(index.get("n"), int)
        or not isinstance(entries, list)
        or not all(isinstance(entry, dict) and set(LAYER_ENTRY_KEYS) <= set(entry) for entry in entries)
    ):
        raise _error(
            folder / LAYER_INDEX, f'damaged: not a layer index ("model", "n", "layers" of {LAYER_ENTRY_KEYS})', folder
        )
    return index


def read_layer_folder(folder: str | os.PathLike, n: int | None = None) -> list[Representation]:
    """The representations of one model's layer folder, in depth order, every file verified against its record (shape,
    dtype, size and sha256: the similarity reads the files whole). ResultError naming the file and the command that
    regenerates the folder when a file is damaged, its shape is not (n, d) as listed (n: the index's, or the given
    one: the subset's), or the index lacks the representation layer (relative depth 1) or its depths do not increase
    in (0, 1]."""
    folder = Path(folder)
    index = read_layer_index(folder)
    rows = index["n"] if n is None else n
    representations = []
    for entry in index["layers"]:
        path, record = folder / entry["file"], index["files"].get(entry["file"])
        if record is None:
            raise _error(path, f"no integrity record in {folder / LAYER_INDEX}", folder)
        _verify_npy(path, record, str(folder / LAYER_INDEX), folder)
        if record["shape"] != [rows, entry["d"]]:
            raise _error(
                path,
                f"layer {entry['name']!r} has shape {tuple(record['shape'])}, expected ({rows}, {entry['d']})",
                folder,
            )
        if file_sha256(path) != record["sha256"]:
            raise _checksum_error(path, str(folder / LAYER_INDEX), folder)
        representations.append(Representation(index["model"], entry["name"], float(entry["relative_depth"]), path))
    depths = [r.depth for r in representations]
    if not depths or depths[-1] != 1.0 or not all(a < b for a, b in zip([0.0, *depths], depths)):
        raise _error(
            folder / LAYER_INDEX,
            f"relative depths must increase in (0, 1] and end with the representation layer at 1, got {depths}",
            folder,
        )
    return representations


# --------------------------------------------------------------------------- long similarity tables


def to_long(matrix: pd.DataFrame) -> pd.DataFrame:
    """Tidy table of the pairs a < b (in matrix order): model_a, model_b, similarity."""
    import pandas as pd

    rows, cols = np.triu_indices(len(matrix), k=1)
    return pd.DataFrame(
        {
            "model_a": matrix.index[rows],
            "model_b": matrix.columns[cols],
            "similarity": matrix.to_numpy()[rows, cols],
        }
    )


def read_layer_table(path: str | os.PathLike) -> pd.DataFrame:
    """A long table of representation pairs (LAYER_TABLE_COLUMNS) from CSV (model and layer names stay strings)."""
    import pandas as pd

    return pd.read_csv(path, dtype={"model_a": str, "layer_a": str, "model_b": str, "layer_b": str})
