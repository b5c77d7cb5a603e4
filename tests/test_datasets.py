import math

import numpy as np
import pytest

from conftest import make_image_folder, make_wds
from simcon import vocabulary
from simcon.dataset_sizes import cut_counts, subset_size, train_class_counts
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


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_class_folder_without_images_names_dataset_split_and_class(image_folder, split):
    for image in (image_folder / split / "dog").iterdir():
        image.unlink()
    (image_folder / split / "dog" / "notes.txt").write_text("not an image")
    spec = {"source": "image_folder", "path": str(image_folder)}
    with pytest.raises(
        DatasetError, match=f"dataset 'mine': the {split} folder of class 'dog', .*dog, holds no images"
    ):
        check_dataset("mine", spec)


def test_a_train_class_without_a_test_folder_is_fine_and_the_check_counts_each_class(image_folder):
    for image in (image_folder / "test" / "eel").iterdir():
        image.unlink()
    (image_folder / "test" / "eel").rmdir()
    found = check_dataset("mine", {"source": "image_folder", "path": str(image_folder)})
    assert found == {"n_train": 12, "n_test": 9, "classes": 3, "train_per_class": {"cat": 5, "dog": 4, "eel": 3}}


def test_test_classes_without_train_images_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCON_CACHE_DIR", str(tmp_path / "cache"))
    root = make_wds(tmp_path / "wds", "train", [0, 0, 1, 1], per_shard=2, classnames=["ant", "bee", "cat"])
    make_wds(root, "test", [0, 1, 2, 2], per_shard=2)
    with pytest.raises(DatasetError, match=r"dataset 'insects': test class\(es\) \['cat'\] have no train images"):
        check_dataset("insects", {"source": "wds", "path": str(root)})


def test_unreadable_image_names_dataset_and_file(image_folder):
    (image_folder / "train" / "cat" / "0.png").write_bytes(b"not a png")
    train = load_split("mine", {"source": "image_folder", "path": str(image_folder)}, "train")
    with pytest.raises(DatasetError, match="dataset 'mine': cannot read image .*0.png"):
        train.load_image(0)


def test_unknown_generated_domain_lists_known_ones():
    with pytest.raises(DatasetError, match="unknown generated domain 'clouds'.*cells"):
        check_dataset("sky", {**GENERATED, "domain": "clouds"})


# --------------------------------------------------------------------------- sizes known before any job


@pytest.mark.parametrize(
    "counts,max_samples",
    [([5, 4, 3], 100), ([5, 4, 3], 12), ([5, 4, 3], 11), ([50, 2, 9], 10), ([10, 0, 7, 1], 6), ([133, 136], 200)],
)
def test_subset_size_is_that_of_the_stratified_subset(counts, max_samples):
    labels = np.repeat(np.arange(len(counts)), counts)
    expected = len(stratified_subset(labels, max_samples))
    assert subset_size({str(c): n for c, n in enumerate(counts)}, max_samples) == expected


def test_sizes_from_the_config_are_those_of_the_splits():
    digits = load_split("d", {"source": "sklearn_digits"}, "train")
    assert train_class_counts({"source": "sklearn_digits"}) == dict(
        zip(digits.class_names, np.bincount(digits.labels).tolist())
    )
    for domain in vocabulary.GENERATED_DOMAINS:
        spec = {**GENERATED, "domain": domain}
        train = load_split(domain, spec, "train")
        counts = dict(zip(train.class_names, np.bincount(train.labels).tolist()))
        assert train_class_counts(spec) == counts == dict.fromkeys(vocabulary.GENERATED_CLASSES[domain], 5)


def test_image_folder_counts_are_those_of_the_split_and_cut_as_the_split_is(image_folder):
    (image_folder / "train" / "cat" / "notes.txt").write_text("not an image")
    spec = {"source": "image_folder", "path": str(image_folder), "max_samples": 4}
    assert train_class_counts(spec) == {"cat": 5, "dog": 4, "eel": 3}
    assert train_class_counts(spec, capped=True) == {"cat": 2, "dog": 2, "eel": 2}  # ceil(4 / 3)
    cut = load_split("mine", {**spec, "samples_per_class": 4}, "train")
    assert cut_counts(train_class_counts(spec), 4) == dict(zip(cut.class_names, np.bincount(cut.labels).tolist()))
