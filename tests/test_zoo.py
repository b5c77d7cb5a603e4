"""The model zoo: generated scenes, objectives, deterministic training, workflow models, and a reduced zoo end to end."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, snakemake
from simcon.config import ConfigError, zoo_members, zoo_models
from simcon.datasets import load_split
from simcon.models import build_model
from simcon.scenes import ATTRIBUTES, COLOURS, Scenes, caption, generate_scenes, tokenize
from simcon.zoo import (
    TrainingSettings,
    ZooError,
    augment,
    build_backbone,
    info_nce,
    normalise,
    nt_xent,
    objective_similarity,
    train,
)

ZOO_CONFIG = yaml.safe_load((REPO / "config/zoo.yaml").read_text())
ZOO = ZOO_CONFIG["zoo"]
CNN = ZOO["architectures"]["cnn"]
VIT = ZOO["architectures"]["vit"]
TINY_TRAINING = TrainingSettings(epochs=1, batch_size=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as the training jobs use: small models train faster so, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- scenes


def test_caption_and_tokens():
    attributes = {"shape": 0, "colour": 0, "size": 1, "vertical": 1, "horizontal": 0, "background": 2}
    text = caption(attributes)
    assert text == "a large red circle at the bottom left on a dotted background"
    assert len(tokenize(text)) == 12 and len(set(tokenize(text).tolist())) == 11  # 'a' twice
    with pytest.raises(ValueError, match=r"\['purple'\]"):
        tokenize("a large purple circle")


def test_scenes_place_the_named_colour_where_the_caption_says():
    scenes = generate_scenes(200, 32, seed=3)
    colours = np.array(list(COLOURS.values()), dtype=float)
    for i in range(len(scenes)):
        target = colours[scenes.attributes["colour"][i]]
        mask = np.abs(scenes.images[i].astype(float) - target).sum(axis=2) < 30
        assert mask.sum() > 10, f"scene {i}: too few pixels of its colour"
        ys, xs = np.nonzero(mask)
        assert ((xs.min() + xs.max()) / 2 < 16) == (scenes.attributes["horizontal"][i] == 0)
        assert ((ys.min() + ys.max()) / 2 < 16) == (scenes.attributes["vertical"][i] == 0)


def test_scenes_are_reproducible_and_round_trip_through_arrays():
    first, second = generate_scenes(20, 16, seed=1), generate_scenes(20, 16, seed=1)
    np.testing.assert_array_equal(first.images, second.images)
    assert not np.array_equal(first.images, generate_scenes(20, 16, seed=2).images)
    again = Scenes.from_arrays(first.to_arrays())
    np.testing.assert_array_equal(again.tokens, first.tokens)
    assert set(again.attributes) == set(ATTRIBUTES)


def test_scenes_dataset_is_labelled_by_shape():
    split = load_split(
        "scenes",
        {
            "source": "generated",
            "domain": "scenes",
            "train_per_class": 3,
            "test_per_class": 2,
            "resolution": 24,
            "seed": 0,
        },
        "test",
    )
    assert split.class_names == ["circle", "square", "triangle", "cross", "ring"]
    assert split.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert split.load_image(0).size == (24, 24)


# --------------------------------------------------------------------------- objectives and augmentation


def test_info_nce_known_answer():
    n, temperature = 4, 0.5
    loss = info_nce(torch.eye(n), 3 * torch.eye(n), temperature)  # matched rows cosine 1, others 0
    expected = -math.log(math.exp(1 / temperature) / (math.exp(1 / temperature) + n - 1))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_matches_a_loop_over_views():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    views = torch.nn.functional.normalize(torch.cat([first, second]), dim=1).double().numpy()
    temperature, total = 0.2, 0.0
    for i in range(10):
        partner = (i + 5) % 10
        others = [j for j in range(10) if j != i]
        scores = np.array([views[i] @ views[j] / temperature for j in others])
        total += -(views[i] @ views[partner] / temperature - np.log(np.exp(scores).sum()))
    assert nt_xent(first, second, temperature).item() == pytest.approx(total / 10, rel=1e-5)


def test_augment_without_crop_jitter_or_grey_is_the_identity_and_otherwise_seeded():
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = TrainingSettings(crop_scale=(1.0, 1.0), jitter=0.0, grayscale=0.0)
    torch.testing.assert_close(augment(images, plain, torch.Generator().manual_seed(1)), images)
    settings = TrainingSettings()
    first = augment(images, settings, torch.Generator().manual_seed(1))
    assert torch.equal(first, augment(images, settings, torch.Generator().manual_seed(1)))
    assert not torch.allclose(first, augment(images, settings, torch.Generator().manual_seed(2)))
    assert first.min() >= 0 and first.max() <= 1


def test_grey_views_hold_the_luminance_in_every_channel_at_the_given_rate():
    images = torch.rand(400, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    no_crop = {"crop_scale": (1.0, 1.0), "jitter": 0.0}
    grey = augment(images, TrainingSettings(**no_crop, grayscale=1.0), torch.Generator().manual_seed(1))
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    for channel in range(3):
        torch.testing.assert_close(grey[:, channel], expected)
    some = augment(images, TrainingSettings(**no_crop, grayscale=0.5), torch.Generator().manual_seed(1))
    is_grey = (some[:, 0] == some[:, 1]).all(dim=(1, 2)) & (some[:, 1] == some[:, 2]).all(dim=(1, 2))
    assert 0.4 < is_grey.float().mean() < 0.6
    torch.testing.assert_close(some[~is_grey], images[~is_grey])
    with pytest.raises(ZooError, match="grayscale is a probability, got 1.5"):
        TrainingSettings(grayscale=1.5)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_scenes() -> Scenes:
    return generate_scenes(48, 32, seed=0)


def trained_state(spec: dict, objective: str, scenes: Scenes, seed: int) -> dict[str, torch.Tensor]:
    backbone = build_backbone(spec["name"], spec["kwargs"], seed)
    losses = train(backbone, objective, scenes, TINY_TRAINING, seed, progress=False)
    assert len(losses) == 1 and math.isfinite(losses[0])
    return backbone.state_dict()


@pytest.mark.parametrize("spec,objective", [(CNN, "Img-Txt"), (VIT, "SSL"), (CNN, "Sup")])
def test_training_is_deterministic_for_a_fixed_seed(tiny_scenes, spec, objective):
    enabled = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # as the train_zoo job does
    try:
        first = trained_state(spec, objective, tiny_scenes, seed=0)
        second = trained_state(spec, objective, tiny_scenes, seed=0)
        other = trained_state(spec, objective, tiny_scenes, seed=1)
    finally:
        torch.use_deterministic_algorithms(enabled)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
    untrained = build_backbone(spec["name"], spec["kwargs"], 0).state_dict()
    assert not all(torch.equal(first[name], untrained[name]) for name in first)


def test_unknown_objective_and_too_few_scenes_are_named(tiny_scenes):
    backbone = build_backbone(CNN["name"], CNN["kwargs"], 0)
    with pytest.raises(ZooError, match="unknown objective 'BYOL'"):
        train(backbone, "BYOL", tiny_scenes, TINY_TRAINING, 0, progress=False)
    with pytest.raises(ZooError, match="48 scenes are fewer than one batch of 64"):
        train(backbone, "Sup", tiny_scenes, TrainingSettings(batch_size=64), 0, progress=False)


def test_checkpoint_loads_through_the_ordinary_timm_backend(tiny_scenes, tmp_path):
    backbone = build_backbone(VIT["name"], VIT["kwargs"], seed=2)
    train(backbone, "Sup", tiny_scenes, TINY_TRAINING, 2, progress=False)
    torch.save({"state_dict": backbone.state_dict()}, tmp_path / "vit_sup_seed2.pt")
    specs = zoo_models(ZOO, ZOO_CONFIG["models"], ZOO_CONFIG["datasets"], str(tmp_path / "{model}.pt"))
    model = build_model("vit_sup_seed2", specs["vit_sup_seed2"])
    images = normalise(torch.from_numpy(tiny_scenes.images[:6]).permute(0, 3, 1, 2).float() / 255)
    captured = []
    model.layer.register_forward_hook(lambda _m, _i, out: captured.append(out[:, 0]))
    with torch.no_grad():
        model.network(images)
        torch.testing.assert_close(captured[0], backbone(images))


# --------------------------------------------------------------------------- the zoo as workflow models


def test_zoo_models_ids_weights_and_metadata():
    specs = zoo_models(ZOO, ZOO_CONFIG["models"], ZOO_CONFIG["datasets"], "results/zoo/{model}.pt")
    assert len(specs) == 2 * 3 * 3 and list(specs) == list(zoo_members(ZOO))
    spec = specs["cnn_imgtxt_seed2"]
    assert spec["weights"] == "results/zoo/cnn_imgtxt_seed2.pt" and spec["layer"] == "global_pool"
    assert spec["metadata"]["objective"] == "Img-Txt" and spec["metadata"]["architecture_class"] == "CNN"
    assert spec["metadata"]["parameters"] == ZOO_CONFIG["models"]["cnn_random"]["metadata"]["parameters"]
    assert (
        specs["vit_ssl_seed0"]["metadata"]["parameters"] == ZOO_CONFIG["models"]["vit_random"]["metadata"]["parameters"]
    )
    assert zoo_members(ZOO)["vit_ssl_seed1"] == ("vit", "SSL", 1)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c["models"].pop("vit_random"), "twin 'vit_random' is not in models"),
        (lambda c: c["models"]["cnn_random"].update(std=[0.2, 0.2, 0.2]), r"twin 'cnn_random' .* differs in \['std'\]"),
        (
            lambda c: c["models"]["cnn_random"].update(
                kwargs={**c["models"]["cnn_random"]["kwargs"], "stem_width": 16}
            ),
            r"differs in \['kwargs'\]",
        ),
        (lambda c: c["datasets"]["scenes"].update(domain="shapes"), "in_domain 'scenes' must be"),
        (
            lambda c: c["models"].update(cnn_sup_seed0=c["models"]["cnn_random"]),
            r"\['cnn_sup_seed0'\] are already in models",
        ),
    ],
)
def test_zoo_config_errors_name_the_culprit(change, message):
    config = copy.deepcopy(ZOO_CONFIG)
    change(config)
    with pytest.raises(ConfigError, match=message):
        zoo_models(config["zoo"], config["models"], config["datasets"], "{model}.pt")


def test_objective_similarity_known_answer():
    members = {
        "a_sup_seed0": ("a", "Sup", 0),
        "a_sup_seed1": ("a", "Sup", 1),
        "a_ssl_seed0": ("a", "SSL", 0),
        "b_sup_seed0": ("b", "Sup", 0),
    }
    ids = [*members, "a_random"]
    matrix = pd.DataFrame(np.eye(5), index=ids, columns=ids)
    matrix.loc["a_sup_seed0", "a_sup_seed1"] = matrix.loc["a_sup_seed1", "a_sup_seed0"] = 0.9
    matrix.loc["a_ssl_seed0", ["a_sup_seed0", "a_sup_seed1"]] = [0.2, 0.4]
    matrix.loc[["a_sup_seed0", "a_sup_seed1"], "a_ssl_seed0"] = [0.2, 0.4]
    matrix.loc["b_sup_seed0", "a_sup_seed0"] = matrix.loc["a_sup_seed0", "b_sup_seed0"] = 0.99  # other architecture
    assert objective_similarity(matrix, members) == pytest.approx({"same_objective": 0.9, "different_objective": 0.3})


# --------------------------------------------------------------------------- a reduced zoo end to end


def reduced_zoo_config() -> dict:
    """config/zoo.yaml with one architecture, two seeds, a small training budget and small datasets."""
    config = copy.deepcopy(ZOO_CONFIG)
    config["zoo"].update(seeds=[0, 1], architectures={"cnn": CNN})
    config["zoo"]["scenes"]["count"] = 1536
    config["zoo"]["training"].update(epochs=4, batch_size=64)
    config["metrics"] = ["cka_linear_unbiased"]
    config["probe"] = {"seeds": [0], "weight_decay_steps": 7, "learning_rates": [0.01], "epochs": 5, "batch_size": 64}
    config["datasets"] = {name: config["datasets"][name] for name in ("scenes", "shapes")}
    for spec in config["datasets"].values():
        spec.update(train_per_class=30, test_per_class=10)
    return config


@pytest.mark.slow
@pytest.mark.workflow
def test_reduced_zoo_end_to_end(tmp_path):
    config = reduced_zoo_config()
    result = snakemake(tmp_path, config, timeout=1200)
    assert result.returncode == 0, result.stderr[-5000:]
    members = zoo_members(config["zoo"])
    assert sorted(members) == sorted(f"cnn_{o}_seed{s}" for o in ("sup", "ssl", "imgtxt") for s in (0, 1))
    for model in members:
        assert (tmp_path / f"results/zoo/{model}.pt").is_file()
        assert "train " + model in (tmp_path / f"logs/train_zoo/{model}.log").read_text()  # the progress bar
    matrix = pd.read_csv(tmp_path / "results/similarity/scenes/cka_linear_unbiased.csv", index_col=0)
    assert sorted(matrix.index) == sorted([*members, "cnn_random", "vit_random"])
    same = [matrix.loc[f"cnn_{o}_seed0", f"cnn_{o}_seed1"] for o in ("sup", "ssl", "imgtxt")]
    different = [matrix.loc[a, b] for a in members for b in members if members[a][1] != members[b][1]]
    assert min(same) > np.mean(different), (same, np.mean(different))
    table = pd.read_csv(tmp_path / "results/zoo/objective_similarity.csv").set_index("dataset")
    assert table.loc["scenes", "same_objective"] == pytest.approx(np.mean(same))
    assert table.loc["scenes", "different_objective"] == pytest.approx(np.mean(different))
    summary = pd.read_csv(tmp_path / "results/zoo/summary.csv")
    assert len(summary) == 6 and (summary["last_epoch_loss"] < summary["first_epoch_loss"]).all()
    assert (summary["twin"] == "cnn_random").all() and summary["in_domain_top1"].between(0, 1).all()
    assert (summary["beats_twin"] == (summary["in_domain_top1"] > summary["twin_top1"])).all()
    consistency = pd.read_csv(tmp_path / "results/consistency/cka_linear_unbiased/consistency.csv")
    assert {"Sup", "SSL", "Img-Txt"} <= set(consistency["set_a"])
