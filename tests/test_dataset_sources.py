"""Dataset sources of the paper's experiment, each on small generated data in its real on-disk format:
CLIP-benchmark webdataset shards, torchvision datasets from a local root, BREEDS tasks, k images per class."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

import simcon.datasets
from conftest import add_member, colour, image_bytes, make_wds, write_hierarchy
from simcon.config import resolve_paths
from simcon.datasets import (
    BREEDS_FILES,
    DatasetError,
    breeds_task,
    check_dataset,
    index_cache_dir,
    load_split,
    per_class_subset,
    stratified_subset,
)


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    """Each test caches shard indices in its own folder."""
    monkeypatch.setenv("SIMCON_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "wds-index"


def pixel(image: Image.Image) -> tuple[int, int, int]:
    return image.getpixel((2, 2))


# --------------------------------------------------------------------------- webdataset shards


def test_wds_reads_labels_names_and_images_across_shards(tmp_path):
    labels = [0, 1, 2, 1, 0, 2, 2]
    root = make_wds(tmp_path / "wds_toy", "train", labels, per_shard=3, classnames=["ant", "bee", "cat"])
    split = load_split("toy", {"source": "wds", "path": str(root)}, "train")
    assert split.labels.tolist() == labels
    assert split.class_names == ["ant", "bee", "cat"]
    assert [pixel(split.load_image(i)) for i in (0, 3, 6)] == [colour(0, 0), colour(3, 1), colour(6, 2)]
    assert split.load_image(4).mode == "RGB"


def test_wds_orders_shards_by_number_without_nshards_file(tmp_path):
    labels = [i % 2 for i in range(11)]  # 11 one-sample shards: 10.tar must come after 9.tar, not after 1.tar
    root = make_wds(tmp_path / "wds_toy", "test", labels, per_shard=1, extension="png", nshards_file=False)
    split = load_split("toy", {"source": "wds", "path": str(root)}, "test")
    assert [pixel(split.load_image(i))[0] for i in range(11)] == list(range(11))
    assert split.class_names == ["0", "1"]  # no classnames.txt: the labels name the classes


def test_wds_missing_split_names_dataset_and_how_to_get_it(tmp_path):
    root = make_wds(tmp_path / "wds_vtab-cifar10", "train", [0, 1], per_shard=2)
    with pytest.raises(DatasetError, match=r"dataset 'cifar10'.*test does not exist.*clip-benchmark/wds_vtab-cifar10"):
        load_split("cifar10", {"source": "wds", "path": str(root)}, "test")


def test_wds_missing_shard_is_named(tmp_path):
    root = make_wds(tmp_path / "wds_toy", "train", [0, 1, 0, 1], per_shard=2)
    (root / "train" / "1.tar").unlink()
    with pytest.raises(DatasetError, match=r"dataset 'toy'.*lacks shards \['1.tar'\]"):
        load_split("toy", {"source": "wds", "path": str(root)}, "train")


def test_wds_sample_without_label_names_the_shard(tmp_path):
    root = make_wds(tmp_path / "wds_toy", "train", [0, 1], per_shard=2)
    with tarfile.open(root / "train" / "0.tar", "a") as tar:
        add_member(tar, "s0000009.webp", image_bytes((1, 2, 3), "webp"))
    with pytest.raises(DatasetError, match=r"dataset 'toy'.*0.tar has samples without .*'/s0000009'"):
        load_split("toy", {"source": "wds", "path": str(root)}, "train")


def test_wds_unreadable_shard_is_named(tmp_path):
    root = make_wds(tmp_path / "wds_toy", "train", [0, 1], per_shard=2)
    (root / "train" / "0.tar").write_bytes(b"this is no tar file" * 40)
    with pytest.raises(DatasetError, match=r"dataset 'toy': cannot read shard .*0.tar"):
        load_split("toy", {"source": "wds", "path": str(root)}, "train")


def test_wds_label_outside_classnames_is_rejected(tmp_path):
    root = make_wds(tmp_path / "wds_toy", "train", [0, 3], per_shard=2, classnames=["a", "b"])
    with pytest.raises(DatasetError, match=r"dataset 'toy': labels span 0..3 .* 2 classes"):
        load_split("toy", {"source": "wds", "path": str(root)}, "train")


def test_wds_index_is_cached_and_remade_when_a_shard_changes(tmp_path, index_cache, monkeypatch):
    spec = {"source": "wds", "path": str(tmp_path / "wds_toy")}
    make_wds(tmp_path / "wds_toy", "train", [0, 1, 1], per_shard=2)
    first = load_split("toy", spec, "train")
    assert index_cache_dir() == index_cache and len(list(index_cache.glob("*.npy"))) == 2
    with monkeypatch.context() as patch:  # a cached index is not read from the tar again
        patch.setattr(simcon.datasets, "_index_shard", lambda *_: pytest.fail("shard read despite its cached index"))
        assert load_split("toy", spec, "train").labels.tolist() == first.labels.tolist()
    make_wds(tmp_path / "wds_toy", "train", [1, 0, 0, 0], per_shard=2)  # same shard names, new content
    assert load_split("toy", spec, "train").labels.tolist() == [1, 0, 0, 0]


def test_wds_reads_without_a_writable_cache(tmp_path, monkeypatch):
    (tmp_path / "cache-file").write_text("")
    monkeypatch.setenv("SIMCON_CACHE_DIR", str(tmp_path / "cache-file"))  # a file: no folder can be made in it
    root = make_wds(tmp_path / "wds_toy", "train", [0, 1], per_shard=2)
    assert load_split("toy", {"source": "wds", "path": str(root)}, "train").labels.tolist() == [0, 1]


def test_wds_without_samples_is_rejected(tmp_path):
    root = make_wds(tmp_path / "wds_toy", "train", [], per_shard=2)
    (root / "train" / "nshards.txt").unlink()
    with tarfile.open(root / "train" / "0.tar", "w"):
        pass
    with pytest.raises(DatasetError, match="dataset 'toy': the shards of .*train hold no samples"):
        load_split("toy", {"source": "wds", "path": str(root)}, "train")


# --------------------------------------------------------------------------- torchvision


def test_torchvision_image_folder_dataset_from_local_root(tmp_path):
    """torchvision's Country211 (an ImageFolder: labels in `targets`) from its on-disk layout."""
    for split, counts in {"train": {"AD": 3, "AE": 2}, "test": {"AD": 1, "AE": 2}}.items():
        for code, count in counts.items():
            folder = tmp_path / "country211" / split / code
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (6, 5), colour(i, len(code))).save(folder / f"{i}.jpg")
    spec = {"source": "torchvision", "name": "Country211", "path": str(tmp_path)}
    check_dataset("c211", spec)
    train, test = load_split("c211", spec, "train"), load_split("c211", spec, "test")
    assert train.labels.tolist() == [0, 0, 0, 1, 1] and test.labels.tolist() == [0, 1, 1]
    assert train.class_names == ["AD", "AE"]
    assert train.load_image(4).size == (6, 5) and train.load_image(4).mode == "RGB"


def test_torchvision_dataset_with_label_list_and_split_files(tmp_path):
    """torchvision's DTD (labels in `_labels`, splits from label files); split_kwargs picks the partition."""
    base = tmp_path / "dtd" / "dtd"
    files = {"banded": ["b0.jpg", "b1.jpg"], "woven": ["w0.jpg", "w1.jpg", "w2.jpg"]}
    for texture, names in files.items():
        (base / "images" / texture).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (6, 5), (9, 9, 9)).save(base / "images" / texture / name)
    (base / "labels").mkdir()
    (base / "labels" / "train2.txt").write_text("banded/b0.jpg\nwoven/w1.jpg\nwoven/w2.jpg\n")
    (base / "labels" / "test2.txt").write_text("banded/b1.jpg\nwoven/w0.jpg\n")
    spec = {
        "source": "torchvision",
        "name": "DTD",
        "path": str(tmp_path),
        "split_kwargs": {"train": {"split": "train", "partition": 2}, "test": {"split": "test", "partition": 2}},
    }
    assert load_split("dtd", spec, "train").labels.tolist() == [0, 1, 1]
    test = load_split("dtd", spec, "test")
    assert test.labels.tolist() == [0, 1] and test.class_names == ["banded", "woven"]


def test_torchvision_missing_files_name_dataset_and_download_call(tmp_path):
    spec = {"source": "torchvision", "name": "CIFAR10", "path": str(tmp_path / "cifar")}
    expected = (
        r"dataset 'cifar10': torchvision CIFAR10\(train=True, download=False\) cannot load from .*cifar"
        r".*torchvision.datasets.CIFAR10\('.*cifar', train=True, download=True\)"
    )
    with pytest.raises(DatasetError, match=expected):
        load_split("cifar10", spec, "train")


def test_torchvision_dataset_without_download_says_where_its_files_go(tmp_path):
    spec = {"source": "torchvision", "name": "ImageNet", "path": str(tmp_path)}
    with pytest.raises(
        DatasetError,
        match=r"dataset 'in1k': torchvision ImageNet\(split='val'\) cannot load from "
        r".*torchvision's ImageNet downloads nothing: put its files under",
    ):
        load_split("in1k", spec, "test")


def test_unknown_torchvision_dataset_is_rejected_before_any_job():
    with pytest.raises(DatasetError, match="dataset 'x': torchvision.datasets has no dataset named 'CIFAR11'"):
        check_dataset("x", {"source": "torchvision", "name": "CIFAR11", "path": "/nowhere"})


# --------------------------------------------------------------------------- k images per class


def test_per_class_subset_takes_k_of_each_class_nested_or_drawn_for_each_k():
    labels = np.repeat([0, 1, 2], [30, 12, 3])
    for nested in (True, False):
        five = per_class_subset(labels, 5, nested=nested)
        assert np.bincount(labels[five]).tolist() == [5, 5, 3]  # a class smaller than k is kept whole
        assert np.all(np.diff(five) > 0)
        assert np.array_equal(five, per_class_subset(labels, 5, nested=nested))
    assert set(per_class_subset(labels, 5)) <= set(per_class_subset(labels, 10))  # k=5 images among the k=10 ones
    drawn = [set(per_class_subset(labels, k, nested=False)) for k in (5, 10)]
    assert not drawn[0] <= drawn[1]  # each k its own draw: the authors' App. C subsets


def test_max_samples_subset_of_imagenet_is_its_k10_subset():
    """10,000 of 1000 balanced classes: the stratified subset is the nested k = 10 subset of Appendix C."""
    labels = np.repeat(np.arange(1000), 13)
    assert np.array_equal(stratified_subset(labels, 10000), per_class_subset(labels, 10))


def test_samples_per_class_cuts_the_train_split_only(tmp_path):
    labels = [0] * 6 + [1] * 4 + [2] * 5
    root = make_wds(tmp_path / "wds_toy", "train", labels, per_shard=4)
    make_wds(root, "test", labels, per_shard=4)
    for nested in (False, True):
        spec = {"source": "wds", "path": str(root), "samples_per_class": 2, "nested": nested}
        train = load_split("toy", spec, "train")
        assert np.bincount(train.labels).tolist() == [2, 2, 2]
        chosen = per_class_subset(np.asarray(labels), 2, nested=nested)
        assert [pixel(train.load_image(i)) for i in range(6)] == [colour(int(i), labels[i]) for i in chosen]
    assert len(load_split("toy", spec, "test")) == len(labels)


# --------------------------------------------------------------------------- BREEDS

ROOT, LIVING, NONLIVING = "n00001740", "n00004258", "n00021939"


def leaf_ids(start: int, count: int) -> list[str]:
    return [f"n0{start + i:07d}" for i in range(count)]


@pytest.fixture
def hierarchy(tmp_path):
    """A small living/non-living hierarchy with three candidate superclasses at level 5 under 'living thing':

    - n03000001 'felines': 4 leaves directly below it,
    - n03000002 'canines': one child (n03100000) with 5 leaves below it,
    - n03000003 'bears': 3 leaves, too few for living17's 4 subclasses,
    - n03000004 'fish': 4 leaves; a child of a level-4 node and of a level-2 node (longest path: level 5),
    and one level-5 node under 'non-living thing' (n03000009, 4 leaves), outside the living17 task.
    Leaves are the dataset's classes, indexed in wnid order like ImageNet.
    """
    felines, canines, bears, fish, tools = (
        leaf_ids(5000000, 4),
        leaf_ids(6000000, 5),
        leaf_ids(7000000, 3),
        leaf_ids(8000000, 4),
        leaf_ids(9000000, 4),
    )
    edges = [
        (ROOT, LIVING),
        (ROOT, NONLIVING),
        (LIVING, "n02000002"),
        ("n02000002", "n02000003"),
        ("n02000003", "n02000004"),
        (NONLIVING, "n02100002"),
        ("n02100002", "n02100003"),
        ("n02100003", "n02100004"),
    ]
    edges += [("n02000004", s) for s in ("n03000001", "n03000002", "n03000003", "n03000004")]
    edges += [("n02000002", "n03000004"), ("n02100004", "n03000009"), ("n03000002", "n03100000")]
    edges += [("n03000001", w) for w in felines] + [("n03100000", w) for w in canines]
    edges += [("n03000003", w) for w in bears] + [("n03000004", w) for w in fish] + [("n03000009", w) for w in tools]
    edges += [("n02000004", "n04999999")]  # a node without any leaf below it: pruned
    names = {
        "n03000001": "felines",
        "n03000002": "canines",
        "n03000003": "bears",
        "n03000004": "fish",
        "n03000009": "tools",
    }
    leaves = sorted(felines + canines + bears + fish + tools)
    folder = write_hierarchy(tmp_path / "breeds", edges, leaves, names)
    return folder, {"felines": felines, "canines": canines, "bears": bears, "fish": fish, "tools": tools}, leaves


def test_breeds_task_picks_superclasses_at_level_below_ancestor(hierarchy):
    folder, members, _ = hierarchy
    task = breeds_task(folder, "living17")
    assert task.superclass_names == ["felines", "canines", "fish"]  # wnid order; bears too small, tools not living
    for name, source, target in zip(task.superclass_names, task.source, task.target):
        assert len(source) == len(target) == 2
        assert not set(source) & set(target)
        assert set(source) | set(target) <= set(members[name])


def test_breeds_draw_is_the_published_one(hierarchy):
    """robustness.tools.breeds_helpers, split='rand': RandomState(2), one choice of the sorted subclass pool of
    each superclass in wnid order, first half source, second half target."""
    folder, members, _ = hierarchy
    rng = np.random.RandomState(2)
    expected = [list(rng.choice(sorted(members[name]), 4, replace=False)) for name in ("felines", "canines", "fish")]
    task = breeds_task(folder, "living17")
    assert [s + t for s, t in zip(task.source, task.target)] == expected


def test_breeds_splits_use_source_for_train_and_target_for_test(hierarchy, tmp_path):
    folder, members, leaves = hierarchy
    task = breeds_task(folder, "living17")
    imagenet = tmp_path / "imagenet"
    for split in ("train", "test"):
        for wnid in leaves:
            (imagenet / split / wnid).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (6, 5), (leaves.index(wnid), i, 0)).save(imagenet / split / wnid / f"{i}.png")
    spec = {
        "source": "breeds",
        "task": "living17",
        "hierarchy": str(folder),
        "imagenet": {"source": "image_folder", "path": str(imagenet)},
    }
    check_dataset("living17", spec)
    for split, domain in (("train", task.source), ("test", task.target)):
        data = load_split("living17", spec, split)
        assert data.class_names == ["felines", "canines", "fish"]
        assert np.bincount(data.labels).tolist() == [4, 4, 4]  # 2 subclasses x 2 images per superclass
        for i in range(len(data)):
            wnid = leaves[pixel(data.load_image(i))[0]]
            assert wnid in domain[data.labels[i]]


def test_breeds_maps_imagenet_class_indices_when_names_are_not_wnids(hierarchy, tmp_path):
    """CLIP-benchmark's wds_imagenet1k labels images by ImageNet index and names classes in words."""
    folder, _, leaves = hierarchy
    task = breeds_task(folder, "living17")
    labels = [i for i in range(len(leaves)) for _ in range(2)]
    names = [f"c{i}" for i in range(len(leaves))]
    root = make_wds(tmp_path / "wds_imagenet1k", "train", labels, per_shard=7, classnames=names)
    spec = {
        "source": "breeds",
        "task": "living17",
        "hierarchy": str(folder),
        "imagenet": {"source": "wds", "path": str(root)},
    }
    train = load_split("living17", spec, "train")
    assert len(train) == 12
    for i in range(len(train)):
        index = pixel(train.load_image(i))[0]
        assert leaves[labels[index]] in task.source[train.labels[i]]


def test_breeds_missing_hierarchy_says_where_to_download(tmp_path):
    spec = {
        "source": "breeds",
        "task": "entity30",
        "hierarchy": str(tmp_path / "none"),
        "imagenet": {"source": "wds", "path": str(tmp_path)},
    }
    with pytest.raises(
        DatasetError,
        match=r"dataset 'entity30': BREEDS hierarchy files .*dataset_class_info.json.*"
        r"github.com/MadryLab/BREEDS-Benchmarks",
    ):
        load_split("entity30", spec, "train")
    assert len(BREEDS_FILES) == 3


def test_unknown_breeds_task_is_rejected():
    with pytest.raises(DatasetError, match="dataset 'e': unknown BREEDS task 'entity31'"):
        check_dataset(
            "e", {"source": "breeds", "task": "entity31", "hierarchy": "h", "imagenet": {"source": "wds", "path": "p"}}
        )


# --------------------------------------------------------------------------- data root


def test_relative_paths_resolve_under_the_data_root():
    spec = {"source": "breeds", "hierarchy": "breeds", "imagenet": {"source": "wds", "path": "wds/wds_imagenet1k"}}
    resolved = resolve_paths(spec, "/data")
    assert resolved["hierarchy"] == "/data/breeds" and resolved["imagenet"]["path"] == "/data/wds/wds_imagenet1k"
    assert resolve_paths({"source": "wds", "path": "/abs/wds_x"}, "/data")["path"] == "/abs/wds_x"
    assert spec["hierarchy"] == "breeds"  # the config itself is left as it was


def test_default_data_root_leaves_relative_paths_as_they_were():
    assert resolve_paths({"source": "image_folder", "path": "photos/mine"}, ".")["path"] == "photos/mine"
