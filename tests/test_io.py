import numpy as np
import pytest

from simcon.io import atomic_directory, atomic_path, write_json, write_npz


def test_failed_write_leaves_previous_file_untouched(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("interrupted")
    assert target.read_text().strip().endswith("}") and '"ok": 1' in target.read_text()
    assert list(tmp_path.iterdir()) == [target]


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "sub" / "x.npz"):
            raise RuntimeError("interrupted")
    assert list((tmp_path / "sub").iterdir()) == []


def test_npz_round_trip(tmp_path):
    write_npz(tmp_path / "f.npz", train=np.arange(6, dtype=np.float32).reshape(2, 3))
    with np.load(tmp_path / "f.npz") as arrays:
        assert arrays["train"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_outputs_are_readable_by_others(tmp_path):
    write_json(tmp_path / "x.json", {})
    assert (tmp_path / "x.json").stat().st_mode & 0o044 == 0o044


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "layers"
    with atomic_directory(target) as tmp:
        (tmp / "a.npy").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "b.npy").write_text("half")
            raise RuntimeError("interrupted")
    assert [path.name for path in tmp_path.iterdir()] == ["layers"] and (target / "a.npy").read_text() == "first"
    with atomic_directory(target) as tmp:
        (tmp / "b.npy").write_text("second")
    assert [path.name for path in target.iterdir()] == ["b.npy"]
    assert target.stat().st_mode & 0o055 == 0o055  # readable and listable by others
