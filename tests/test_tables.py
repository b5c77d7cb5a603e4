"""Starting from similarity tables: long tables and the paper authors' published layout read and checked
(simcon.tables), and the workflow run from them giving the consistency tables of the image run they were written
from; a changed row rerunning only its jobs; a bad table stopping before any job."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FIVE, REPO, TINY, five_matrices, job_counts, snakemake
from simcon.config import ConfigError, resolve_config
from simcon.tables import (
    TableError,
    compare_consistency,
    comparison_summary,
    paper_model_ids,
    read_consistency_tables,
    read_performance,
    read_similarities,
    similarity_matrix,
    slice_digests,
)

METRICS = ["cka_linear_unbiased", "cka_rbf0.4_unbiased"]
DATASETS = ["d1", "d2", "d3"]


def long_table(matrices_by_metric: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """Every pair a < b of every dataset's matrix under every metric, as a long table."""
    rows = []
    for metric, matrices in matrices_by_metric.items():
        for dataset, matrix in matrices.items():
            models = list(matrix.index)
            for i, a in enumerate(models):
                for b in models[i + 1 :]:
                    rows.append(
                        {
                            "model_a": a,
                            "model_b": b,
                            "dataset": dataset,
                            "metric": metric,
                            "similarity": matrix.loc[a, b],
                        }
                    )
    return pd.DataFrame(rows)


def five_tables() -> pd.DataFrame:
    """The five-model case under two metrics (the second the square of the first), as a long table."""
    matrices = five_matrices()
    return long_table({METRICS[0]: matrices, METRICS[1]: {d: m**2 for d, m in matrices.items()}})


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- reading and checking


def test_a_long_table_gives_every_matrix_whatever_the_order_and_extra_rows(tmp_path):
    table = five_tables()
    swapped = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    swapped.loc[::2, ["model_a", "model_b"]] = swapped.loc[::2, ["model_b", "model_a"]].to_numpy()
    extra = pd.DataFrame(
        [
            {"model_a": "a", "model_b": "ghost", "dataset": "d1", "metric": METRICS[0], "similarity": 0.5},
            {"model_a": "a", "model_b": "a", "dataset": "d1", "metric": METRICS[0], "similarity": 1.0},
            {"model_a": "a", "model_b": "b", "dataset": "d9", "metric": METRICS[0], "similarity": 0.5},
            {"model_a": "a", "model_b": "b", "dataset": "d1", "metric": "procrustes", "similarity": 0.5},
        ]
    )
    first = write(pd.concat([swapped, extra]), tmp_path / "first.csv")
    again = write(table.iloc[:4], tmp_path / "again.csv")  # the same pairs with the same values: kept once
    read = read_similarities([first, again], models=FIVE, datasets=DATASETS, metrics=METRICS)
    assert len(read) == 10 * 3 * 2 and list(read.columns) == ["dataset", "metric", "model_a", "model_b", "similarity"]
    position = {m: i for i, m in enumerate(FIVE)}
    assert (read["model_a"].map(position) < read["model_b"].map(position)).all()
    for dataset, matrix in five_matrices().items():
        rows = read[(read["dataset"] == dataset) & (read["metric"] == METRICS[0])]
        pd.testing.assert_frame_equal(similarity_matrix(rows, FIVE), matrix, check_exact=True)


def test_the_authors_layout_is_read_with_their_columns_metric_names_and_renamed_ids(tmp_path):
    table = five_tables()
    authors = pd.DataFrame(
        {
            "Similarity metric": table["metric"].map({METRICS[0]: "CKA linear", METRICS[1]: "CKA RBF 0.4"}),
            "DS": "wds_" + table["dataset"],
            "Model 1": table["model_a"].str.upper(),
            "Model 2": table["model_b"].str.upper(),
            "Similarity value": table["similarity"],
            "Objective pair": "('Supervised', 'Supervised')",
        }
    )
    path = write(authors, tmp_path / "all_metric_ds_model_pair_similarity_with_rsa.csv")
    rename = {"models": {m.upper(): m for m in FIVE}, "datasets": {f"wds_{d}": d for d in DATASETS}}
    read = read_similarities([path], models=FIVE, datasets=DATASETS, metrics=METRICS, layout="authors", rename=rename)
    expected = read_similarities([write(table, tmp_path / "long.csv")], models=FIVE, datasets=DATASETS, metrics=METRICS)
    pd.testing.assert_frame_equal(read, expected)
    performance = pd.DataFrame(
        {"DS": ["wds_d1", "imagenet-sub", "wds_d1"], "Model": ["A", "A", "B"], "TestAcc": [0.5, 0.6, 0.7]}
    )
    top1 = read_performance(
        write(performance, tmp_path / "all_ds.csv"),
        models=["a", "b"],
        datasets=["d1"],
        layout="authors",
        rename=rename,
    )
    assert top1.values.tolist() == [["d1", "a", 0.5], ["d1", "b", 0.7]]


def test_the_paper_models_table_maps_the_authors_ids_to_ours():
    ids = paper_model_ids(REPO / "resources/paper_models.csv")
    assert len(ids) == 64 and len(set(ids.values())) == 64
    assert ids["OpenCLIP_ViT-L-14_openai"] == "OpenCLIP-ViT-L-14-openai" and ids["resnext50_32x4d"] == "resnext50-32x4d"
    assert set(ids.values()) == set(yaml.safe_load((REPO / "config/paper.yaml").read_text())["models"])


def _nan_at_row_3(table: pd.DataFrame, folder: Path) -> list[Path]:
    return [write(table.assign(similarity=table["similarity"].where(table.index != 3, np.nan)), folder / "sims.csv")]


def _text_at_row_7(table: pd.DataFrame, folder: Path) -> list[Path]:
    text = table["similarity"].astype(str).where(table.index != 7, "0.5x")
    return [write(table.assign(similarity=text), folder / "sims.csv")]


def _conflicting_second_file(table: pd.DataFrame, folder: Path) -> list[Path]:
    return [write(table, folder / "sims.csv"), write(table.iloc[[0]].assign(similarity=0.123), folder / "other.csv")]


@pytest.mark.parametrize(
    "tables,message",
    [
        (lambda table, folder: [folder / "nowhere.csv"], r"table .*nowhere.csv does not exist"),
        (
            lambda table, folder: [write(table.drop(columns="metric"), folder / "sims.csv")],
            r"sims.csv lacks the column\(s\) \['metric'\]",
        ),
        (_nan_at_row_3, r"sims.csv, line 5: similarity '' is not a finite number"),
        (_text_at_row_7, r"sims.csv, line 9: similarity '0.5x' is not a finite number"),
        (
            _conflicting_second_file,
            r"'model_a': 'a', 'model_b': 'b'\} is given 2 times with different values: 0.9 \(.*sims.csv\), "
            r"0.123 \(.*other.csv\)",
        ),
        (
            lambda table, folder: [write(table.drop(index=[1]), folder / "sims.csv")],
            r"dataset 'd1', metric 'cka_linear_unbiased': 1 of 10 pairs missing: \(a, c\)",
        ),
    ],
)
def test_a_bad_similarity_table_is_a_table_error_naming_the_culprit(tmp_path, tables, message):
    with pytest.raises(TableError, match=message):
        read_similarities(tables(five_tables(), tmp_path), models=FIVE, datasets=DATASETS, metrics=METRICS)


@pytest.mark.parametrize(
    "top1,message",
    [
        ({("d1", "a"): 85.0, ("d1", "b"): 0.5}, r"top-1 85.0 of model 'a' on 'd1' is not a fraction in \[0, 1\]"),
        ({("d1", "a"): 0.4}, r"no top-1 for 1 \(model, dataset\): b on d1"),
    ],
)
def test_a_bad_performance_table_is_a_table_error_naming_the_culprit(tmp_path, top1, message):
    table = pd.DataFrame([{"model": m, "dataset": d, "top1": t} for (d, m), t in top1.items()])
    with pytest.raises(TableError, match=message):
        read_performance(write(table, tmp_path / "top1.csv"), models=["a", "b"], datasets=["d1"])


def test_a_changed_row_changes_the_digest_of_its_slice_only(tmp_path):
    table = five_tables()
    before = slice_digests(
        read_similarities([write(table, tmp_path / "a.csv")], models=FIVE, datasets=DATASETS, metrics=METRICS),
        ["dataset", "metric"],
    )
    table.loc[(table["dataset"] == "d2") & (table["metric"] == METRICS[1]), "similarity"] += 1e-9
    after = slice_digests(
        read_similarities([write(table, tmp_path / "b.csv")], models=FIVE, datasets=DATASETS, metrics=METRICS),
        ["dataset", "metric"],
    )
    assert len(before) == 6 and {key for key in before if before[key] != after[key]} == {("d2", METRICS[1])}


def test_published_consistency_is_compared_whatever_the_order_of_its_pairs(tmp_path):
    ours = pd.DataFrame(
        {
            "metric": METRICS[0],
            "category": "objective",
            "set_a": ["SSL", "SSL"],
            "set_b": ["Sup", "SSL"],
            "dataset_a": ["d1", "d1"],
            "dataset_b": ["d2", "d3"],
            "n_pairs": 6,
            "rho": [0.5, 0.25],
        }
    )
    theirs = pd.DataFrame(
        {
            "ds1": ["wds_d2", "wds_d1", "wds_d1"],
            "ds2": ["wds_d1", "wds_d3", "wds_d9"],
            "anchor_cat": ["Sup", "SSL", "SSL"],
            "other_cat": ["SSL", "SSL", "SSL"],
            "r coeff": [0.5, 0.2, 0.9],
            "cat_pair": "('SSL', 'Sup')",
            "Comparison category": "Training objective",
            "Similarity metric": "CKA linear",
        }
    )
    rename = {"datasets": {f"wds_{d}": d for d in DATASETS}}
    published = read_consistency_tables(
        [write(theirs, tmp_path / "agg_pearsonr_all_ds_with_rsa.csv")],
        metrics=METRICS,
        datasets=DATASETS,
        layout="authors",
        rename=rename,
    )
    compared = compare_consistency(ours, published)
    assert compared[["set_a", "set_b", "dataset_a", "dataset_b"]].values.tolist() == [
        ["SSL", "Sup", "d1", "d2"],
        ["SSL", "SSL", "d1", "d3"],
    ]
    np.testing.assert_allclose(compared["difference"], [0.0, 0.05])
    summary = comparison_summary(compared)
    assert summary[["metric", "category", "n"]].values.tolist() == [[METRICS[0], "objective", 2]]
    assert summary["max_abs_difference"].item() == pytest.approx(0.05)


def test_a_config_of_similarity_tables_needs_only_metadata_and_takes_no_zoo_or_layers(tmp_path):
    models = {m: {"metadata": copy.deepcopy(TINY["models"]["lite0"]["metadata"])} for m in ("a", "b")}
    config = {"models": models, "datasets": {"d": {"category": "structured"}}, "similarities": {"tables": ["t.csv"]}}
    schema = REPO / "workflow/schemas/config.schema.yaml"
    resolved = copy.deepcopy(config)
    resolve_config(resolved, schema)
    assert resolved["similarities"] == {
        "tables": ["t.csv"],
        "layout": "long",
        "performance": None,
        "consistency": [],
        "rename": {"models": {}, "datasets": {}, "metrics": {}},
    }
    without = {key: value for key, value in copy.deepcopy(config).items() if key != "similarities"}
    with pytest.raises(ConfigError, match=r"models\.[ab]: 'backend' is a required property"):
        resolve_config(without, schema)
    with pytest.raises(ConfigError, match=r"similarities: .*\['layers'\] need images"):
        resolve_config({**copy.deepcopy(config), "layers": "blocks"}, schema)


# --------------------------------------------------------------------------- the workflow from tables

# TINY with a third dataset and a second metric: the image run whose similarity files the tables are written from.
IMAGES = copy.deepcopy(TINY)
IMAGES["metrics"] = METRICS
IMAGES["datasets"]["textures"] = {**TINY["datasets"]["shapes"], "domain": "textures"}
IMAGE_DATASETS = list(IMAGES["datasets"])
AUTHORS_METRICS = {METRICS[0]: "CKA linear", METRICS[1]: "CKA RBF 0.4"}


def analyses(metric: str) -> list[str]:
    return [
        f"results/consistency/{metric}/consistency.csv",
        f"results/similarity_vs_performance/{metric}/correlations.csv",
    ]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("images")
    targets = [target for metric in METRICS for target in analyses(metric)]
    result = snakemake(workdir, IMAGES, *targets)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def table_config(similarities: dict) -> dict:
    """IMAGES with only what a run from tables needs: the models' metadata, the datasets' categories."""
    config = {key: value for key, value in copy.deepcopy(IMAGES).items() if key not in ("models", "datasets")}
    config["models"] = {model: {"metadata": spec["metadata"]} for model, spec in IMAGES["models"].items()}
    config["datasets"] = {dataset: {"category": spec["category"]} for dataset, spec in IMAGES["datasets"].items()}
    return {**config, "similarities": similarities}


def image_tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The image run's similarity files as one long table, and its top-1 as a performance table."""
    frames = [
        pd.read_csv(run / f"results/similarity/{dataset}/{metric}.long.csv").assign(dataset=dataset, metric=metric)
        for dataset in IMAGE_DATASETS
        for metric in METRICS
    ]
    performance = pd.read_csv(run / "results/performance.csv")[["model", "dataset", "top1"]]
    return pd.concat(frames, ignore_index=True), performance


def assert_same_analyses(run: Path, other: Path) -> None:
    for metric in METRICS:
        for target in analyses(metric):
            pd.testing.assert_frame_equal(
                pd.read_csv(other / target), pd.read_csv(run / target), rtol=1e-12, atol=1e-12
            )


@pytest.mark.slow
@pytest.mark.workflow
def test_a_run_from_long_tables_gives_the_image_runs_tables_and_reruns_only_a_changed_row(image_run, tmp_path):
    similarities, performance = image_tables(image_run)
    config = table_config(
        {
            "tables": [str(write(similarities, tmp_path / "sims.csv"))],
            "performance": str(write(performance, tmp_path / "top1.csv")),
        }
    )
    result = snakemake(tmp_path, config)  # every analysis, figure and table of the default target
    assert result.returncode == 0, result.stderr[-5000:]
    assert_same_analyses(image_run, tmp_path)
    for name in ("consistency_by_category", "similarity_matrices", "dataset_pairs", "similarity_vs_gap"):
        assert (tmp_path / f"results/figures/{METRICS[0]}/{name}.png").stat().st_size > 10_000
    assert (tmp_path / "results/figures/consistency_metrics.png").is_file()
    assert not (tmp_path / "results/features").exists() and not (tmp_path / "results/probes").exists()

    changed = similarities.copy()
    row = (changed["dataset"] == "cells") & (changed["metric"] == METRICS[1])
    changed.loc[row.idxmax(), "similarity"] += 0.01
    ghost = {"model_a": "lite0", "model_b": "ghost", "dataset": "shapes", "metric": METRICS[0], "similarity": 0.3}
    write(pd.concat([changed, pd.DataFrame([ghost])]), tmp_path / "sims.csv")
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("similarity_table") == 1  # (cells, RBF) alone; the row of a model not configured: nothing
    assert "performance_table" not in counts and set(counts.values()) == {1}
    assert "consistency_metrics" in counts and "headline_consistency" in counts


@pytest.mark.slow
@pytest.mark.workflow
def test_a_run_from_the_authors_layout_gives_the_image_runs_tables(image_run, tmp_path):
    similarities, performance = image_tables(image_run)
    model_ids = {model: model.replace("_", "-").title() for model in IMAGES["models"]}  # theirs differ from ours
    dataset_ids = {dataset: f"wds_vtab_{dataset}" for dataset in IMAGE_DATASETS}
    authors = pd.DataFrame(
        {
            "Similarity metric": similarities["metric"].map(AUTHORS_METRICS),
            "DS": similarities["dataset"].map(dataset_ids),
            "Model 1": similarities["model_a"].map(model_ids),
            "Model 2": similarities["model_b"].map(model_ids),
            "Similarity value": similarities["similarity"],
            "Objective pair": "('Supervised', 'Supervised')",
        }
    )
    top1 = pd.DataFrame(
        {
            "DS": performance["dataset"].map(dataset_ids),
            "Model": performance["model"].map(model_ids),
            "TestAcc": performance["top1"],
        }
    )
    ours = pd.concat([pd.read_csv(image_run / analyses(metric)[0], keep_default_na=False) for metric in METRICS])
    within = ours[ours["category"].isin(["objective", "architecture", "data", "size"])]
    titles = {
        "objective": "Training objective",
        "architecture": "Architecture",
        "data": "Training data",
        "size": "Model size",
    }
    rho = pd.DataFrame(
        {
            "ds1": within["dataset_b"].map(dataset_ids),  # the other order of the datasets
            "ds2": within["dataset_a"].map(dataset_ids),
            "anchor_cat": within["set_a"],
            "other_cat": within["set_b"],
            "r coeff": within["rho"],
            "cat_pair": "('small', 'small')",
            "Comparison category": within["category"].map(titles),
            "Similarity metric": within["metric"].map(AUTHORS_METRICS),
        }
    )
    folder = tmp_path / "published/aggregated"
    for sub in ("model_sims", "single_model_performance", "r_coeff_dist"):
        (folder / sub).mkdir(parents=True)
    config = table_config(
        {
            "layout": "authors",
            "tables": [str(write(authors, folder / "model_sims/all_metric_ds_model_pair_similarity_with_rsa.csv"))],
            "performance": str(write(top1, folder / "single_model_performance/all_ds.csv")),
            "consistency": [str(write(rho, folder / "r_coeff_dist/agg_pearsonr_all_ds_with_rsa.csv"))],
            "rename": {
                "models": {v: k for k, v in model_ids.items()},
                "datasets": {v: k for k, v in dataset_ids.items()},
            },
        }
    )
    targets = [target for metric in METRICS for target in analyses(metric)]
    result = snakemake(tmp_path, config, *targets, "results/published/consistency_comparison.csv")
    assert result.returncode == 0, result.stderr[-5000:]
    assert_same_analyses(image_run, tmp_path)
    summary = pd.read_csv(tmp_path / "results/published/consistency_comparison_summary.csv")
    assert summary.set_index("metric")["n"].to_dict() == within.groupby("metric").size().to_dict()
    assert (summary["max_abs_difference"] < 1e-12).all()


@pytest.mark.workflow
def test_a_bad_table_stops_before_any_job(tmp_path):
    table = five_tables().iloc[1:]  # the pair (a, b) of d1 missing
    models = {m: {"metadata": {**TINY["models"]["lite0"]["metadata"]}} for m in FIVE}
    config = {
        "metrics": METRICS,
        "models": models,
        "datasets": {d: {"category": "structured"} for d in DATASETS},
        "similarities": {"tables": [str(write(table, tmp_path / "sims.csv"))]},
    }
    result = snakemake(tmp_path, config, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "TableError" in output and "dataset 'd1', metric 'cka_linear_unbiased': 1 of 10 pairs missing: (a, b)" in output
    )
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_the_published_results_config_reads_the_authors_files_of_the_paper(tmp_path):
    """config/paper-published.yaml after config/paper.yaml, on files in the authors' layout with their 64 model ids
    and dataset ids (random values): the DAG starts from the tables, one job per dataset and metric."""
    authors_ids = pd.read_csv(REPO / "resources/paper_models.csv")["authors_id"].tolist()
    published = yaml.safe_load((REPO / "config/paper-published.yaml").read_text())["similarities"]
    theirs = list(published["rename"]["datasets"])
    pairs = [(a, b) for i, a in enumerate(authors_ids) for b in authors_ids[i + 1 :]]
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "Similarity metric": metric,
                "DS": dataset,
                "Model 1": [a for a, _ in pairs],
                "Model 2": [b for _, b in pairs],
                "Similarity value": rng.uniform(size=len(pairs)),
            }
        )
        for metric in ("CKA linear", "CKA RBF 0.4", "RSA spearman")
        for dataset in [*theirs, "cifar100-coarse"]  # a dataset the config does not have, left out
        if dataset != "wds_imagenet1k"  # their similarities of ImageNet-1k are on imagenet-subset-10k
    ]
    for path in (*published["tables"], published["performance"], *published["consistency"]):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    write(pd.concat(frames), tmp_path / published["tables"][0])
    top1 = [{"DS": d, "Model": m, "TestAcc": 0.5} for d in theirs if d != "imagenet-subset-10k" for m in authors_ids]
    write(pd.DataFrame(top1), tmp_path / published["performance"])
    rho = {"ds1": "wds_vtab_flowers", "ds2": "wds_vtab_pcam", "anchor_cat": "SSL", "other_cat": "SSL", "r coeff": 0.8}
    rho |= {
        "cat_pair": "('SSL', 'SSL')",
        "Comparison category": "Training objective",
        "Similarity metric": "CKA linear",
    }
    write(pd.DataFrame([rho]), tmp_path / published["consistency"][0])
    configs = [str(REPO / "config" / name) for name in ("paper.yaml", "paper-published.yaml")]
    result = snakemake(tmp_path, None, "--configfile", *configs, "-n", "--quiet", "rules", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = job_counts(result.stdout + result.stderr)
    assert jobs.pop("similarity_table") == 23 * 3 and jobs.pop("performance_table") == 1
    assert jobs.pop("published_comparison") == 1 and jobs.pop("consistency") == 3
    assert not {"check_model", "subset", "features", "probe", "sample_size", "performance"} & set(jobs)
