import pytest

from simcon.config import ConfigError, check_config, check_unique_keys, size_class


def test_duplicate_model_id_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  resnet:\n    backend: timm\n  resnet:\n    backend: torchvision\n")
    with pytest.raises(ConfigError, match="duplicate id 'resnet' \\(line 4\\)"):
        check_unique_keys([path])


def test_unique_keys_pass(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  a: {backend: timm}\n  b: {backend: timm}\n")
    check_unique_keys([path])


@pytest.mark.parametrize("parameters,expected", [(4.6e6, "small"), (99.9e6, "small"), (100e6, "medium"),
                                                 (304e6, "large"), (400e6, "xlarge"), (1.1e9, "xlarge")])
def test_size_classes_follow_the_paper(parameters, expected):
    assert size_class(parameters) == expected


def _config(**overrides):
    model = {"backend": "timm", "name": "resnet18", "layer": "fc", "weights": "random",
             "metadata": {"parameters": 11.7e6}}
    config = {"metrics": ["cka_linear_unbiased"], "anchors": [], "models": {"r": model},
              "datasets": {"d": {"source": "sklearn_digits"}}}
    config.update(overrides)
    return config


def test_unknown_metric_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown metric\(s\) \['cka_cosine'\]; known metrics: \['cka_linear_unbiased'\]"):
        check_config(_config(metrics=["cka_cosine"]), ["cka_linear_unbiased"])


def test_unknown_anchor_is_named():
    with pytest.raises(ConfigError, match=r"anchor model\(s\) \['ghost'\]"):
        check_config(_config(anchors=["ghost"]), ["cka_linear_unbiased"])


def test_size_class_is_derived():
    config = _config()
    check_config(config, ["cka_linear_unbiased"])
    assert config["models"]["r"]["metadata"]["size_class"] == "small"
