"""Config resolution without a backend library: defaults, --configfile replacement, checks, the zoo's models,
the shared vocabulary, and a workflow that parses without torch."""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, make_image_folder
from simcon import datasets, vocabulary
from simcon.config import (
    ConfigError,
    check_config,
    check_structure,
    read_config_file,
    resolve_config,
    zoo_members,
    zoo_models,
)
from simcon.metrics import METRICS, reference_metric

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
BACKEND_MODULES = ("torch", "torchvision", "timm", "open_clip", "sklearn", "transformers")


def test_duplicate_model_id_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  resnet:\n    backend: timm\n  resnet:\n    backend: torchvision\n")
    with pytest.raises(ConfigError, match="duplicate id 'resnet' \\(line 4\\)"):
        read_config_file(path)


def test_unique_keys_pass(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  a: {backend: timm}\n  b: {backend: timm}\n")
    assert list(read_config_file(path)["models"]) == ["a", "b"]


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "image_size: 32\nmodels:\n  a: {backend: timm\n  b: x\n",
            r", line 4, column 4: not valid YAML: .*expected ','",
        ),
        (
            "image_size: 32\nmodels:\n\ta: 1\n",
            r", line 3, column 1: not valid YAML: found character that cannot start any token",
        ),
        ("- models\n- datasets\n", r": a config file holds a mapping of options, not a list"),
    ],
)
def test_a_file_that_is_not_a_config_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}{message}"):
        read_config_file(path)


@pytest.mark.parametrize(
    "parameters,expected",
    [(4.6e6, "small"), (99.9e6, "small"), (100e6, "medium"), (304e6, "large"), (400e6, "xlarge"), (1.1e9, "xlarge")],
)
def test_size_classes_follow_the_paper(parameters, expected):
    assert vocabulary.size_class(parameters) == expected


def _model(**metadata):
    return {
        "backend": "timm",
        "name": "resnet18",
        "layer": "fc",
        "weights": "random",
        "metadata": {
            "objective": "Untrained",
            "architecture": "ResNet",
            "architecture_class": "CNN",
            "training_data": "none",
            "data_class": "None",
            "parameters": 11.7e6,
            **metadata,
        },
    }


def _config(**overrides):
    config = {
        "models": {"r": _model(), "s": _model()},
        "datasets": {"d": {"source": "sklearn_digits", "category": "natural_single_domain"}},
    }
    config.update(overrides)
    return config


def _resolved(config, tmp_path, *command_line):
    """resolve_config on `config` as the default config file, with --configfile files holding `command_line`."""
    default = tmp_path / "default.yaml"
    default.write_text(yaml.safe_dump(config))
    files = []
    for i, entries in enumerate(command_line):
        files.append(tmp_path / f"given{i}.yaml")
        files[-1].write_text(yaml.safe_dump(entries))
    merged = copy.deepcopy(config)
    for entries in command_line:
        merged.update(copy.deepcopy(entries))
    resolve_config(merged, SCHEMA, [default, *files], files)
    return merged


def test_defaults_are_filled_in_and_size_class_derived(tmp_path):
    config = _resolved(_config(), tmp_path)
    assert config["metrics"] == ["cka_linear_unbiased"] and config["probe"]["seeds"] == [0, 1, 2]
    assert config["models"]["r"]["weights"] == "random" and config["models"]["r"]["metadata"]["size_class"] == "small"
    assert config["datasets"]["d"]["max_samples"] == 10000


def test_command_line_models_and_datasets_replace_the_defaults(tmp_path):
    given = {"models": {"a": _model(), "b": _model()}}
    later = {"datasets": {"e": {"source": "sklearn_digits", "category": "specialized"}}, "batch_size": 8}
    config = _resolved(_config(), tmp_path, given, later)
    assert list(config["models"]) == ["a", "b"] and list(config["datasets"]) == ["e"]
    assert config["batch_size"] == 8


@pytest.mark.parametrize(
    "command_line,anchors",
    [
        ([{"models": {"a": _model(), "b": _model()}}], []),  # new models without anchors: none
        ([{"models": {"a": _model(), "b": _model()}, "anchors": ["b"]}], ["b"]),
        ([{"models": {"a": _model(), "b": _model()}}, {"anchors": ["a"]}], ["a"]),  # a later file names them
        ([{"anchors": ["s"]}, {"models": {"a": _model(), "b": _model()}}], []),  # an earlier file's go with its models
        ([{"batch_size": 8}], ["r"]),  # the default's models, so its anchors
    ],
)
def test_anchors_go_with_the_models(tmp_path, command_line, anchors):
    assert _resolved(_config(anchors=["r"]), tmp_path, *command_line)["anchors"] == anchors


def test_anchors_given_on_the_command_line_apply_to_the_files_models(tmp_path):
    default = tmp_path / "default.yaml"
    default.write_text(yaml.safe_dump(_config(anchors=["r"])))
    config = {**_config(), "anchors": ["s"]}
    resolve_config(config, SCHEMA, [default], [], {"anchors": ["s"]})
    assert config["anchors"] == ["s"]
    config = {**_config(), "anchors": ["ghost"]}
    with pytest.raises(ConfigError, match=r"\['ghost'\] are not in models; .*\(anchors from --config; models from "):
        resolve_config(config, SCHEMA, [default], [], {"anchors": ["ghost"]})


@pytest.mark.parametrize(
    "given,message,files",
    [
        (
            {"anchors": ["ghost"]},
            r"anchor model\(s\) \['ghost'\] are not in models; .*`anchors: \[\]`",
            ["given0", "default"],
        ),
        ({"models": {"a": {**_model(), "backend": "keras"}}}, r"models.a.backend: 'keras' is not one of", ["given0"]),
        (
            {"structure": {"tsne_datasets": ["ghost"]}},
            r"structure.tsne_datasets names dataset\(s\) \['ghost'\]",
            ["given0", "default"],
        ),
        ({"metrics": ["cka_cosine"]}, "metrics: unknown similarity metric 'cka_cosine'", ["given0"]),
    ],
)
def test_errors_say_which_file_each_option_came_from(tmp_path, given, message, files):
    with pytest.raises(ConfigError, match=message) as error:
        _resolved(_config(), tmp_path, given)
    origins = re.search(r"\(([^()]*)\)$", str(error.value)).group(1)
    assert [re.search(r"from .*/(\w+)\.yaml", part).group(1) for part in origins.split("; ")] == files


@pytest.mark.parametrize("option", ["models", "datasets"])
def test_ids_that_differ_only_in_case_are_refused(tmp_path, option):
    config = _config()
    config[option]["R" if option == "models" else "D"] = copy.deepcopy(next(iter(config[option].values())))
    first, second = ("R", "r") if option == "models" else ("D", "d")  # the file lists its ids sorted
    with pytest.raises(ConfigError, match=rf"{option}: ids '{first}' and '{second}' differ only in case"):
        _resolved(config, tmp_path)


def test_a_zoo_model_id_that_differs_only_in_case_from_a_configured_one_is_refused(tmp_path):
    config = yaml.safe_load((REPO / "config/zoo.yaml").read_text())
    config["models"]["CNN_SUP_SEED0"] = copy.deepcopy(config["models"]["cnn_random"])
    with pytest.raises(ConfigError, match=r"zoo model id\(s\) \['cnn_sup_seed0'\] are already in models"):
        zoo_models(config["zoo"], config["models"], config["datasets"], "results/zoo/{model}.pt")


def test_relative_dataset_paths_are_taken_under_data_root(tmp_path):
    folder = {"source": "image_folder", "path": "photos", "category": "structured"}
    config = _resolved(_config(datasets={"p": folder}, data_root="/data"), tmp_path)
    assert config["datasets"]["p"]["path"] == "/data/photos"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c["models"]["r"].update(backend="keras"), r"'keras' is not one of"),
        (lambda c: c["models"]["r"]["metadata"].update(objective="BYOL"), r"'BYOL' is not one of"),
        (lambda c: c["datasets"]["d"].update(source="generated", domain="clouds"), r"'clouds' is not one of"),
        (
            lambda c: c.update(metrics=["cka_cosine"]),
            r"metrics: unknown similarity metric 'cka_cosine'(; closest: [^;]+)?; known metrics: ",
        ),
        (lambda c: c.update(anchors=["ghost"]), r"anchor model\(s\) \['ghost'\]"),
        (
            lambda c: c.update(structure={"tsne_datasets": ["ghost"]}),
            r"structure.tsne_datasets names dataset\(s\) \['ghost'\]",
        ),
    ],
)
def test_config_errors_name_the_culprit(tmp_path, change, message):
    config = _config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        _resolved(config, tmp_path)


def test_unknown_metric_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="known metrics: .*rsa_correlation_spearman"):
        check_config({**_config(metrics=["cka_cosine"]), "anchors": []})


def test_structure_settings_name_unknown_datasets():
    settings = {
        "dataset_pairs": [["d1", "d2"]],
        "tsne_datasets": [],
        "sample_size": {"datasets": [], "per_k_datasets": [{"samples_per_class": 1, "dataset": "in1k_k1"}]},
    }
    with pytest.raises(ConfigError, match=r"per_k_datasets names dataset\(s\) \['in1k_k1'\]"):
        check_structure(settings, ["d1", "d2"])
    settings["sample_size"]["per_k_datasets"] = []
    settings["dataset_pairs"] = [["d1", "d1"]]
    with pytest.raises(ConfigError, match="compares a dataset with itself"):
        check_structure(settings, ["d1", "d2"])


def test_reference_metric_is_cka_linear_where_configured():
    assert reference_metric(["rsa_correlation_spearman", "cka_linear_unbiased"]) == "cka_linear_unbiased"
    assert reference_metric(["rsa_correlation_spearman"]) == "rsa_correlation_spearman"
    assert {"cka_linear_unbiased", "cka_rbf0.4_unbiased", "rsa_correlation_spearman"} <= set(METRICS)


def test_zoo_models_take_their_twins_parameter_count(tmp_path):
    config = yaml.safe_load((REPO / "config/zoo.yaml").read_text())
    specs = zoo_models(config["zoo"], config["models"], config["datasets"], "results/zoo/{model}.pt")
    assert list(specs) == list(zoo_members(config["zoo"]))
    twins = {spec["twin"]: name for name, spec in config["zoo"]["architectures"].items()}
    for twin, architecture in twins.items():
        parameters = config["models"][twin]["metadata"]["parameters"]
        assert specs[f"{architecture}_sup_seed0"]["metadata"]["parameters"] == parameters
        assert specs[f"{architecture}_sup_seed0"]["metadata"]["size_class"] == "small"


# --------------------------------------------------------------------------- the shared vocabulary


def _enum(node):
    return node["enum"] if "enum" in node else node["items"]["enum"]


def test_schema_enums_are_the_vocabulary():
    schema = yaml.safe_load(SCHEMA.read_text())
    model, dataset = schema["$defs"]["model"]["properties"], schema["$defs"]["dataset"]
    metadata = model["metadata"]["properties"]
    branches = {
        branch["if"]["properties"]["source"]["const"]: branch["then"]["properties"] for branch in dataset["allOf"]
    }
    zoo = schema["properties"]["zoo"]["properties"]
    matrices = schema["properties"]["consistency"]["properties"]["dataset_matrices"]["items"]["properties"]
    assert _enum(model["backend"]) == list(vocabulary.BACKENDS)
    assert _enum(metadata["objective"]) == list(vocabulary.OBJECTIVES)
    assert _enum(metadata["architecture_class"]) == list(vocabulary.ARCHITECTURE_CLASSES)
    assert _enum(metadata["data_class"]) == list(vocabulary.DATA_CLASSES)
    assert _enum(metadata["size_class"]) == list(vocabulary.SIZE_CLASSES)
    assert _enum(dataset["properties"]["source"]) == list(vocabulary.DATASET_SOURCES)
    assert _enum(dataset["properties"]["category"]) == list(vocabulary.DATASET_CATEGORIES)
    assert _enum(branches["generated"]["domain"]) == list(vocabulary.GENERATED_DOMAINS)
    assert _enum(branches["breeds"]["task"]) == list(vocabulary.BREEDS_TASKS)
    assert _enum(zoo["objectives"]) == list(vocabulary.TRAINED_OBJECTIVES)
    architecture = zoo["architectures"]["additionalProperties"]["properties"]
    assert _enum(architecture["architecture_class"]) == list(vocabulary.ARCHITECTURE_CLASSES)
    assert _enum(matrices["category"]) == ["all", *vocabulary.MODEL_CATEGORIES]
    assert set(vocabulary.CATEGORY_VALUES) == set(vocabulary.MODEL_CATEGORIES)


def test_library_registries_are_the_vocabulary():
    assert list(datasets.SOURCES) == list(vocabulary.DATASET_SOURCES)
    assert list(datasets.GENERATED_DOMAINS) == list(vocabulary.GENERATED_DOMAINS)
    assert list(datasets.BREEDS_TASKS) == list(vocabulary.BREEDS_TASKS)


# --------------------------------------------------------------------------- parsing without a backend


def test_parsing_the_workflow_imports_no_backend_library(tmp_path):
    """Snakemake's dry run of the default config, in one process: no torch, timm, open_clip or scikit-learn."""
    code = (
        "import sys\n"
        "from snakemake.cli import main\n"
        "try:\n"
        f"    main(['-s', {str(REPO / 'Snakefile')!r}, '-d', {str(tmp_path)!r}, '-n', '--cores', '1',\n"
        f"          '--configfile', {str(REPO / 'config/config.yaml')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        f"print(sorted(m for m in {BACKEND_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_config_module_imports_no_backend_library():
    code = (
        "import sys\n"
        "import simcon.config, simcon.metrics, simcon.vocabulary\n"
        f"print(sorted(m for m in {(*BACKEND_MODULES, 'numpy', 'pandas', 'PIL')!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- sizes known at parse time


def _shapes(per_class, **options):
    return {
        "source": "generated",
        "domain": "shapes",
        "category": "structured",
        "train_per_class": per_class,
        **options,
    }


@pytest.mark.parametrize(
    "metrics,dataset,message",
    [
        (  # 6 classes x 3
            ["cka_linear_unbiased", "mutual_knn50"],
            _shapes(3),
            r"metrics: mutual_knn50 needs at least 51 samples \(k = 50 neighbours of each\), but the similarity "
            r"subset of dataset 'd' \(train split: 18 images of 6 classes, max_samples 10000\) has 18; choose",
        ),
        (  # cut to ceil(40 / 6) = 7 of each class
            ["jaccard_knn45"],
            _shapes(100, max_samples=40),
            r"jaccard_knn45 needs at least 46 samples .*\(train split: 600 images of 6 classes, max_samples 40\) has 42;",
        ),
        (  # scikit-learn's digits: 1347 train images
            ["cknna2000"],
            {"source": "sklearn_digits", "category": "natural_single_domain"},
            r"cknna2000 needs at least 2001 samples .* dataset 'd' \(train split: 1347 images .*\) has 1347;",
        ),
        (  # cut to 2 of each class first
            ["cka_linear_unbiased", "mutual_knn12"],
            _shapes(100, samples_per_class=2),
            r"mutual_knn12 needs at least 13 samples .*\(train split: 12 images .*samples_per_class 2\) has 12;",
        ),
    ],
)
def test_a_metric_needing_more_images_than_a_known_subset_holds_is_named_with_dataset_and_size(
    tmp_path, metrics, dataset, message
):
    with pytest.raises(ConfigError, match=message):
        _resolved(_config(metrics=metrics, datasets={"d": dataset}), tmp_path)


def test_every_metric_is_checked_against_the_subset_size(tmp_path):
    """Each metric's own minimum, against a subset of 2 images (two classes of one)."""
    folder = make_image_folder(tmp_path / "pair", {"a": 1, "b": 1})
    dataset = {"source": "image_folder", "path": str(folder), "category": "structured"}
    structure = {"sample_size": {"per_k_datasets": [{"dataset": "d", "samples_per_class": 1}]}}  # not probed
    for metric, spec in METRICS.items():
        config = _config(metrics=[metric], datasets={"d": dataset}, structure=structure)
        if spec.min_samples <= 2:
            _resolved(config, tmp_path)
        else:
            with pytest.raises(ConfigError, match=f"metrics: {metric} needs at least {spec.min_samples} samples"):
                _resolved(config, tmp_path)


def test_image_folders_are_counted_at_parse_time(tmp_path):
    folder = make_image_folder(tmp_path / "mine", {"cat": 6, "dog": 6, "eel": 6})
    (folder / "train" / "cat" / "notes.txt").write_text("not an image")
    dataset = {"source": "image_folder", "path": str(folder), "category": "structured"}
    with pytest.raises(
        ConfigError, match=r"mutual_knn50 needs at least 51 samples .* dataset 'd' \(train split: 18 images.*\) has 18;"
    ):
        _resolved(_config(metrics=["mutual_knn50"], datasets={"d": dataset}), tmp_path)
    _resolved(_config(metrics=["mutual_knn17"], datasets={"d": dataset}), tmp_path)
    _resolved(_config(datasets={"d": {**dataset, "path": str(tmp_path / "not_yet")}}), tmp_path)  # its check's


def test_a_large_image_folder_is_counted_only_as_far_as_the_subset_needs(tmp_path, monkeypatch):
    import simcon.dataset_sizes

    folder = make_image_folder(tmp_path / "big", {"a": 30, "b": 30}, size=2)
    dataset = {"source": "image_folder", "path": str(folder), "category": "structured", "max_samples": 10}
    counted = []
    count_images = simcon.dataset_sizes.count_images
    monkeypatch.setattr(
        simcon.dataset_sizes, "count_images", lambda *args: counted.append(count_images(*args)) or counted[-1]
    )
    _resolved(_config(metrics=["mutual_knn9"], datasets={"d": dataset}), tmp_path)
    assert counted == [5, 5]  # ceil(10 / 2) of each class: the whole subset
    counted.clear()
    with pytest.raises(
        ConfigError, match=r"mutual_knn10 needs at least 11 samples .*\(train split: 60 images.*\) has 10;"
    ):
        _resolved(_config(metrics=["mutual_knn10"], datasets={"d": dataset}), tmp_path)
    assert counted == [5, 5, 30, 30]  # then every file, to be sure


@pytest.mark.parametrize(
    "dataset,message",
    [
        (
            {"a": 5, "b": 5, "c": 1},
            r"dataset 'd': train class\(es\) \['c'\] have a single image; the linear probe's stratified validation",
        ),
        (  # 6 images: 4 to fit, 2 to validate, 3 classes
            {"a": 2, "b": 2, "c": 2},
            r"dataset 'd': the linear probe splits its 6 train images into 4 to fit and 2 to validate "
            r"\(probe.val_fraction 0.2\), too few to hold each of its 3 classes in both",
        ),
    ],
)
def test_a_train_split_the_probe_cannot_split_is_named(tmp_path, dataset, message):
    folder = make_image_folder(tmp_path / "mine", dataset, size=2)
    config = _config(datasets={"d": {"source": "image_folder", "path": str(folder), "category": "structured"}})
    with pytest.raises(ConfigError, match=message):
        _resolved(config, tmp_path)
    config["structure"] = {"sample_size": {"per_k_datasets": [{"dataset": "d", "samples_per_class": 1}]}}
    _resolved(config, tmp_path)  # not probed: App. C's per-k subsets
    config = _config(datasets={"d": {"source": "image_folder", "path": str(folder), "category": "structured"}})
    config["probe"] = {"val_fraction": 0.5}
    if "single" not in message:
        _resolved(config, tmp_path)  # 3 to fit, 3 to validate
