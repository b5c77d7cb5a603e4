"""The workflow's config, resolved: schema defaults, the --configfile replacement of models and datasets, dataset
paths under data_root, the models of a zoo, and every check that needs no backend library.

Torch-free (only yaml and Snakemake's schema validation), so that the workflow parses in seconds; the checks
that need a backend (model names, layers, weights, dataset files) run as the workflow's check jobs
(simcon.models.check_model, simcon.datasets.check_dataset). Every problem found here is a ConfigError naming
the culprit.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from simcon.dataset_sizes import cut_counts, subset_size, train_class_counts
from simcon.metrics import get_metric, require_samples
from simcon.probe_settings import ProbeSettings, validation_split
from simcon.vocabulary import LAYER_PRESETS, size_class

DEFAULT_CONFIG = "config/config.yaml"
"""The default experiment, relative to the workflow's folder (beside the Snakefile), whatever the working directory."""

LISTED_KEYS = ("models", "datasets")
"""Options a config file gives whole (the last one that lists them), instead of merging them over the default."""

MODEL_BOUND_KEYS = ("anchors",)
"""Options that name models, and so go with the models they name: those of the file that gives `models` or of a
later one, never an earlier file's (a config that replaces the default's models and names no anchors has none)."""

OVERRIDES = "--config"
"""The name of the command line's single options (`--config key=value`) where an error says where an option came from."""

PATH_KEYS = ("path", "hierarchy")
"""Dataset options that are paths, taken under data_root when relative."""

ZOO_MEAN = (0.5, 0.5, 0.5)
ZOO_STD = (0.5, 0.5, 0.5)
"""The input normalisation the zoo trains with, and so its models' and their untrained twins'."""

ZOO_CHECKPOINT = "results/zoo/{model}.pt"
"""Where the workflow writes the checkpoint of a zoo model, by model id."""

ZOO_OBJECTIVE_SLUGS = {"Sup": "sup", "SSL": "ssl", "Img-Txt": "imgtxt"}
"""The objective's part of a zoo model id."""

INHERITED_MODEL_OPTIONS = ("layers", "token_pooling")
"""Top-level options every model takes unless it sets its own (thingsvision models take no `layers`). Absent at
the top level they mean no layer analysis and CLS pooling; a model spec holds them only where the model or the top
level sets them, so a config without them resolves to the model specs, and runs the jobs, it did before."""


class ConfigError(ValueError):
    """The config is invalid; the message names the culprit. `options` are the top-level options at fault, so that
    resolve_config can say which file each came from."""

    def __init__(self, message: str, *options: str) -> None:
        super().__init__(message)
        self.options = options


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A YAML loader (libyaml's where installed) that rejects a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"duplicate id {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The options of one YAML config file; ConfigError naming the file (and line) if it is not valid YAML, is not a
    mapping of options, or repeats a key in one mapping."""
    try:
        options = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
        context = f" ({context}{f' from line {start.line + 1}' if start is not None else ''})" if context else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}{context}") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of options, not a {type(options).__name__}")
    return options


def resolve_config(
    config: MutableMapping[str, Any],
    schema: str | os.PathLike,
    config_files: Sequence[str | os.PathLike] = (),
    command_line_files: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Resolve the workflow's config in place, as Snakemake merged it from `config_files` (the default config and
    `command_line_files`, the --configfile options) and `overrides` (the --config options).

    The models and datasets come whole from the last source that lists them, not merged over the default config's,
    and the anchors go with the models (MODEL_BOUND_KEYS: none where the file that gives the models names none);
    then the schema's defaults are filled in, relative dataset paths are taken under data_root, derived metadata
    (size_class) is filled in, the config is checked, the top-level `layers` and `token_pooling` are passed to the
    models that do not set their own, and the zoo's models, if any, are added to the models. A ConfigError says
    which file (or --config) each option at fault came from.
    """
    sources = config_sources(config_files, command_line_files, overrides)
    origins = {key: name for name, options in sources for key in options}
    for key in LISTED_KEYS:
        listed = [(name, options[key]) for name, options in sources if key in options]
        if listed:
            config[key] = copy.deepcopy(listed[-1][1])
    models_from = max((i for i, (_, options) in enumerate(sources) if "models" in options), default=0)
    for key in MODEL_BOUND_KEYS:
        given = [(name, options[key]) for name, options in sources[models_from:] if key in options]
        if given:
            origins[key], config[key] = given[-1][0], copy.deepcopy(given[-1][1])
        else:
            origins.pop(key, None)
            config.pop(key, None)
    try:
        validate_schema(config, schema)
        config["datasets"] = {d: resolve_paths(spec, config["data_root"]) for d, spec in config["datasets"].items()}
        check_config(config)
        inherit_model_options(config)
        if config.get("zoo"):
            config["models"].update(zoo_models(config["zoo"], config["models"], config["datasets"], ZOO_CHECKPOINT))
    except ConfigError as error:
        named = [f"{key} from {origins[key]}" for key in dict.fromkeys(error.options) if key in origins]
        raise ConfigError(f"{error} ({'; '.join(named)})" if named else str(error), *error.options) from None


def config_sources(
    config_files: Sequence[str | os.PathLike],
    command_line_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The sources of the config in the order they apply, each as (name, options): the config files that are not
    command-line files (the default config), then the command-line files in their order, then the --config
    options (named OVERRIDES). Every file is read with read_config_file: a ConfigError names a file that is not
    valid YAML or repeats a key."""
    given = [Path(path).resolve() for path in command_line_files]
    defaults = [path for path in config_files if Path(path).resolve() not in given]
    sources = [(str(path), read_config_file(path)) for path in [*defaults, *command_line_files]]
    if overrides:
        sources.append((OVERRIDES, dict(overrides)))
    return sources


def validate_schema(config: MutableMapping[str, Any], schema: str | os.PathLike) -> None:
    """Check `config` against the JSON schema (a YAML file) and fill in its defaults, as snakemake.utils.validate
    does; ConfigError naming the option on a violation."""
    import jsonschema
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping, instance: Any, subschema: Mapping) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, option in properties.items():
                if "default" in option:
                    instance.setdefault(name, option["default"])
        yield from check_properties(validator, properties, instance, subschema)

    validator = validators.extend(Draft202012Validator, {"properties": set_defaults})
    try:
        validator(yaml.load(Path(schema).read_text(), Loader=_UniqueKeyLoader)).validate(config)
    except jsonschema.ValidationError as error:
        where = ".".join(map(str, error.absolute_path)) or "the config"
        options = (str(error.absolute_path[0]),) if error.absolute_path else ()
        raise ConfigError(f"{where}: {error.message} (schema {Path(schema).name})", *options) from None


def resolve_paths(spec: Mapping[str, Any], data_root: str) -> dict[str, Any]:
    """A copy of the dataset spec with its relative paths (also those of a nested `imagenet` spec) under `data_root`."""
    resolved = dict(spec)
    for key in PATH_KEYS:
        if key in resolved:
            path = os.path.join(os.path.expanduser(data_root), os.path.expanduser(resolved[key]))
            resolved[key] = os.path.normpath(path)
    if isinstance(resolved.get("imagenet"), Mapping):
        resolved["imagenet"] = resolve_paths(resolved["imagenet"], data_root)
    return resolved


def check_config(config: MutableMapping[str, Any]) -> None:
    """Check what the schema cannot (metric names, anchors, the datasets the analyses name) and fill in each
    model's size_class from its parameter count where the config does not give it."""
    check_similarities(config)
    for metric in config["metrics"]:
        try:
            get_metric(metric)
        except ValueError as error:
            raise ConfigError(f"metrics: {error}", "metrics") from None
    try:
        ProbeSettings(**{key: value for key, value in config["probe"].items() if key not in ("seeds", "memory_budget")})
    except ValueError as error:
        raise ConfigError(f"probe: {error}", "probe") from None
    for option in ("models", "datasets"):
        check_ids_differ_in_more_than_case(option, config[option])
    missing = [a for a in config["anchors"] if a not in config["models"]]
    if missing:
        raise ConfigError(
            f"anchor model(s) {missing} are not in models; list configured model ids under anchors, or none "
            "(`anchors: []`)",
            "anchors",
            "models",
        )
    for spec in config["models"].values():
        spec["metadata"].setdefault("size_class", size_class(spec["metadata"]["parameters"]))
    check_structure(config["structure"], list(config["datasets"]))
    check_layers("layers", config.get("layers"))
    for model_id, spec in config["models"].items():
        check_layers(f"models.{model_id}.layers", spec.get("layers"))
        if spec.get("layers") and spec["backend"] == "thingsvision":
            raise ConfigError(
                f"models.{model_id}.layers: the layer analysis runs in the main environment; "
                f"thingsvision model '{model_id}' takes no layers"
            )
    for architecture, spec in (config.get("zoo") or {}).get("architectures", {}).items():
        check_layers(f"zoo.architectures.{architecture}.layers", spec.get("layers"))
    if not config.get("similarities"):  # from similarity tables no dataset is read
        check_sample_sizes(config)


def check_similarities(config: Mapping[str, Any]) -> None:
    """Raise ConfigError if a config that starts from similarity tables (`similarities`) also asks for what only
    images give: a model zoo, or layers of a layer analysis."""
    if not config.get("similarities"):
        return
    asking = [key for key in ("zoo", "layers") if config.get(key)]
    asking += [f"models.{model_id}.layers" for model_id, spec in config["models"].items() if spec.get("layers")]
    if asking:
        raise ConfigError(
            f"similarities: the analyses start from similarity tables, without images; {asking} need images "
            "(remove them, or `similarities`)"
        )


def check_layers(option: str, layers: Any) -> None:
    """Raise ConfigError naming `option` if `layers` (null, a preset name or a list of module names, as the schema
    checked) names no preset."""
    if isinstance(layers, str) and layers not in LAYER_PRESETS:
        raise ConfigError(
            f"{option}: {layers!r} is neither a preset {list(LAYER_PRESETS)} nor a list of module names",
            option.split(".")[0],
        )


def check_ids_differ_in_more_than_case(option: str, ids: Iterable[str]) -> None:
    """Raise ConfigError naming both ids if two ids of `option` differ only in case: they become file names, which
    collide on a case-insensitive file system (macOS, Windows)."""
    seen: dict[str, str] = {}
    for name in ids:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise ConfigError(
                f"{option}: ids {other!r} and {name!r} differ only in case; their result files would be the same "
                "on a case-insensitive file system (macOS, Windows): rename one",
                option,
            )


def probe_datasets(config: Mapping[str, Any]) -> list[str]:
    """The datasets the linear probes run on: all but App. C's per-k subsets (structure.sample_size
    .per_k_datasets), which serve a similarity analysis only."""
    per_k = {entry["dataset"] for entry in config["structure"]["sample_size"]["per_k_datasets"]}
    return [dataset for dataset in config["datasets"] if dataset not in per_k]


def check_sample_sizes(config: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the dataset, its size and the metric (with its k) or probe setting if a dataset
    whose train split is known before any job (simcon.dataset_sizes.train_class_counts: generated domains, digits,
    image folders by their files) has a similarity subset of fewer images than a metric needs
    (MetricSpec.min_samples), or, where it is probed, a train split the probe's stratified validation split cannot
    divide (a class of one image, or fewer fit or validation images than classes)."""
    probed = probe_datasets(config)
    for dataset_id, spec in config["datasets"].items():
        val_fraction = config["probe"]["val_fraction"] if dataset_id in probed else None
        counts = train_class_counts(spec, capped=True)
        problem = counts and _sample_size_problem(dataset_id, spec, counts, config["metrics"], val_fraction)
        if problem and spec["source"] == "image_folder":  # capped counts may understate: count every file
            problem = _sample_size_problem(dataset_id, spec, train_class_counts(spec), config["metrics"], val_fraction)
        if problem:
            raise ConfigError(problem, "datasets")


def _sample_size_problem(
    dataset_id: str,
    spec: Mapping[str, Any],
    counts: Mapping[str, int],
    metrics: Sequence[str],
    val_fraction: float | None,
) -> str | None:
    """What check_sample_sizes finds wrong with a dataset of these train class counts; None if nothing."""
    counts = cut_counts(counts, spec.get("samples_per_class"))
    present = {name: count for name, count in counts.items() if count}  # an empty class folder: check_dataset's
    cut = f", samples_per_class {spec['samples_per_class']}" if spec.get("samples_per_class") else ""
    where = (
        f"the similarity subset of dataset '{dataset_id}' (train split: {sum(present.values())} images of "
        f"{len(present)} classes, max_samples {spec['max_samples']}{cut})"
    )
    for metric in metrics:
        try:
            require_samples(metric, subset_size(present, spec["max_samples"]), where)
        except ValueError as error:
            return f"metrics: {error}; choose a smaller k, or give the dataset more images"
    if val_fraction is None:
        return None
    single = [name for name, count in present.items() if count == 1]
    if single:
        return (
            f"dataset '{dataset_id}': train class(es) {single[:5]} have a single image; the linear probe's "
            "stratified validation split needs at least two of each class"
        )
    n_fit, n_validation = validation_split(sum(present.values()), val_fraction)
    if min(n_fit, n_validation) < len(present):
        return (
            f"dataset '{dataset_id}': the linear probe splits its {sum(present.values())} train images into "
            f"{n_fit} to fit and {n_validation} to validate (probe.val_fraction {val_fraction}), too few to hold "
            f"each of its {len(present)} classes in both; give it more images"
        )
    return None


def inherit_model_options(config: MutableMapping[str, Any]) -> None:
    """Give every model the top-level options of INHERITED_MODEL_OPTIONS that it does not set itself, where the
    top level sets them (`layers` not to thingsvision models)."""
    for spec in config["models"].values():
        for key in INHERITED_MODEL_OPTIONS:
            if key in config and not (key == "layers" and spec["backend"] == "thingsvision"):
                spec.setdefault(key, config[key])


def check_structure(settings: Mapping[str, Any], datasets: Sequence[str]) -> None:
    """Raise ConfigError naming the option if the `structure` settings name a dataset that is not configured,
    pair a dataset with itself, or repeat a per-k sample size."""
    named = {
        "structure.dataset_pairs": [d for pair in settings["dataset_pairs"] for d in pair],
        "structure.tsne_datasets": settings["tsne_datasets"],
        "structure.sample_size.datasets": settings["sample_size"]["datasets"] or [],
        "structure.sample_size.per_k_datasets": [e["dataset"] for e in settings["sample_size"]["per_k_datasets"]],
    }
    for option, names in named.items():
        unknown = [name for name in names if name not in datasets]
        if unknown:
            raise ConfigError(
                f"{option} names dataset(s) {unknown} that are not configured; datasets: {list(datasets)}",
                "structure",
                "datasets",
            )
    for a, b in settings["dataset_pairs"]:
        if a == b:
            raise ConfigError(
                f"structure.dataset_pairs: the pair [{a}, {b}] compares a dataset with itself", "structure"
            )
    ks = [e["samples_per_class"] for e in settings["sample_size"]["per_k_datasets"]]
    if len(set(ks)) != len(ks):
        raise ConfigError(f"structure.sample_size.per_k_datasets: samples_per_class repeats: {ks}", "structure")


# --------------------------------------------------------------------------- the model zoo's models


def zoo_model_id(architecture: str, objective: str, seed: int) -> str:
    """The model id of one zoo member, e.g. 'cnn_imgtxt_seed2'."""
    return f"{architecture}_{ZOO_OBJECTIVE_SLUGS[objective]}_seed{seed}"


def zoo_members(zoo: Mapping[str, Any]) -> dict[str, tuple[str, str, int]]:
    """(architecture, objective, seed) of every zoo model id."""
    return {
        zoo_model_id(architecture, objective, seed): (architecture, objective, seed)
        for architecture in zoo["architectures"]
        for objective in zoo["objectives"]
        for seed in zoo["seeds"]
    }


def check_zoo(zoo: Mapping[str, Any], models: Mapping[str, Any], datasets: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the culprit if a twin or the in-domain dataset does not fit the zoo (a twin is the
    same untrained network, with the architecture's `layers` where it sets them), or a zoo model id is already a
    configured model's."""
    for architecture, spec in zoo["architectures"].items():
        twin = models.get(spec["twin"])
        if twin is None:
            raise ConfigError(
                f"zoo architecture '{architecture}': twin {spec['twin']!r} is not in models", "zoo", "models"
            )
        expected = {
            "weights": "random",
            "name": spec["name"],
            "layer": spec["layer"],
            "mean": list(ZOO_MEAN),
            "std": list(ZOO_STD),
        }
        if "layers" in spec:
            expected["layers"] = spec["layers"]
        differing = [key for key, value in expected.items() if _plain(twin.get(key)) != value]
        twin_kwargs = {k: v for k, v in twin.get("kwargs", {}).items() if k != "num_classes"}
        if twin_kwargs != {k: v for k, v in spec["kwargs"].items() if k != "num_classes"}:
            differing.append("kwargs")
        if differing:
            raise ConfigError(
                f"zoo architecture '{architecture}': twin {spec['twin']!r} must be the same untrained network "
                f"with the zoo's input normalisation; it differs in {differing} (expected {expected})",
                "zoo",
                "models",
            )
    in_domain = zoo.get("in_domain")
    if in_domain is not None:
        spec = datasets.get(in_domain, {})
        if spec.get("source") != "generated" or spec.get("domain") != "scenes":
            raise ConfigError(
                f"zoo: in_domain {in_domain!r} must be a dataset with source 'generated' and domain 'scenes'",
                "zoo",
                "datasets",
            )
    configured = {model_id.casefold() for model_id in models}
    taken = [model_id for model_id in zoo_members(zoo) if model_id.casefold() in configured]
    if taken:
        raise ConfigError(
            f"zoo model id(s) {taken} are already in models (ids are compared ignoring case); rename them",
            "zoo",
            "models",
        )


def _plain(value: Any) -> Any:
    """Tuples as lists, so config values compare equal however YAML or Python spelled them."""
    return list(value) if isinstance(value, tuple) else value


def zoo_models(
    zoo: Mapping[str, Any], models: Mapping[str, Any], datasets: Mapping[str, Any], checkpoint: str
) -> dict[str, dict[str, Any]]:
    """Model specs of every (architecture, objective, seed) of the zoo config, loading the checkpoint
    `checkpoint.format(model=<id>)` through the timm backend, with their metadata. A zoo model's parameter
    count is its untrained twin's (the same network; the check job of the twin builds it), and so are its
    `layers` and `token_pooling` where the twin has them (the architecture's `layers` must be the twin's).

    ConfigError names the culprit if an id is already in `models`, or a twin or the in-domain dataset does not fit.
    """
    check_zoo(zoo, models, datasets)
    specs = {}
    for model_id, (architecture, objective, _) in zoo_members(zoo).items():
        spec = zoo["architectures"][architecture]
        twin = models[spec["twin"]]
        parameters = twin["metadata"]["parameters"]
        specs[model_id] = {
            **{key: twin[key] for key in INHERITED_MODEL_OPTIONS if key in twin},
            "backend": "timm",
            "name": spec["name"],
            "layer": spec["layer"],
            "weights": checkpoint.format(model=model_id),
            "kwargs": {**spec["kwargs"], "num_classes": 0},
            "mean": list(ZOO_MEAN),
            "std": list(ZOO_STD),
            "init_seed": 0,
            "metadata": {
                "objective": objective,
                "architecture": spec["architecture"],
                "architecture_class": spec["architecture_class"],
                "training_data": "zoo scenes",
                "data_class": "None",
                "parameters": parameters,
                "size_class": size_class(parameters),
            },
        }
    return specs


# --------------------------------------------------------------------------- the layer analyses


def layer_grid_pairs(
    pairs: Sequence[Sequence[str]] | None, layer_models: Sequence[str], objectives: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The model pairs whose layer x layer grids are drawn: `pairs` (layer_analysis.grid_pairs) as given, or when
    None, the first model of each objective among `layer_models` (config order), every pair of them and each with
    itself. `objectives` maps model id to objective. ConfigError if a pair names a model without layers."""
    if pairs is not None:
        unknown = sorted({model for pair in pairs for model in pair if model not in layer_models})
        if unknown:
            raise ConfigError(
                f"layer_analysis.grid_pairs names model(s) {unknown} without layers; models with layers: "
                f"{list(layer_models)}"
            )
        return [(a, b) for a, b in pairs]
    first_of_objective: dict[str, str] = {}
    for model in layer_models:
        first_of_objective.setdefault(objectives[model], model)
    chosen = list(first_of_objective.values())
    return [(a, b) for i, a in enumerate(chosen) for b in chosen[i:]]
