"""Linear probes on frozen features: the paper's Appendix B protocol.

Per (model, dataset, seed): a stratified validation split of the train features; for each
learning rate, the weight decay that maximises validation top-1 accuracy, found by the
coarse-to-fine search of CLIP (Radford et al. 2021, App. A.3) on a log grid; a linear layer
retrained on the full train split with the best (learning rate, weight decay); top-1, top-5
and balanced accuracy on the test split.

Training follows the paper's code: ``torch.nn.Linear`` (default initialisation, weight and
bias both decayed), ``torch.optim.AdamW`` with default betas and eps, mean cross-entropy,
a cosine learning-rate schedule without warm-up set before every step, and one minibatch
order per seed. :func:`fit_linear` trains many (learning rate, weight decay) candidates at
once and matches :func:`fit_linear_reference`, which trains them one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from tqdm import tqdm

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Dtypes the matrix products of the hyperparameter search may run in."""


def _check_precision(precision: object, field: str) -> torch.dtype:
    """The torch dtype named by ``precision``; ValueError unless it is one of PRECISIONS."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{field} must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


LinearFit = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""A trainer with the signature of :func:`fit_linear`."""


@dataclass(frozen=True)
class ProbeSettings:
    """Hyperparameters of the probe protocol; the defaults are the paper's.

    The weight-decay grid is ``weight_decay_steps`` logarithmic steps from
    ``weight_decay_min`` to ``weight_decay_max``, both included (the paper: 97 values).
    """

    val_fraction: float = 0.2
    weight_decay_min: float = 1e-6
    weight_decay_max: float = 1e2
    weight_decay_steps: int = 96
    learning_rates: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    epochs: int = 20
    batch_size: int = 1024
    search_precision: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rates", tuple(self.learning_rates))
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.weight_decay_min < self.weight_decay_max < math.inf:
            raise ValueError(
                "weight decay range must satisfy 0 < weight_decay_min < weight_decay_max < inf, "
                f"got [{self.weight_decay_min}, {self.weight_decay_max}]"
            )
        for field in ("weight_decay_steps", "epochs", "batch_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if not self.learning_rates:
            raise ValueError("learning_rates must not be empty")
        if not all(0.0 < lr < math.inf for lr in self.learning_rates):
            raise ValueError(f"learning_rates must be positive and finite, got {self.learning_rates}")
        _check_precision(self.search_precision, "search_precision")

    def weight_decay_grid(self) -> np.ndarray:
        """The weight decays the search may evaluate, ascending."""
        return np.logspace(
            math.log10(self.weight_decay_min),
            math.log10(self.weight_decay_max),
            self.weight_decay_steps + 1,
        )

    def initial_span(self) -> int:
        """Half the spacing, in grid steps, of the coarse subset (8 for the paper's grid)."""
        return 2 ** max(0, int(math.log2(max(1, self.weight_decay_steps // 12))))


def coarse_to_fine_search(
    n_points: int,
    n_curves: int,
    initial_span: int,
    evaluate: Callable[[list[tuple[int, int]]], Sequence[float]],
) -> tuple[list[int], dict[tuple[int, int], float]]:
    """Grid index of the highest score on each of ``n_curves`` curves, and every score seen.

    Each curve is searched as in CLIP's App. A.3: score every ``2 * initial_span``-th grid
    point and the last one, then repeatedly score the points ``span`` to either side of the
    current peak, halving ``span`` from ``initial_span`` down to 1. For a strictly unimodal
    curve this finds its maximum. Ties go to the lower index.

    ``evaluate`` receives (curve, index) pairs not scored before, sorted, and returns their
    scores in that order; all curves are advanced in lockstep, so each call holds one round
    of every curve.
    """
    scores: dict[tuple[int, int], float] = {}

    def best(candidates: list[list[int]]) -> list[int]:
        todo = sorted({(c, i) for c, points in enumerate(candidates) for i in points} - scores.keys())
        if todo:
            scores.update(zip(todo, evaluate(todo), strict=True))
        return [max(sorted(points), key=lambda i: scores[c, i]) for c, points in enumerate(candidates)]

    last = n_points - 1
    coarse = sorted(set(range(0, n_points, 2 * initial_span)) | {last})
    peaks = best([coarse] * n_curves)
    span = initial_span
    while span >= 1:
        peaks = best([[max(p - span, 0), p, min(p + span, last)] for p in peaks])
        span //= 2
    return peaks, scores


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (K, d, C) and biases (K, C) of K linear probes trained together.

    Candidate k has learning rate ``learning_rates[k]`` and weight decay
    ``weight_decays[k]``; all share the initialisation and the minibatch order, and match
    :func:`fit_linear_reference` up to float rounding. Each step is one matrix product for
    the logits of all candidates, one for their gradients, and one AdamW update of all
    candidates (the ``torch.optim.AdamW`` formula with a learning rate and weight decay per
    candidate), so its number of operations does not grow with K.

    With ``precision="bfloat16"`` the two matrix products take bfloat16 operands (the
    features, the weights and the logit gradients rounded to bfloat16, products accumulated
    by the backend in float32); the weights, the AdamW state, the softmax and the
    cross-entropy gradient stay float32, and the weights returned are float32.
    """
    low = _check_precision(precision, "precision") != torch.float32
    k, (n, d) = len(learning_rates), x.shape
    x = torch.cat([x, torch.ones(n, 1, dtype=x.dtype, device=x.device)], dim=1)  # bias as a last feature
    if low:
        x = x.to(torch.bfloat16)
    w0, b0 = _initial_parameters(d, n_classes, seed)
    params = torch.cat([w0.T, b0[:, None]], dim=1).repeat(k, 1).to(x.device)  # (K*C, d+1), nn.Linear layout
    grads, exp_avg, exp_avg_sq, denom = (torch.zeros_like(params) for _ in range(4))
    decay, step_size, bias_correction2_sqrt = _adamw_schedule(
        learning_rates, weight_decays, epochs * math.ceil(n / batch_size), n_classes, x.device
    )
    for step, batch in enumerate(_minibatches(n, seed, epochs, batch_size)):
        batch = batch.to(x.device)
        xb = x[batch]
        rows = torch.arange(len(batch), device=x.device)
        if low:
            logits = (xb @ params.to(torch.bfloat16).T).float()  # softmax and its gradient in float32
            probs = torch.softmax(logits.view(len(batch), k, n_classes), dim=2)
            probs[rows, :, y[batch]] -= 1  # d(cross-entropy)/d(logits)
            probs = probs.view(len(batch), k * n_classes).mul_(1 / len(batch)).to(torch.bfloat16)
            grads.copy_(torch.mm(probs.T, xb))
        else:
            probs = torch.softmax((xb @ params.T).view(len(batch), k, n_classes), dim=2)
            probs[rows, :, y[batch]] -= 1  # d(cross-entropy)/d(logits)
            torch.mm(probs.view(len(batch), k * n_classes).T, xb / len(batch), out=grads)
        params.mul_(decay[step])
        exp_avg.lerp_(grads, 1 - ADAM_BETAS[0])
        exp_avg_sq.mul_(ADAM_BETAS[1]).addcmul_(grads, grads, value=1 - ADAM_BETAS[1])
        torch.sqrt(exp_avg_sq, out=denom).div_(bias_correction2_sqrt[step]).add_(ADAM_EPS).div_(step_size[step])
        params.addcdiv_(exp_avg, denom, value=-1)
    weights = params.view(k, n_classes, d + 1)
    return weights[:, :, :d].transpose(1, 2), weights[:, :, d]


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
    loader: Callable[[torch.Tensor, torch.Tensor, list[torch.Tensor]], Iterable[tuple[torch.Tensor, torch.Tensor]]]
    | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`fit_linear`, one ``torch.nn.Linear`` and ``torch.optim.AdamW`` per candidate.

    ``precision="bfloat16"`` runs the forward and backward passes under ``torch.autocast``.
    ``loader(x, y, batches)`` yields the (features, labels) of each batch of sample indices;
    by default the in-memory tensors are indexed.
    """
    low = _check_precision(precision, "precision") != torch.float32
    n, d = x.shape
    total = epochs * math.ceil(n / batch_size)
    w0, b0 = _initial_parameters(d, n_classes, seed)
    weights, biases = [], []
    for lr, wd in zip(learning_rates, weight_decays, strict=True):
        linear = torch.nn.Linear(d, n_classes, device=x.device)
        with torch.no_grad():
            linear.weight.copy_(w0.T)
            linear.bias.copy_(b0)
        optimizer = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=wd, betas=ADAM_BETAS, eps=ADAM_EPS)
        batches = list(_minibatches(n, seed, epochs, batch_size))
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


def train_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    seed: int,
    settings: ProbeSettings = ProbeSettings(),
    device: str = "cpu",
    name: str = "",
    progress: bool = False,
    fit: LinearFit = fit_linear,
) -> dict:
    """Test accuracy of a linear probe tuned on a validation split, as a JSON-serialisable dict.

    Features are used as float32 on ``device``; labels are integer class ids, the classes
    being those of the train split. ``name`` labels error messages and progress bars.
    ``fit`` is the candidate trainer (the reference one exists for tests and benchmarks); the
    search trainings run with ``precision=settings.search_precision``, the final retrain on the
    full train split with float32, as do all evaluations.

    Keys: ``top1``, ``top5`` (None with 5 classes or fewer), ``balanced_accuracy`` (fractions
    of the test split); the chosen ``learning_rate``, ``weight_decay`` and their
    ``validation_accuracy``; ``validation``, every evaluated (learning_rate, weight_decay,
    accuracy) sorted by learning rate as given, then weight decay; ``n_train``, ``n_test``,
    ``n_classes``, ``seed``, ``search_precision`` and ``settings``.

    Raises ValueError, before any training, on inconsistent shapes, non-integer labels,
    NaN or Inf features, fewer than two train classes, a test class absent from train, or a
    train class too small for the stratified validation split.
    """
    label = name or "linear probe"
    train_x, train_y, test_x, test_y = map(np.asarray, (train_x, train_y, test_x, test_y))
    classes, split = _validate(train_x, train_y, test_x, test_y, seed=seed, settings=settings, label=label)
    n_classes, seed = len(classes), int(seed)
    dev = torch.device(device)

    def to_x(features: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32), device=dev)

    def to_y(labels: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.searchsorted(classes, labels), dtype=torch.long, device=dev)

    fit_idx, val_idx = split
    fit_x, fit_y = to_x(train_x[fit_idx]), to_y(train_y[fit_idx])
    val_x, val_y = to_x(train_x[val_idx]), to_y(train_y[val_idx])
    lrs, grid = settings.learning_rates, settings.weight_decay_grid()
    train_args = dict(seed=seed, epochs=settings.epochs, batch_size=settings.batch_size)
    search_precision = settings.search_precision
    rounds = 1 + (int(math.log2(settings.initial_span())) + 1) + 1  # coarse, refinements, retrain
    with tqdm(total=rounds, desc=f"{label}: probe", disable=not progress) as bar:

        def evaluate(candidates: list[tuple[int, int]]) -> list[float]:
            learning_rates = [lrs[c] for c, _ in candidates]
            weight_decays = [float(grid[i]) for _, i in candidates]
            weights, biases = fit(
                fit_x, fit_y, n_classes, learning_rates, weight_decays, precision=search_precision, **train_args
            )
            correct = sum(
                (_logits(x, weights, biases).argmax(2) == y[:, None]).sum(0)
                for x, y in zip(val_x.split(settings.batch_size), val_y.split(settings.batch_size))
            )
            bar.update()
            return [int(c) / len(val_y) for c in correct.cpu()]

        peaks, scores = coarse_to_fine_search(len(grid), len(lrs), settings.initial_span(), evaluate)
        best = max(range(len(lrs)), key=lambda c: scores[c, peaks[c]])
        lr, wd = lrs[best], float(grid[peaks[best]])
        weights, biases = fit(to_x(train_x), to_y(train_y), n_classes, [lr], [wd], precision="float32", **train_args)
        bar.update(bar.total - bar.n)
    logits = _logits(to_x(test_x), weights, biases)[:, 0]
    test_target = to_y(test_y)
    predicted = classes[logits.argmax(1).cpu().numpy()]
    top5 = None
    if n_classes > 5:
        top5 = (logits.topk(5, dim=1).indices == test_target[:, None]).any(1).sum().item() / len(test_y)
    return {
        "top1": float(np.mean(predicted == test_y)),
        "top5": top5,
        "balanced_accuracy": float(balanced_accuracy_score(test_y, predicted)),
        "learning_rate": float(lr),
        "weight_decay": wd,
        "validation_accuracy": scores[best, peaks[best]],
        "validation": [
            {"learning_rate": float(lrs[c]), "weight_decay": float(grid[i]), "accuracy": acc}
            for (c, i), acc in sorted(scores.items())
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
        bad_rows = ~np.isfinite(x).all(axis=1)
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
        split = train_test_split(
            np.arange(len(train_y)), test_size=settings.val_fraction, stratify=train_y, random_state=seed
        )
    except ValueError as error:
        raise ValueError(f"{label}: no stratified validation split of the train split: {error}") from error
    return classes, (split[0], split[1])


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
    learning_rates: Sequence[float], weight_decays: Sequence[float], steps: int, n_classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Per AdamW step: the weight-decay factor and the step size of every output unit of every
    candidate (steps, K*C, 1), and the square root of the second-moment bias correction."""
    lr = np.array([[_cosine(base, step, steps) for base in learning_rates] for step in range(steps)])
    t = np.arange(1, steps + 1)
    decay = 1 - lr * np.asarray(weight_decays)
    step_size = lr / (1 - ADAM_BETAS[0] ** t)[:, None]
    decay, step_size = (
        torch.as_tensor(a, dtype=torch.float32, device=device).repeat_interleave(n_classes, dim=1)[:, :, None]
        for a in (decay, step_size)
    )
    return decay, step_size, np.sqrt(1 - ADAM_BETAS[1] ** t).tolist()


def _logits(x: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """Logits (n, K, C) of K linear probes."""
    k, d, c = weights.shape
    return torch.addmm(biases.reshape(-1), x, weights.permute(1, 0, 2).reshape(d, k * c)).view(len(x), k, c)

