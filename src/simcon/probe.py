"""Linear probes on frozen features: the paper's Appendix B protocol, as its code runs it.

Per (model, dataset, seed): a stratified validation split of the train features; for each
learning rate, the weight decay that maximises validation top-1 accuracy, found by a
coarse-to-fine search on a log grid (:func:`hyperparameter_search`: the authors' code's
search by default, the paper text's as an option); a linear layer retrained on the full
train split with the best (learning rate, weight decay); top-1, top-5 and balanced accuracy
on the test split.

Training follows the paper's code: ``torch.nn.Linear`` (default initialisation, weight and
bias both decayed), ``torch.optim.AdamW`` with default betas and eps, mean cross-entropy,
a cosine learning-rate schedule without warm-up set before every step, and one minibatch
order per seed. :func:`fit_linear` trains many (learning rate, weight decay) candidates at
once and matches :func:`fit_linear_reference`, which trains them one at a time. The
features go to the device once per job; minibatches are indexed there, and the candidates
of a search round are trained in as many chunks as the device's free memory requires
(:func:`candidate_bytes`, :func:`available_memory`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from simcon.probe_settings import SEARCH_PRECISIONS, ProbeSettings, validation_split

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
PRECISIONS = {name: getattr(torch, name) for name in SEARCH_PRECISIONS}
"""Dtypes the matrix products of the hyperparameter search may run in."""
MEMORY_HEADROOM = 0.8
"""Fraction of the free memory the candidates of a round may plan to fill."""
TRANSFER_ROWS = 65_536
"""Feature rows copied to the device at a time (bounds the host-side float32 copy)."""


def _check_precision(precision: object, field: str) -> torch.dtype:
    """The torch dtype named by ``precision``; ValueError unless it is one of PRECISIONS."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{field} must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


LinearFit = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""A trainer with the signature of :func:`fit_linear`."""


@dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`hyperparameter_search`.

    ``peaks[c]`` is the grid index chosen for learning rate ``c``; ``learning_rate`` indexes the
    chosen learning rate and ``weight_decay`` its grid index; ``scores`` holds every evaluated
    (learning-rate index, grid index) and its validation accuracy; ``rounds`` the candidates of
    every call of ``evaluate``, in order.
    """

    learning_rate: int
    weight_decay: int
    peaks: list[int]
    scores: dict[tuple[int, int], float]
    rounds: list[list[tuple[int, int]]]


def hyperparameter_search(
    settings: ProbeSettings,
    n_learning_rates: int,
    evaluate: Callable[[list[tuple[int, int]]], Sequence[float]],
) -> SearchResult:
    """The (learning rate, weight decay) with the best validation score, searched as ``settings.search`` says.

    For each learning rate (a curve over the grid of ``settings.weight_decay_grid()``) the grid
    indices of ``settings.scan()`` are scored, then, for each span of ``settings.spans()``, the
    points that far to either side of the current peak (clipped to the grid):

    - ``"code"``: in the scan the last best index wins a tie; in a refinement the two
      neighbours (the peak itself left out) are compared, the later winning a tie, and the
      peak moves only when the winner scores strictly higher than it.
    - ``"text"``: the peak and its two neighbours are compared, the lower index winning a tie.

    Across learning rates the first with the highest peak score wins (the code's
    ``max_acc < acc1``). ``evaluate`` receives the (learning-rate index, grid index) pairs of a
    round not scored before, sorted, and returns their scores in that order; every learning
    rate advances in lockstep, so each call holds one round of all of them. For one learning
    rate the rounds visit the grid in the order the code's loops do.
    """
    last = settings.weight_decay_steps
    scores: dict[tuple[int, int], float] = {}
    rounds: list[list[tuple[int, int]]] = []
    curves = range(n_learning_rates)

    def score(points: list[list[int]]) -> None:
        todo = sorted({(c, i) for c in curves for i in points[c]} - scores.keys())
        if todo:
            rounds.append(todo)
            scores.update(zip(todo, evaluate(todo), strict=True))

    def best(c: int, points: list[int], later_wins: bool) -> int:
        return max(sorted(points, reverse=later_wins), key=lambda i: scores[c, i])  # max keeps the first best

    code = settings.search == "code"
    score([settings.scan()] * n_learning_rates)
    peaks = [best(c, settings.scan(), later_wins=code) for c in curves]
    for span in settings.spans():
        if code:
            sides = [sorted({max(p - span, 0), min(p + span, last)} - {p}) for p in peaks]
            score(sides)
            for c in curves:
                if sides[c] and scores[c, challenger := best(c, sides[c], later_wins=True)] > scores[c, peaks[c]]:
                    peaks[c] = challenger
        else:
            around = [sorted({max(p - span, 0), p, min(p + span, last)}) for p in peaks]
            score(around)
            peaks = [best(c, around[c], later_wins=False) for c in curves]
    chosen = max(curves, key=lambda c: scores[c, peaks[c]])
    return SearchResult(chosen, peaks[chosen], peaks, scores, rounds)


def fit_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    learning_rates: Sequence[float],
    weight_decays: Sequence[float],
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    precision: str = "float32",
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (K, d, C) and biases (K, C) of K linear probes trained together on ``x[rows]``, ``y[rows]``.

    ``rows`` (default: all) index ``x``; minibatches are drawn from them on ``x``'s device, so
    the features are never copied whole. Candidate k has learning rate
    ``learning_rates[k]`` and weight decay ``weight_decays[k]``; all share the initialisation
    and the minibatch order, and match :func:`fit_linear_reference` up to float rounding. Each
    step is one matrix product for the logits of all candidates, one for their gradients, and
    one AdamW update of all candidates (the ``torch.optim.AdamW`` formula with a learning rate
    and weight decay per candidate), so its number of operations does not grow with K.

    With ``precision="bfloat16"`` the two matrix products take bfloat16 operands (the
    features, the weights and the logit gradients rounded to bfloat16, products accumulated
    by the backend in float32); the weights, the AdamW state, the softmax and the
    cross-entropy gradient stay float32, and the weights returned are float32.
    """
    low = _check_precision(precision, "precision") != torch.float32
    k, d = len(learning_rates), x.shape[1]
    rows = torch.arange(len(x), device=x.device) if rows is None else rows.to(x.device)
    w0, b0 = _initial_parameters(d, n_classes, seed)
    params = torch.cat([w0.T, b0[:, None]], dim=1).repeat(k, 1).to(x.device)  # (K*C, d+1), nn.Linear layout
    grads, exp_avg, exp_avg_sq, denom = (torch.zeros_like(params) for _ in range(4))
    per_candidate = params.view(k, n_classes, d + 1)
    decay, step_size, bias_correction2_sqrt = _adamw_schedule(
        learning_rates, weight_decays, epochs * math.ceil(len(rows) / batch_size), x.device
    )
    for step, batch in enumerate(_minibatches(len(rows), seed, epochs, batch_size)):
        batch = rows[batch.to(x.device)]
        ones = torch.ones(len(batch), 1, dtype=x.dtype, device=x.device)
        xb = torch.cat([x[batch], ones], dim=1)  # the bias as a last feature
        target = y[batch]
        n_batch = torch.arange(len(batch), device=x.device)
        if low:
            xb = xb.to(torch.bfloat16)
            logits = (xb @ params.to(torch.bfloat16).T).float()  # softmax and its gradient in float32
            probs = torch.softmax(logits.view(len(batch), k, n_classes), dim=2)
            probs[n_batch, :, target] -= 1  # d(cross-entropy)/d(logits)
            probs = probs.view(len(batch), k * n_classes).mul_(1 / len(batch)).to(torch.bfloat16)
            grads.copy_(torch.mm(probs.T, xb))
        else:
            probs = torch.softmax((xb @ params.T).view(len(batch), k, n_classes), dim=2)
            probs[n_batch, :, target] -= 1  # d(cross-entropy)/d(logits)
            torch.mm(probs.view(len(batch), k * n_classes).T, xb / len(batch), out=grads)
        per_candidate.mul_(decay[step])
        exp_avg.lerp_(grads, 1 - ADAM_BETAS[0])
        exp_avg_sq.mul_(ADAM_BETAS[1]).addcmul_(grads, grads, value=1 - ADAM_BETAS[1])
        torch.sqrt(exp_avg_sq, out=denom).div_(bias_correction2_sqrt[step]).add_(ADAM_EPS)
        denom.view(k, n_classes, d + 1).div_(step_size[step])
        params.addcdiv_(exp_avg, denom, value=-1)
    return per_candidate[:, :, :d].transpose(1, 2), per_candidate[:, :, d]


def fit_linear_reference(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    learning_rates: Sequence[float],
    weight_decays: Sequence[float],
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    precision: str = "float32",
    rows: torch.Tensor | None = None,
    loader: Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor]], Iterable[tuple[torch.Tensor, torch.Tensor]]]
    | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`fit_linear`, one ``torch.nn.Linear`` and ``torch.optim.AdamW`` per candidate.

    ``precision="bfloat16"`` runs the forward and backward passes under ``torch.autocast``.
    ``loader(x, y, batches)`` yields the (features, labels) of each batch of indices on ``x``;
    by default the in-memory tensors are indexed.
    """
    low = _check_precision(precision, "precision") != torch.float32
    d = x.shape[1]
    rows = torch.arange(len(x)) if rows is None else rows.cpu()
    total = epochs * math.ceil(len(rows) / batch_size)
    w0, b0 = _initial_parameters(d, n_classes, seed)
    weights, biases = [], []
    for lr, wd in zip(learning_rates, weight_decays, strict=True):
        linear = torch.nn.Linear(d, n_classes, device=x.device)
        with torch.no_grad():
            linear.weight.copy_(w0.T)
            linear.bias.copy_(b0)
        optimizer = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=wd, betas=ADAM_BETAS, eps=ADAM_EPS)
        batches = [rows[batch] for batch in _minibatches(len(rows), seed, epochs, batch_size)]
        for step, (batch_x, batch_y) in enumerate((loader or _indexed)(x, y, batches)):
            optimizer.param_groups[0]["lr"] = _cosine(lr, step, total)
            optimizer.zero_grad()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=low):
                loss = torch.nn.functional.cross_entropy(linear(batch_x.to(x.device)), batch_y.to(x.device))
            loss.backward()
            optimizer.step()
        weights.append(linear.weight.detach().T)
        biases.append(linear.bias.detach())
    return torch.stack(weights), torch.stack(biases)


def candidate_bytes(d: int, n_classes: int, *, batch_size: int, steps: int, precision: str = "float32") -> int:
    """Planned device memory, in bytes, of one candidate of :func:`fit_linear` and its evaluation.

    Six float32 copies of its (C, d+1) parameters (weights, gradients, two AdamW moments,
    the update's denominator, the weights rearranged for evaluation), three float32
    (batch, C) activations (logits, softmax, the evaluation's logits), its schedule, and with
    bfloat16 half-size copies of its parameters and activations.
    """
    low = _check_precision(precision, "precision") != torch.float32
    parameters, activations = n_classes * (d + 1), batch_size * n_classes
    return 4 * (6 * parameters + 3 * activations) + 2 * (parameters + 2 * activations) * low + 8 * steps


def available_memory(device: torch.device) -> int:
    """Free memory, in bytes, of ``device``: CUDA's free memory, or the host's available memory on the CPU.

    The host's comes from /proc/meminfo (Linux) or psutil; RuntimeError where neither exists.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    try:
        import psutil
    except ImportError as error:
        raise RuntimeError("no way to read the available host memory here: give the probe a memory_budget") from error
    return int(psutil.virtual_memory().available)


def chunk_size(n_candidates: int, per_candidate: int, budget: int, label: str) -> int:
    """How many of ``n_candidates`` candidates of ``per_candidate`` bytes fit in ``budget`` bytes at once.

    MemoryError, naming ``label``, when not even one fits.
    """
    if per_candidate > budget:
        raise MemoryError(
            f"{label}: one probe candidate needs {per_candidate / 2**20:.1f} MiB, "
            f"the memory budget is {budget / 2**20:.1f} MiB"
        )
    return min(n_candidates, budget // per_candidate)


def train_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int,
    settings: ProbeSettings = ProbeSettings(),  # noqa: B008 (frozen: one immutable default)
    device: str = "cpu",
    name: str = "",
    progress: bool = False,
    fit: LinearFit = fit_linear,
    memory_budget: int | None = None,
) -> dict:
    """Test accuracy of a linear probe tuned on a validation split, as a JSON-serialisable dict.

    Features (any real arrays, memory-mapped ones included) are copied to ``device`` as float32
    once, the train split and the test split each; the validation split and the fitting part
    are index sets on them. Labels are integer class ids, the classes being those of the train
    split. ``name`` labels error messages and progress bars. ``fit`` is the candidate trainer
    (the reference one exists for tests and benchmarks); the search trainings run with
    ``precision=settings.search_precision``, the final retrain on the full train split with
    float32, as do all evaluations. The candidates of a search round are trained in chunks
    that fit ``memory_budget`` bytes (default: :data:`MEMORY_HEADROOM` of the device's free
    memory once the features are there); the chunking changes no result.

    Keys: ``top1``, ``top5`` (None with 5 classes or fewer), ``balanced_accuracy`` (fractions
    of the test split); the chosen ``learning_rate``, ``weight_decay`` and their
    ``validation_accuracy``; ``validation``, every evaluated (learning_rate, weight_decay,
    accuracy) sorted by learning rate as given, then weight decay; ``n_train``, ``n_test``,
    ``n_classes``, ``seed``, ``search_precision`` and ``settings``.

    Raises ValueError, before any training, on inconsistent shapes, non-integer labels,
    NaN or Inf features, fewer than two train classes, a test class absent from train, or a
    train class too small for the stratified validation split; MemoryError when not even one
    candidate fits the memory budget.
    """
    label = name or "linear probe"
    train_x, train_y, test_x, test_y = map(np.asarray, (train_x, train_y, test_x, test_y))
    classes, (fit_idx, val_idx) = _validate(train_x, train_y, test_x, test_y, seed=seed, settings=settings, label=label)
    n_classes, seed = len(classes), int(seed)
    dev = torch.device(device)
    x, test_features = _to_device(train_x, dev), _to_device(test_x, dev)
    y, test_target = (torch.as_tensor(np.searchsorted(classes, labels), device=dev) for labels in (train_y, test_y))
    fit_rows, val_rows = (torch.as_tensor(rows, device=dev) for rows in (fit_idx, val_idx))
    lrs, grid = settings.learning_rates, settings.weight_decay_grid()
    train_args = dict(seed=seed, epochs=settings.epochs, batch_size=settings.batch_size)
    search_precision = settings.search_precision
    budget = int(MEMORY_HEADROOM * available_memory(dev)) if memory_budget is None else memory_budget
    per_candidate = candidate_bytes(
        x.shape[1],
        n_classes,
        batch_size=settings.batch_size,
        precision=search_precision,
        steps=settings.epochs * math.ceil(len(train_y) / settings.batch_size),
    )
    rounds = 1 + len(settings.spans()) + 1  # scan, refinements, retrain
    with tqdm(total=rounds, desc=f"{label}: probe", disable=not progress) as bar:

        def evaluate(candidates: list[tuple[int, int]]) -> list[float]:
            accuracies = []
            size = chunk_size(len(candidates), per_candidate, budget, label)
            for start in range(0, len(candidates), size):
                chunk = candidates[start : start + size]
                weights, biases = fit(
                    x,
                    y,
                    n_classes,
                    [lrs[c] for c, _ in chunk],
                    [float(grid[i]) for _, i in chunk],
                    precision=search_precision,
                    rows=fit_rows,
                    **train_args,
                )
                correct = sum(
                    (_logits(x[rows], weights, biases).argmax(2) == y[rows, None]).sum(0)
                    for rows in val_rows.split(settings.batch_size)
                )
                accuracies += [int(c) / len(val_rows) for c in correct.cpu()]
            bar.update()
            return accuracies

        found = hyperparameter_search(settings, len(lrs), evaluate)
        lr, wd = lrs[found.learning_rate], float(grid[found.weight_decay])
        weights, biases = fit(x, y, n_classes, [lr], [wd], precision="float32", **train_args)
        bar.update(bar.total - bar.n)
    logits = torch.cat([_logits(part, weights, biases)[:, 0] for part in test_features.split(settings.batch_size)])
    predicted = classes[logits.argmax(1).cpu().numpy()]
    top5 = None
    if n_classes > 5:
        top5 = (logits.topk(5, dim=1).indices == test_target[:, None]).any(1).sum().item() / len(test_y)
    return {
        "top1": float(np.mean(predicted == test_y)),
        "top5": top5,
        "balanced_accuracy": balanced_accuracy(test_y, predicted),
        "learning_rate": float(lr),
        "weight_decay": wd,
        "validation_accuracy": found.scores[found.learning_rate, found.weight_decay],
        "validation": [
            {"learning_rate": float(lrs[c]), "weight_decay": float(grid[i]), "accuracy": acc}
            for (c, i), acc in sorted(found.scores.items())
        ],
        "n_train": len(train_y),
        "n_test": len(test_y),
        "n_classes": n_classes,
        "seed": seed,
        "search_precision": settings.search_precision,
        "settings": {**asdict(settings), "learning_rates": [float(lr) for lr in settings.learning_rates]},
    }


def _validate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int,
    settings: ProbeSettings,
    label: str,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The sorted train classes and the (fit, validation) indices of the train split."""
    if not isinstance(settings, ProbeSettings):
        raise ValueError(f"{label}: settings must be a ProbeSettings, got {type(settings).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"{label}: seed must be an integer in [0, 2**32), got {seed!r}")
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.ndim != 2 or y.ndim != 1:
            raise ValueError(f"{label}: {split} features must be 2-D and labels 1-D, got {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{label}: {split} split has {len(x)} feature rows but {len(y)} labels")
        if len(y) == 0:
            raise ValueError(f"{label}: {split} split is empty")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{label}: {split} labels must be integer class ids, got dtype {y.dtype}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{label}: {split} features must be real numbers, got dtype {x.dtype}")
        blocks = range(0, len(x), TRANSFER_ROWS)  # bounds the temporary of a large (memory-mapped) split
        bad_rows = np.concatenate([~np.isfinite(x[i : i + TRANSFER_ROWS]).all(axis=1) for i in blocks])
        if bad_rows.any():
            raise ValueError(
                f"{label}: {split} features hold NaN or Inf in {bad_rows.sum()} rows, "
                f"of class(es) {sorted(np.unique(y[bad_rows]).tolist())}"
            )
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"{label}: train features have {train_x.shape[1]} dimensions, test features {test_x.shape[1]}")
    classes, counts = np.unique(train_y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"{label}: the train split holds only class {classes[0]}; a probe needs at least two")
    unseen = np.setdiff1d(test_y, classes)
    if len(unseen):
        raise ValueError(f"{label}: test class(es) {unseen.tolist()} absent from the train split")
    too_small = classes[counts < 2]
    if len(too_small):
        raise ValueError(
            f"{label}: train class(es) {too_small.tolist()} have a single sample; "
            "the stratified validation split needs at least two per class"
        )
    try:
        split = stratified_split(train_y, settings.val_fraction, seed)
    except ValueError as error:
        raise ValueError(f"{label}: no stratified validation split of the train split: {error}") from error
    return classes, split


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of a stratified random split with ``ceil(test_fraction * len(labels))`` test samples:
    those of scikit-learn's ``train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
    random_state=seed)``, drawn with the same random numbers. Every class needs at least two samples; ValueError when
    either part has fewer samples than there are classes."""
    n_train, n_test = validation_split(len(labels), test_fraction)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if min(n_train, n_test) < len(classes):
        raise ValueError(
            f"{n_train} train and {n_test} test samples cannot both hold all {len(classes)} classes; "
            "every class needs a sample in each"
        )
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _approximate_mode(counts, n_train, rng)
    test_counts = _approximate_mode(counts - train_counts, n_test, rng)
    train, test = [], []
    for indices, n_train_class, n_test_class in zip(members, train_counts, test_counts, strict=True):
        shuffled = indices[rng.permutation(len(indices))]
        train.append(shuffled[:n_train_class])
        test.append(shuffled[n_train_class : n_train_class + n_test_class])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Samples per class of ``draws`` draws without replacement from classes of ``counts`` samples: the floor of
    each class's share, then one more for the classes of the largest remainders, ties broken by ``rng`` (as
    scikit-learn's ``_approximate_mode``)."""
    continuous = counts / counts.sum() * draws
    drawn = np.floor(continuous)
    missing = int(draws - drawn.sum())
    remainder = continuous - drawn
    for value in np.unique(remainder)[::-1]:
        if missing == 0:
            break
        (tied,) = np.where(remainder == value)
        added = min(len(tied), missing)
        drawn[rng.choice(tied, size=added, replace=False)] += 1
        missing -= added
    return drawn.astype(int)


def balanced_accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    """The mean recall of the classes in ``true`` (scikit-learn's ``balanced_accuracy_score``)."""
    classes, inverse = np.unique(true, return_inverse=True)
    correct = np.bincount(inverse[predicted == true], minlength=len(classes))
    return float(np.mean(correct / np.bincount(inverse)))


def _initial_parameters(d: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (d, C) and bias (C,) drawn as ``torch.nn.Linear`` draws them, on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(d)
    weight = torch.empty(d, n_classes).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(n_classes).uniform_(-bound, bound, generator=generator)
    return weight, bias


def _minibatches(n: int, seed: int, epochs: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Sample indices of every training step: a fresh permutation each epoch."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        yield from torch.randperm(n, generator=generator).split(batch_size)


def _indexed(
    x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The (features, labels) of each batch, indexed from the in-memory tensors."""
    for batch in batches:
        batch = batch.to(x.device)
        yield x[batch], y[batch]


def _cosine(lr: float, step: int, total: int) -> float:
    """Learning rate at ``step`` of ``total`` under cosine decay without warm-up."""
    return 0.5 * (1 + math.cos(math.pi * step / total)) * lr


def _adamw_schedule(
    learning_rates: Sequence[float], weight_decays: Sequence[float], steps: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Per AdamW step: the weight-decay factor and the step size of every candidate (steps, K, 1, 1),
    and the square root of the second-moment bias correction."""
    lr = np.array([[_cosine(base, step, steps) for base in learning_rates] for step in range(steps)])
    t = np.arange(1, steps + 1)
    decay = 1 - lr * np.asarray(weight_decays)
    step_size = lr / (1 - ADAM_BETAS[0] ** t)[:, None]
    decay, step_size = (
        torch.as_tensor(a, dtype=torch.float32, device=device)[:, :, None, None] for a in (decay, step_size)
    )
    return decay, step_size, np.sqrt(1 - ADAM_BETAS[1] ** t).tolist()


def _logits(x: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """Logits (n, K, C) of K linear probes."""
    k, d, c = weights.shape
    return torch.addmm(biases.reshape(-1), x, weights.permute(1, 0, 2).reshape(d, k * c)).view(len(x), k, c)


def _to_device(features: np.ndarray, device: torch.device) -> torch.Tensor:
    """``features`` as a float32 tensor on ``device``, copied :data:`TRANSFER_ROWS` rows at a time."""
    out = torch.empty(features.shape, dtype=torch.float32, device=device)
    for start in range(0, len(features), TRANSFER_ROWS):
        block = np.array(features[start : start + TRANSFER_ROWS], dtype=np.float32)  # writable, also from a memory map
        out[start : start + len(block)].copy_(torch.from_numpy(block))
    return out
