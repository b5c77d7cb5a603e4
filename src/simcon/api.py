"""The library on your own arrays, images and tables (docs/api.md): feature arrays from files, their similarity
matrix under a registered metric, one model's feature files of an image folder, and the consistency tables and
figure of similarity matrices with the models' metadata. The `simcon` command (simcon.cli) runs these functions.

Every problem with a given file or array is an InputError naming it. torch, timm and matplotlib are imported by the
functions that need them, not with this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simcon import formats
from simcon.consistency import check_same_models, consistency, model_sets, summarise
from simcon.metrics import get_metric
from simcon.tables import SIMILARITY_COLUMNS, TableError, checked_similarities, read_table, similarity_matrix
from simcon.vocabulary import CATEGORY_TITLES, MODEL_CATEGORIES, size_class


class InputError(ValueError):
    """A file or array given to the library's entry points is unusable; the message names it."""


# --------------------------------------------------------------------------- feature arrays


def feature_paths(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """The feature array of each model, by model id, from `paths`: an .npy file (id: its name without .npy), a
    feature folder as `simcon extract` and the workflow write them (simcon.formats; id: the folder's name, its
    train.npy), or a folder of either (each in name order). InputError if a path does not exist or holds no array,
    or two arrays would get one id."""
    found: dict[str, Path] = {}

    def add(model_id: str, path: Path) -> None:
        if model_id in found:
            raise InputError(f"two feature arrays would be model {model_id!r}: {found[model_id]} and {path}")
        found[model_id] = path

    for given in map(Path, paths):
        if not given.exists():
            raise InputError(f"{given} does not exist")
        if given.is_file():
            add(given.stem, given)
        elif (given / "info.json").is_file():
            add(given.name, given / "train.npy")
        else:
            inside = sorted(given.iterdir())
            arrays = [p for p in inside if p.suffix == ".npy" and p.is_file()]
            folders = [p for p in inside if p.is_dir() and (p / "info.json").is_file()]
            if not arrays and not folders:
                raise InputError(f"{given} holds no .npy file and no feature folder")
            for path in arrays:
                add(path.stem, path)
            for folder in folders:
                add(folder.name, folder / "train.npy")
    return found


def read_features(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """The (n, d) feature array of each model, by model id (feature_paths), checked: every array two-dimensional
    with finite values, all with the same number of rows n (samples); the train.npy of a feature folder also against
    the integrity record of its info.json (simcon.formats.read_features). InputError naming the file otherwise."""
    files = feature_paths(paths)
    if len(files) < 2:
        raise InputError(f"similarity needs the features of at least two models; got {list(files.values())}")
    features: dict[str, np.ndarray] = {}
    for model_id, path in files.items():
        try:
            array = formats.read_features(path) if (path.parent / "info.json").is_file() else np.load(path)
        except formats.ResultError as error:
            raise InputError(str(error)) from None
        except (OSError, ValueError) as error:
            raise InputError(f"{path} is not a readable .npy array ({error})") from None
        if array.ndim != 2 or min(array.shape) == 0:
            raise InputError(f"{path}: features must be (samples, dimensions), got shape {array.shape}")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            raise InputError(f"{path}: row {int(np.argmin(finite))} holds NaN or infinite values")
        features[model_id] = array
    rows = {str(files[model_id]): len(array) for model_id, array in features.items()}
    if len(set(rows.values())) > 1:
        raise InputError(f"the feature arrays have different numbers of rows (samples): {rows}")
    return features


def check_metric(metric: str) -> str:
    """The registered metric name; InputError naming the closest registered names otherwise."""
    try:
        return get_metric(metric).name
    except ValueError as error:
        raise InputError(str(error)) from None


def similarity_matrix_of(
    features: Mapping[str, np.ndarray], metric: str, *, device: str = "cpu", progress: bool = False
) -> pd.DataFrame:
    """The model-by-model similarity matrix of `features` (model id -> (n, d) array, the same n samples) under
    `metric`, as the workflow computes it (simcon.similarity.compute_similarity); a progress bar on stderr with
    `progress`. InputError naming the metric or the model whose features are unusable."""
    from simcon.similarity import compute_similarity  # torch: only where similarities are computed

    name = check_metric(metric)
    try:
        return compute_similarity(features, name, device=device, progress=progress).matrix
    except ValueError as error:
        raise InputError(str(error)) from None


# --------------------------------------------------------------------------- features of an image folder


def extract_folder(
    images: str | os.PathLike,
    output: str | os.PathLike,
    model: Mapping[str, Any],
    *,
    image_size: int | None = None,
    crop_pct: float | None = None,
    batch_size: int = 64,
    device: str = "auto",
    normalize: bool = True,
    precision: str = "float32",
    workers: int = 0,
) -> dict[str, Any]:
    """The feature files of one model on an image folder (train/<class>/ and test/<class>/ images) in the folder
    `output`, as the workflow's features jobs write them: train.npy, test.npy, their labels and info.json.
    `model` is a model spec of the config (backend, name, layer; weights, kwargs, token_pooling, ...). The folder is
    written whole or not at all. Returns what info.json records. InputError if the image folder does not exist,
    `output` holds other files, or the model, the images or their features are unusable (naming which)."""
    from simcon.datasets import DatasetError, check_dataset  # torch and the backends: only where features are made
    from simcon.extract import FeatureError, model_dataset_features
    from simcon.io import atomic_directory
    from simcon.models import ModelError, check_model_spec

    images, output = Path(images), Path(output)
    if not images.is_dir():
        raise InputError(f"image folder {images} does not exist (expected train/<class>/ and test/<class>/ images)")
    files = {Path(path).name for path in formats.feature_files(str(output)).values()}
    if output.exists() and (not output.is_dir() or any(p.name not in files for p in output.iterdir())):
        raise InputError(f"{output} exists and is not a feature folder; give a new folder")
    spec = {"weights": "pretrained", "init_seed": 0, "kwargs": {}, **model}
    model_id = spec["name"]
    dataset = {"source": "image_folder", "path": str(images)}
    try:
        check_model_spec(model_id, spec)
        check_dataset(images.name, dataset)
        with atomic_directory(output) as folder:
            return model_dataset_features(
                model_id,
                spec,
                images.name,
                dataset,
                formats.feature_files(str(folder)),
                image_size=image_size,
                crop_pct=crop_pct,
                batch_size=batch_size,
                device=device,
                normalize=normalize,
                precision=precision,
                workers=workers,
            )
    except (ModelError, DatasetError, FeatureError) as error:
        raise InputError(str(error)) from None


# --------------------------------------------------------------------------- consistency of similarity tables


def read_similarity_folder(folder: str | os.PathLike, metric: str | None = None) -> dict[str, pd.DataFrame]:
    """The model-by-model similarity matrix of each dataset, by dataset id, from the CSV files of `folder`: matrix
    files (model ids as first column and header, as `simcon similarity` writes them; the dataset is the file's
    name) and long tables (columns model_a, model_b, similarity, and dataset or the file's name as the dataset,
    and metric where several metrics are given: `metric` chooses). Every matrix has the models of the first, in its
    order. InputError naming the file otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"similarity folder {folder} does not exist")
    matrices: dict[str, pd.DataFrame] = {}
    for path in sorted(folder.glob("*.csv")):
        header = list(pd.read_csv(path, nrows=0).columns)
        if {"model_a", "model_b", "similarity"} <= set(header):
            tables = _long_matrices(path, header, metric)
        else:
            tables = {path.stem: _matrix_file(path)}
        for dataset, matrix in tables.items():
            if dataset in matrices:
                raise InputError(f"{path}: dataset {dataset!r} is given twice in {folder}")
            matrices[dataset] = matrix
    if len(matrices) < 2:
        raise InputError(f"{folder} holds the similarities of {len(matrices)} dataset(s); consistency needs two")
    order = list(next(iter(matrices.values())).index)
    for dataset, matrix in matrices.items():
        if set(matrix.index) != set(order):
            raise InputError(
                f"dataset {dataset!r} has models {sorted(matrix.index)}, dataset {next(iter(matrices))!r} has "
                f"{sorted(order)}: every dataset needs the same models"
            )
        matrices[dataset] = matrix.loc[order, order]
    check_same_models(matrices)
    return matrices


def _matrix_file(path: Path) -> pd.DataFrame:
    """A square similarity matrix from a CSV file; InputError naming the file if it is not one."""
    matrix = pd.read_csv(path, index_col=0, dtype={0: str})
    matrix.columns = matrix.columns.astype(str)
    if list(matrix.index) != list(matrix.columns):
        raise InputError(f"{path}: not a similarity matrix (its first column and its header name other models)")
    values = matrix.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: holds NaN or infinite values")
    if not np.allclose(values, values.T, atol=1e-9):
        raise InputError(f"{path}: the matrix is not symmetric")
    return matrix


def _long_matrices(path: Path, header: Sequence[str], metric: str | None) -> dict[str, pd.DataFrame]:
    """The matrices of a long similarity table, by dataset; InputError naming the file on a problem."""
    try:
        rows = read_table(path, {c: c for c in SIMILARITY_COLUMNS if c in header}, "similarity")
        rows = rows.assign(source=str(path), **{c: path.stem for c in ("dataset", "metric") if c not in header})
        metrics = list(dict.fromkeys(rows["metric"]))
        if metric is None and len(metrics) > 1:
            raise InputError(f"{path} holds several metrics {metrics}; choose one (--metric)")
        chosen = metric if "metric" in header and metric is not None else metrics[0]
        models = list(dict.fromkeys([*rows["model_a"], *rows["model_b"]]))
        datasets = list(dict.fromkeys(rows["dataset"]))
        table = checked_similarities(rows, models=models, datasets=datasets, metrics=[chosen])
    except TableError as error:
        raise InputError(str(error)) from None
    return {dataset: similarity_matrix(table[table["dataset"] == dataset], models) for dataset in datasets}


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Model metadata by model id from a CSV table: a `model` column (or the first column) and the columns of the
    model categories (objective, architecture_class, data_class, and size_class or the parameter count
    `parameters`, from which size_class follows). InputError naming the file and the missing columns otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"metadata table {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table.set_index("model" if "model" in table.columns else table.columns[0])
    if "size_class" not in table.columns and "parameters" in table.columns:
        table["size_class"] = [size_class(float(p)) for p in table["parameters"]]
    missing = [column for column in MODEL_CATEGORIES.values() if column not in table.columns]
    if missing:
        raise InputError(f"metadata table {path} lacks the column(s) {missing} (size_class may come from parameters)")
    return table


@dataclass(frozen=True)
class ConsistencyAnalysis:
    """The consistency of one metric's similarities across datasets: the table of every set pair and dataset pair,
    its summary per set pair, and the rows the figure of Fig. 6 draws."""

    table: pd.DataFrame
    summary: pd.DataFrame
    plotted: pd.DataFrame


def consistency_analysis(
    matrices: Mapping[str, pd.DataFrame], metadata: pd.DataFrame, *, metric: str, anchors: Sequence[str] = ()
) -> ConsistencyAnalysis:
    """Pearson rho of every compared pair of model sets (by the metadata's categories, and the anchors) on every
    pair of datasets (simcon.consistency.consistency), with `metric` as the table's first column. InputError if a
    model of the matrices has no metadata."""
    models = check_same_models(matrices)
    missing = [model for model in models if model not in metadata.index]
    if missing:
        raise InputError(f"model(s) {missing} of the similarity matrices have no row in the metadata table")
    table = consistency(matrices, model_sets(metadata.loc[models], anchors))
    table.insert(0, "metric", metric)
    plotted = table[table["category"].isin(["all", *CATEGORY_TITLES])]
    return ConsistencyAnalysis(table, summarise(table), plotted)


def write_consistency(analysis: ConsistencyAnalysis, output: str | os.PathLike, metric: str) -> list[Path]:
    """Write a consistency analysis into the folder `output`: consistency.csv, summary.csv and Fig. 6 as
    consistency_by_category.png with its data (.csv); each file whole or not at all. Returns the paths."""
    from simcon import plots  # matplotlib: only where figures are drawn
    from simcon.io import write_csv

    output = Path(output)
    figure = plots.consistency_by_category(analysis.plotted, metric)
    paths = [output / name for name in ("consistency.csv", "summary.csv", "consistency_by_category.csv")]
    for path, frame in zip(paths, (analysis.table, analysis.summary, analysis.plotted)):
        write_csv(path, frame)
    plots.save_png(figure, str(output / "consistency_by_category.png"))
    return [*paths, output / "consistency_by_category.png"]
