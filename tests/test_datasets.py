import math

import numpy as np
import pytest

from conftest import make_image_folder
from simcon.datasets import DatasetError, check_dataset, load_split, stratified_subset

GENERATED = {"source": "generated", "train_per_class": 5, "test_per_class": 2, "resolution": 32, "seed": 3}


def test_subset_keeps_everything_when_small():
    labels = np.array([0, 1, 1, 2, 2, 2])
    assert stratified_subset(labels, max_samples=6).tolist() == list(range(6))


def test_subset_takes_ceil_per_class_and_is_deterministic():
    labels = np.repeat([0, 1, 2], [50, 30, 5])
    indices = stratified_subset(labels, max_samples=20, seed=42)
    per_class = math.ceil(20 / 3)
    counts = np.bincount(labels[indices])
    assert counts.tolist() == [per_class, per_class, 5]  # a class smaller than its share is kept whole
    assert np.all(np.diff(indices) > 0)
    assert np.array_equal(indices, stratified_subset(labels, max_samples=20, seed=42))
    assert not np.array_equal(indices, stratified_subset(labels, max_samples=20, seed=7))


@pytest.mark.parametrize("domain,n_classes", [("shapes", 6), ("textures", 6), ("cells", 4)])
def test_generated_domains_are_balanced_and_reproducible(domain, n_classes):
    spec = {**GENERATED, "domain": domain}
    train = load_split("gen", spec, "train")
    test = load_split("gen", spec, "test")
    assert np.bincount(train.labels).tolist() == [5] * n_classes
    assert np.bincount(test.labels).tolist() == [2] * n_classes
    first = np.asarray(train.load_image(0))
    assert first.shape == (32, 32, 3)
    assert np.array_equal(first, np.asarray(load_split("gen", spec, "train").load_image(0)))
    assert not np.array_equal(np.asarray(train.load_image(0)), np.asarray(test.load_image(0)))


def test_digits_split_is_stratified_and_disjoint():
    train = load_split("digits", {"source": "sklearn_digits"}, "train")
    test = load_split("digits", {"source": "sklearn_digits"}, "test")
    assert len(train) + len(test) == 1797
    assert len(train.class_names) == 10 and set(test.labels) == set(range(10))
    assert train.load_image(0).mode == "RGB"


def test_image_folder_reads_classes_from_train(image_folder):
    spec = {"source": "image_folder", "path": str(image_folder)}
    check_dataset("mine", spec)
    train = load_split("mine", spec, "train")
    assert train.class_names == ["cat", "dog", "eel"]
    assert np.bincount(train.labels).tolist() == [5, 4, 3]
    assert train.load_image(len(train) - 1).size == (24, 24)


def test_missing_folder_names_the_dataset(tmp_path):
    with pytest.raises(DatasetError, match="dataset 'ghost'.*does not exist"):
        check_dataset("ghost", {"source": "image_folder", "path": str(tmp_path / "nope")})


def test_one_class_folder_is_rejected(tmp_path):
    root = make_image_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DatasetError, match="dataset 'lonely'.*at least two"):
        check_dataset("lonely", {"source": "image_folder", "path": str(root)})


def test_test_class_without_train_folder_is_rejected(image_folder):
    (image_folder / "test" / "fox").mkdir()
    with pytest.raises(DatasetError, match=r"dataset 'mine'.*\['fox'\]"):
        load_split("mine", {"source": "image_folder", "path": str(image_folder)}, "test")


def test_unreadable_image_names_dataset_and_file(image_folder):
    (image_folder / "train" / "cat" / "0.png").write_bytes(b"not a png")
    train = load_split("mine", {"source": "image_folder", "path": str(image_folder)}, "train")
    with pytest.raises(DatasetError, match="dataset 'mine': cannot read image .*0.png"):
        train.load_image(0)


def test_unknown_generated_domain_lists_known_ones():
    with pytest.raises(DatasetError, match="unknown generated domain 'clouds'.*cells"):
        check_dataset("sky", {**GENERATED, "domain": "clouds"})
