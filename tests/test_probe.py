"""Tests of the linear-probe protocol (simcon.probe)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, job_counts, snakemake
from simcon.probe import (
    ProbeSettings,
    SearchResult,
    available_memory,
    balanced_accuracy,
    candidate_bytes,
    fit_linear,
    fit_linear_reference,
    hyperparameter_search,
    stratified_split,
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
    # coarse-to-fine: 8 decade values + at most 2 per refinement, per learning rate
    assert 4 * 8 < len(result["validation"]) <= 4 * (8 + 3 * 2)


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
    assert (batched["learning_rate"], batched["weight_decay"]) == (
        reference["learning_rate"],
        reference["weight_decay"],
    )
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
    # structured: uneven class overlap through a shared low-rank component; interior optimum (grid step 60 of 63)
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


# --- weight-decay search ----------------------------------------------------------------


def run_search(settings: ProbeSettings, curves: list[Callable[[int], float]]) -> tuple[SearchResult, list[list[int]]]:
    """The search on known validation curves (one per learning rate), and the grid indices of each round."""
    result = hyperparameter_search(settings, len(curves), lambda todo: [curves[c](i) for c, i in todo])
    return result, [[i for _, i in call] for call in result.rounds]


def test_code_grid_is_the_codes_64_values() -> None:
    settings = ProbeSettings()
    assert settings.search == "code"
    grid = settings.weight_decay_grid()
    assert grid.tolist() == np.logspace(-6, 1, 64).tolist()  # bitwise, as regularization_tuner.py builds it
    assert grid[settings.scan()].tolist() == np.logspace(-6, 1, 8).tolist()  # the decade values
    assert settings.scan() == [0, 9, 18, 27, 36, 45, 54, 63]
    assert settings.spans() == [4, 2, 1]


def test_code_search_visits_the_codes_grid_in_the_codes_order() -> None:
    # scan: 27 and 36 tie, the later wins; span 4: 32 ties the peak, so the peak stays; span 2: 38 beats it;
    # span 1: 37 and 39 tie above it, the later wins
    curve = {27: 0.5, 36: 0.5, 32: 0.5, 40: 0.3, 34: 0.4, 38: 0.6, 37: 0.7, 39: 0.7}
    result, rounds = run_search(ProbeSettings(), [lambda i: curve.get(i, 0.1)])
    assert rounds == [[0, 9, 18, 27, 36, 45, 54, 63], [32, 40], [34, 38], [37, 39]]
    assert (result.learning_rate, result.weight_decay, result.peaks) == (0, 39, [39])
    assert ProbeSettings().weight_decay_grid()[39] == np.logspace(-6, 1, 64)[39]


def test_code_search_at_the_grid_edge_tests_one_side_only() -> None:
    result, rounds = run_search(ProbeSettings(), [lambda i: 1.0 - i / 100])
    assert rounds == [[0, 9, 18, 27, 36, 45, 54, 63], [4], [2], [1]]
    assert result.weight_decay == 0
    result, rounds = run_search(ProbeSettings(), [lambda i: 0.0])  # flat: the last decade value, never moved
    assert rounds == [[0, 9, 18, 27, 36, 45, 54, 63], [59], [61], [62]]
    assert result.weight_decay == 63


def test_code_search_refinement_moves_only_on_a_strict_gain() -> None:
    curve = {36: 0.5, 32: 0.5, 40: 0.5, 34: 0.5, 38: 0.5, 35: 0.5, 37: 0.5}
    result, rounds = run_search(ProbeSettings(), [lambda i: curve.get(i, 0.0)])
    assert rounds == [[0, 9, 18, 27, 36, 45, 54, 63], [32, 40], [34, 38], [35, 37]]
    assert result.weight_decay == 36


def test_search_takes_the_first_of_equally_good_learning_rates() -> None:
    peak_at = lambda p, top: lambda i: top - abs(i - p) / 100  # noqa: E731
    for search in ("code", "text"):
        settings = ProbeSettings(search=search)
        result, _ = run_search(settings, [peak_at(20, 0.5), peak_at(40, 0.9), peak_at(50, 0.9)])
        assert (result.learning_rate, result.weight_decay, result.peaks) == (1, 40, [20, 40, 50])


def test_learning_rates_advance_in_lockstep_one_call_a_round() -> None:
    result, _ = run_search(ProbeSettings(), [lambda i: -abs(i - 10), lambda i: -abs(i - 50)])
    assert len(result.rounds) == 4
    assert result.rounds[0] == [(c, i) for c in (0, 1) for i in (0, 9, 18, 27, 36, 45, 54, 63)]
    assert result.peaks == [10, 50]


TEXT = ProbeSettings(search="text")


@pytest.mark.parametrize("search, steps", [("text", 96), ("text", 12), ("text", 48), ("code", 63), ("code", 21)])
def test_search_finds_optimum_of_unimodal_curves(search: str, steps: int) -> None:
    settings = ProbeSettings(search=search, weight_decay_steps=steps)
    n_points = steps + 1
    curves = [(lambda i, p=p: -(abs(i - p) ** 1.5) + 0.1 * np.sin(p)) for p in range(n_points)]
    result, _ = run_search(settings, curves)
    assert result.peaks == list(range(n_points))
    evaluated = [pair for call in result.rounds for pair in call]
    assert len(evaluated) == len(set(evaluated)) == len(result.scores)  # nothing scored twice
    assert max(sum(1 for c, _ in evaluated if c == k) for k in range(n_points)) < n_points  # not exhaustive


def test_text_search_scans_the_papers_coarse_grid_first() -> None:
    assert (TEXT.weight_decay_min, TEXT.weight_decay_max, TEXT.weight_decay_steps) == (1e-6, 1e2, 96)
    assert TEXT.scan() == [0, 16, 32, 48, 64, 80, 96]
    assert TEXT.spans() == [8, 4, 2, 1]
    _, rounds = run_search(TEXT, [lambda i: 0.0])
    assert rounds[0] == [0, 16, 32, 48, 64, 80, 96]


def test_text_search_breaks_ties_towards_lower_index() -> None:
    result, _ = run_search(TEXT, [lambda i: 1.0 if i >= 40 else 0.0])
    assert result.weight_decay == 40


def test_settings_grid_and_span() -> None:
    grid = TEXT.weight_decay_grid()
    assert len(grid) == 97
    assert grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e2)
    np.testing.assert_allclose(np.diff(np.log10(grid)), 8 / 96)
    assert ProbeSettings(search="text", weight_decay_steps=10).spans() == [1]
    assert ProbeSettings(weight_decay_steps=7).spans() == []  # the decade values only
    assert ProbeSettings(weight_decay_steps=21).spans() == [1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"search": "clip"}, "search must be one of"),
        ({"weight_decay_max": 50.0}, "powers of ten"),
        ({"weight_decay_min": 3e-6}, "powers of ten"),
        ({"weight_decay_steps": 64}, "a multiple of the 7 decades"),
    ],
)
def test_bad_search_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProbeSettings(**kwargs)


# --- features on the device, candidates in chunks --------------------------------------


def test_fit_on_rows_equals_fit_on_the_rows_copied() -> None:
    x, y = clusters(500, 12, 5, noise=2.0)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    rows = torch.from_numpy(np.random.default_rng(0).permutation(500)[:320])
    args = dict(seed=2, epochs=3, batch_size=64)
    for fit in (fit_linear, fit_linear_reference):
        indexed = fit(x, y, 5, [1e-2, 1e-1], [1e-3, 1.0], rows=rows, **args)
        copied = fit(x[rows], y[rows], 5, [1e-2, 1e-1], [1e-3, 1.0], **args)
        for a, b in zip(indexed, copied):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_small_memory_budget_trains_in_chunks_with_the_same_choice() -> None:
    data = split(*clusters(600, 16, 8, noise=2.0), 400)
    per_candidate = candidate_bytes(16, 8, batch_size=1024, steps=20)
    sizes: list[int] = []

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        sizes.append(len(args[3]))  # type: ignore[arg-type]
        return fit_linear(*args, **kwargs)  # type: ignore[arg-type]

    whole = train_probe(*data, seed=1, fit=spy)
    assert sizes[0] == 32  # the scan: 4 learning rates x 8 decade values in one fit
    sizes.clear()
    chunked = train_probe(*data, seed=1, fit=spy, memory_budget=3 * per_candidate + 7)
    assert max(sizes) == 3 and sizes[:11] == [3] * 10 + [2]  # the scan in 11 chunks
    assert chunked == whole


def test_memory_budget_below_one_candidate_is_an_error() -> None:
    per_candidate = candidate_bytes(8, 4, batch_size=1024, steps=20)
    with pytest.raises(MemoryError, match=f"{NAME}: one probe candidate needs"):
        train_probe(*good_data(), seed=0, name=NAME, fit=no_training, memory_budget=per_candidate - 1)


def test_available_memory_is_positive_on_the_cpu() -> None:
    assert available_memory(torch.device("cpu")) > 2**20


def test_memory_mapped_features_give_the_same_result(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = split(*clusters(300, 8, 4, noise=1.0), 200)
    np.save(tmp_path / "train.npy", train_x)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert train_probe(mapped, train_y, test_x, test_y, seed=0) == train_probe(train_x, train_y, test_x, test_y, seed=0)


@pytest.mark.cuda
def test_cuda_memory_plan_covers_each_candidate() -> None:
    n, d, n_classes, batch, epochs = 20_000, 256, 100, 1024, 2
    x, y = clusters(n, d, n_classes, noise=2.0)
    x, y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

    def peak(k: int) -> int:  # bytes above the features: training k candidates, then evaluating them
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        weights, biases = fit_linear(x, y, n_classes, [1e-2] * k, [1e-3] * k, seed=0, epochs=epochs, batch_size=batch)
        for part in x.split(batch):
            part @ weights.permute(1, 0, 2).reshape(d, -1) + biases.reshape(-1)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    planned = candidate_bytes(d, n_classes, batch_size=batch, steps=epochs * math.ceil(n / batch))
    assert (peak(16) - peak(8)) / 8 <= planned
    assert peak(8) <= 8 * planned + 4 * batch * (d + 1) * 4  # and the minibatch's features


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


def random_labels(rng: np.random.Generator) -> np.ndarray:
    """Labels of 2 to 30 classes (arbitrary ids) of 2 to 60 samples each, equal class sizes now and then."""
    n_classes = int(rng.integers(2, 31))
    counts = rng.integers(2, 61, size=n_classes) if rng.random() < 0.5 else np.full(n_classes, rng.integers(2, 61))
    ids = rng.choice(np.arange(-50, 1000), size=n_classes, replace=False)
    return rng.permutation(np.repeat(ids, counts))


def test_stratified_split_equals_scikit_learns() -> None:
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    for _ in range(300):
        labels = random_labels(rng)
        fraction, seed = float(rng.uniform(0.05, 0.7)), int(rng.integers(0, 2**32))
        try:
            expected = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
        except ValueError:
            with pytest.raises(ValueError, match="cannot both hold all"):
                stratified_split(labels, fraction, seed)
            continue
        train, test = stratified_split(labels, fraction, seed)
        assert train.dtype == expected[0].dtype and test.dtype == expected[1].dtype
        assert np.array_equal(train, expected[0]) and np.array_equal(test, expected[1])


def test_balanced_accuracy_equals_scikit_learns() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(1)
    for _ in range(300):
        true = random_labels(rng)
        predicted = np.where(rng.random(len(true)) < rng.random(), true, rng.choice(np.unique(true), size=len(true)))
        if rng.random() < 0.2:  # a predicted class absent from the true labels
            predicted[0] = true.max() + 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns of the predicted class absent from the true labels
            expected = balanced_accuracy_score(true, predicted)
        assert balanced_accuracy(true, predicted) == expected


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


# --- the workflow: App. C probes nothing -------------------------------------------------


def dry_run_jobs(tmp_path: Path, *configfiles: str) -> dict[str, int]:
    """Jobs per rule of the default target's dry run with these config files (merged over the default config)."""
    configs = [str(REPO / "config" / name) for name in configfiles]
    result = snakemake(tmp_path, None, "-n", "--quiet", "rules", "--configfile", *configs, timeout=600)
    assert result.returncode == 0, result.stderr
    return job_counts(result.stdout)


@pytest.mark.slow
@pytest.mark.workflow
def test_paper_dry_run_probes_every_dataset_with_the_codes_search(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert config["probe"]["search"] == "code"
    jobs = dry_run_jobs(tmp_path, "paper.yaml")
    assert jobs["all"] == jobs["performance"] == 1
    assert jobs["probe"] == len(config["models"]) * len(config["datasets"]) * len(config["probe"]["seeds"])
    assert jobs["similarity_vs_performance"] == len(config["metrics"])


@pytest.mark.slow
@pytest.mark.workflow
def test_appendix_c_dry_run_is_a_similarity_analysis_without_probes(tmp_path: Path) -> None:
    jobs = dry_run_jobs(tmp_path, "paper.yaml", "paper-appendix-c.yaml")
    assert jobs["all"] == jobs["sample_size_per_k_datasets"] == 1
    assert jobs["similarity"] == 6 * 5
    assert not {"probe", "performance", "similarity_vs_performance"} & set(jobs)
