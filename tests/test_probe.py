"""Tests of the linear-probe protocol (simcon.probe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simcon.probe import (
    ProbeSettings,
    coarse_to_fine_search,
    fit_linear,
    fit_linear_reference,
    train_probe,
)


def clusters(
    n: int, d: int, n_classes: int, noise: float, seed: int = 0, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class clusters: features (n, d) float32 and labels (n,), every class present."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    index = np.arange(n) % n_classes
    rng.shuffle(index)
    x = (centres[index] + noise * rng.normal(size=(n, d))).astype(np.float32)
    ids = np.arange(n_classes) if labels is None else labels
    return x, ids[index]


def split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def no_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("training started")


# --- protocol end to end -------------------------------------------------------------


def test_separable_data_is_learned() -> None:
    result = train_probe(*split(*clusters(600, 16, 10, noise=0.05), 400), seed=0)
    assert result["top1"] >= 0.99
    assert result["balanced_accuracy"] >= 0.99
    assert result["top5"] == 1.0


def test_minibatches_smaller_than_the_splits() -> None:
    settings = ProbeSettings(batch_size=50, epochs=5)
    result = train_probe(*split(*clusters(600, 16, 10, noise=0.05), 400), seed=0, settings=settings)
    assert result["top1"] >= 0.99
    assert result["settings"]["batch_size"] == 50


def test_shuffled_labels_give_chance() -> None:
    x, y = clusters(1000, 16, 10, noise=0.05)
    y = np.random.default_rng(1).permutation(y)
    result = train_probe(*split(x, y, 700), seed=0)
    assert 0.0 <= result["top1"] <= 0.2  # chance is 0.1 on 300 test samples
    assert result["balanced_accuracy"] <= 0.2


def test_result_keys_types_and_json() -> None:
    x, y = clusters(500, 12, 7, noise=1.5, labels=np.array([3, 9, 10, 42, 100, 7, 5]))
    result = train_probe(*split(x, y, 350), seed=np.int64(2), name="toy on toy")
    assert json.loads(json.dumps(result)) == result
    for key in ("top1", "top5", "balanced_accuracy", "validation_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert 0.2 < result["top1"] < 1.0  # noisy enough to be neither chance nor perfect
    assert result["learning_rate"] in ProbeSettings().learning_rates
    assert result["weight_decay"] in ProbeSettings().weight_decay_grid()
    assert (result["n_train"], result["n_test"], result["n_classes"], result["seed"]) == (350, 150, 7, 2)
    chosen = {"learning_rate": result["learning_rate"], "weight_decay": result["weight_decay"]}
    assert {**chosen, "accuracy": result["validation_accuracy"]} in result["validation"]
    assert max(v["accuracy"] for v in result["validation"]) == result["validation_accuracy"]
    # coarse-to-fine: at most 7 coarse + 2 per refinement, per learning rate
    assert len(result["validation"]) <= 4 * (7 + 4 * 2)


def test_top5_only_with_more_than_five_classes() -> None:
    result = train_probe(*split(*clusters(300, 8, 5, noise=1.0, labels=np.array([10, 20, 30, 40, 50])), 200), seed=0)
    assert result["top5"] is None
    assert result["n_classes"] == 5


def test_same_seed_same_result_bitwise() -> None:
    data = split(*clusters(500, 12, 6, noise=1.5), 350)
    assert train_probe(*data, seed=3) == train_probe(*data, seed=3)


def test_seed_changes_split() -> None:
    data = split(*clusters(500, 12, 6, noise=1.5), 350)
    assert train_probe(*data, seed=0)["validation"] != train_probe(*data, seed=1)["validation"]


def test_progress_bars_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    train_probe(*split(*clusters(200, 8, 3, noise=1.0), 150), seed=0, name="bar test", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bar test" in captured.err


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    data = split(*clusters(500, 12, 6, noise=1.5), 350)
    cpu, cuda = train_probe(*data, seed=0), train_probe(*data, seed=0, device="cuda")
    assert (cuda["learning_rate"], cuda["weight_decay"]) == (cpu["learning_rate"], cpu["weight_decay"])
    assert abs(cuda["top1"] - cpu["top1"]) <= 0.01


# --- batched training == one candidate at a time --------------------------------------


def test_batched_fit_matches_torch_adamw_one_at_a_time() -> None:
    x, y = clusters(700, 24, 6, noise=2.0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    lrs = [1e-1, 1e-1, 1e-2, 1e-3, 1e-4]
    wds = [1e-6, 10.0, 1e-2, 1.0, 1e2]
    args = dict(seed=4, epochs=5, batch_size=128)  # 6 minibatches an epoch, the last one short
    weights, biases = fit_linear(x, y, 6, lrs, wds, **args)
    ref_weights, ref_biases = fit_linear_reference(x, y, 6, lrs, wds, **args)
    assert weights.shape == ref_weights.shape == (5, 24, 6)
    assert biases.shape == ref_biases.shape == (5, 6)
    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-5)
    torch.testing.assert_close(biases, ref_biases, rtol=0, atol=1e-5)
    # the candidates did train, and differently
    assert (weights[0] - weights[1]).abs().max() > 1e-2


def test_batched_protocol_matches_reference_protocol() -> None:
    data = split(*clusters(600, 16, 8, noise=2.0), 400)
    batched = train_probe(*data, seed=1)
    reference = train_probe(*data, seed=1, fit=fit_linear_reference)
    assert (batched["learning_rate"], batched["weight_decay"]) == (reference["learning_rate"], reference["weight_decay"])
    assert batched["validation"] == reference["validation"]
    assert batched["top1"] == reference["top1"]


# --- bfloat16 search -------------------------------------------------------------------


BF16 = ProbeSettings(search_precision="bfloat16")


def test_bfloat16_fit_stays_close_to_float32() -> None:
    x, y = clusters(700, 24, 6, noise=2.0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    lrs, wds = [1e-1, 1e-2, 1e-3], [1e-6, 1e-2, 1.0]
    args = dict(seed=4, epochs=5, batch_size=128)
    weights, biases = fit_linear(x, y, 6, lrs, wds, **args)
    low_weights, low_biases = fit_linear(x, y, 6, lrs, wds, precision="bfloat16", **args)
    assert low_weights.dtype == low_biases.dtype == torch.float32  # master weights stay float32
    assert not torch.equal(low_weights, weights)  # the products did run in bfloat16
    torch.testing.assert_close(low_weights, weights, rtol=0, atol=2e-2)
    torch.testing.assert_close(low_biases, biases, rtol=0, atol=2e-2)


def test_bfloat16_search_chooses_as_float32() -> None:
    # structured: uneven class overlap through a shared low-rank component; interior optimum (grid step 78)
    rng = np.random.default_rng(0)
    n, d, n_classes = 1500, 64, 10
    centres = rng.normal(size=(n_classes, d)) + rng.normal(size=(n_classes, 4)) @ rng.normal(size=(4, d))
    labels = np.arange(n) % n_classes
    x = (centres[labels] + 4.0 * rng.normal(size=(n, d))).astype(np.float32)
    data = split(x, labels, 1000)
    grid = list(BF16.weight_decay_grid())
    full = train_probe(*data, seed=0)
    low = train_probe(*data, seed=0, settings=BF16)
    assert low["learning_rate"] == full["learning_rate"]
    assert abs(grid.index(low["weight_decay"]) - grid.index(full["weight_decay"])) <= 1
    assert abs(low["top1"] - full["top1"]) <= 0.005
    assert 0.3 < full["top1"] < 0.95  # neither trivial nor chance
    assert (low["search_precision"], full["search_precision"]) == ("bfloat16", "float32")
    assert low["settings"]["search_precision"] == "bfloat16"


def test_bfloat16_search_retrains_in_float32() -> None:
    precisions: list[str] = []

    def spy(*args: object, precision: str, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        precisions.append(precision)
        return fit_linear(*args, precision=precision, **kwargs)  # type: ignore[arg-type]

    train_probe(*split(*clusters(300, 8, 4, noise=1.0), 200), seed=0, settings=BF16, fit=spy)
    assert set(precisions[:-1]) == {"bfloat16"}
    assert precisions[-1] == "float32"


def test_bfloat16_same_seed_same_result_bitwise() -> None:
    data = split(*clusters(500, 12, 6, noise=1.5), 350)
    assert train_probe(*data, seed=3, settings=BF16) == train_probe(*data, seed=3, settings=BF16)


def test_bfloat16_reference_trainer_runs_under_autocast() -> None:
    x, y = clusters(300, 16, 4, noise=1.0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    args = dict(seed=0, epochs=3, batch_size=64)
    weights, _ = fit_linear_reference(x, y, 4, [1e-2], [1e-3], **args)
    low_weights, low_biases = fit_linear_reference(x, y, 4, [1e-2], [1e-3], precision="bfloat16", **args)
    assert low_weights.dtype == low_biases.dtype == torch.float32
    torch.testing.assert_close(low_weights, weights, rtol=0, atol=2e-2)


@pytest.mark.parametrize("precision", ["float16", "bf16", "Float32", None, 32])
def test_bad_precision(precision: object) -> None:
    with pytest.raises(ValueError, match="search_precision must be one of"):
        ProbeSettings(search_precision=precision)  # type: ignore[arg-type]
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    for fit in (fit_linear, fit_linear_reference):
        with pytest.raises(ValueError, match="precision must be one of"):
            fit(x, y, 2, [0.1], [0.1], seed=0, epochs=1, batch_size=2, precision=precision)  # type: ignore[arg-type]


def test_default_search_precision_is_float32() -> None:
    assert ProbeSettings().search_precision == "float32"
    result = train_probe(*split(*clusters(300, 8, 4, noise=1.0), 200), seed=0)
    assert result["search_precision"] == result["settings"]["search_precision"] == "float32"


# --- coarse-to-fine search -------------------------------------------------------------


@pytest.mark.parametrize("n_points, initial_span", [(97, 8), (13, 1), (50, 4)])
def test_search_finds_optimum_of_unimodal_curves(n_points: int, initial_span: int) -> None:
    peaks = list(range(n_points))  # one curve per possible optimum
    curve = lambda c, i: -abs(i - peaks[c]) ** 1.5 + 0.1 * np.sin(c)  # noqa: E731
    calls: list[list[tuple[int, int]]] = []

    def evaluate(candidates: list[tuple[int, int]]) -> list[float]:
        calls.append(candidates)
        return [curve(c, i) for c, i in candidates]

    found, scores = coarse_to_fine_search(n_points, len(peaks), initial_span, evaluate)
    assert found == peaks
    evaluated = [pair for call in calls for pair in call]
    assert len(evaluated) == len(set(evaluated)) == len(scores)  # nothing scored twice
    per_curve = max(sum(1 for c, _ in evaluated if c == k) for k in range(n_points))
    assert per_curve < n_points  # coarse-to-fine, not exhaustive
    assert all(scores[pair] == curve(*pair) for pair in scores)


def test_search_evaluates_paper_coarse_grid_first() -> None:
    calls: list[list[tuple[int, int]]] = []

    def evaluate(candidates: list[tuple[int, int]]) -> list[float]:
        calls.append(candidates)
        return [0.0 for _ in candidates]

    coarse_to_fine_search(97, 1, 8, evaluate)
    assert calls[0] == [(0, i) for i in (0, 16, 32, 48, 64, 80, 96)]


def test_search_breaks_ties_towards_lower_index() -> None:
    found, _ = coarse_to_fine_search(97, 1, 8, lambda candidates: [1.0 if i >= 40 else 0.0 for _, i in candidates])
    assert found == [40]


def test_settings_grid_and_span() -> None:
    settings = ProbeSettings()
    grid = settings.weight_decay_grid()
    assert len(grid) == 97
    assert grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e2)
    np.testing.assert_allclose(np.diff(np.log10(grid)), 8 / 96)
    assert settings.initial_span() == 8
    assert ProbeSettings(weight_decay_steps=10).initial_span() == 1


# --- bad input -------------------------------------------------------------------------


NAME = "efficientnet_lite0 on digits"


def good_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return split(*clusters(200, 8, 4, noise=1.0, labels=np.array([0, 1, 2, 7])), 150)


def bad_call(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        train_probe(train_x, train_y, test_x, test_y, seed=0, name=NAME, fit=no_training)
    assert NAME in str(error.value)


def test_good_data_passes_validation() -> None:
    with pytest.raises(AssertionError, match="training started"):
        train_probe(*good_data(), seed=0, name=NAME, fit=no_training)


def test_test_class_absent_from_train() -> None:
    train_x, train_y, test_x, test_y = good_data()
    test_y = test_y.copy()
    test_y[3] = 55
    bad_call(train_x, train_y, test_x, test_y, match=r"test class\(es\) \[55\] absent")


def test_one_class_train_split() -> None:
    train_x, train_y, test_x, test_y = good_data()
    bad_call(train_x, np.full_like(train_y, 7), test_x, np.full_like(test_y, 7), match="only class 7")


def test_class_with_one_sample() -> None:
    train_x, train_y, test_x, test_y = good_data()
    train_y = train_y.copy()
    train_y[5] = 13
    bad_call(train_x, train_y, test_x, test_y, match=r"class\(es\) \[13\] have a single sample")


def test_validation_split_too_small_for_all_classes() -> None:
    x, y = clusters(40, 8, 20, noise=1.0)  # 2 per class: 8 validation samples for 20 classes
    bad_call(x, y, x, y, match="no stratified validation split")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["train", "test"])
def test_non_finite_features(bad: float, where: str) -> None:
    train_x, train_y, test_x, test_y = good_data()
    x, y = (train_x, train_y) if where == "train" else (test_x, test_y)
    x = x.copy()
    x[4, 2] = bad
    data = (x, train_y, test_x, test_y) if where == "train" else (train_x, train_y, x, test_y)
    bad_call(*data, match=rf"{where} features hold NaN or Inf in 1 rows, of class\(es\) \[{y[4]}\]")


def test_mismatched_lengths() -> None:
    train_x, train_y, test_x, test_y = good_data()
    bad_call(train_x, train_y[:-1], test_x, test_y, match="train split has 150 feature rows but 149 labels")
    bad_call(train_x, train_y, test_x[:-2], test_y, match="test split has 48 feature rows but 50 labels")


def test_mismatched_feature_dimensions() -> None:
    train_x, train_y, test_x, test_y = good_data()
    bad_call(train_x, train_y, test_x[:, :5], test_y, match="8 dimensions, test features 5")


def test_non_integer_labels() -> None:
    train_x, train_y, test_x, test_y = good_data()
    bad_call(train_x, train_y.astype(float), test_x, test_y, match="integer class ids")


def test_complex_features() -> None:
    train_x, train_y, test_x, test_y = good_data()
    bad_call(train_x.astype(complex), train_y, test_x, test_y, match="real numbers")


@pytest.mark.parametrize("seed", [-1, 1.5, True, 2**32])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        train_probe(*good_data(), seed=seed, name=NAME, fit=no_training)  # type: ignore[arg-type]


# --- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"val_fraction": -0.2},
        {"learning_rates": ()},
        {"learning_rates": (1e-2, 0.0)},
        {"learning_rates": (float("nan"),)},
        {"weight_decay_min": 0.0},
        {"weight_decay_min": 1.0, "weight_decay_max": 1.0},
        {"weight_decay_max": float("inf")},
        {"weight_decay_steps": 0},
        {"epochs": 0},
        {"epochs": 2.5},
        {"batch_size": 0},
        {"batch_size": True},
    ],
)
def test_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ProbeSettings(**kwargs)


def test_settings_accept_a_list_of_learning_rates() -> None:
    settings = ProbeSettings(learning_rates=[1e-2, 1e-3])  # type: ignore[arg-type]
    assert settings.learning_rates == (1e-2, 1e-3)
    hash(settings)
