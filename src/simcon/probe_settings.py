"""The linear probe's settings and its weight-decay grid (paper App. B, as its code runs it). Torch-free, so that
the workflow checks a config's probe settings when it parses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


SEARCHES = {"code": (1e-6, 1e1, 63), "text": (1e-6, 1e2, 96)}
"""Weight-decay searches and their default grid: (smallest, largest value, log steps between)."""
SEARCH_PRECISIONS = ("float32", "bfloat16")
"""Names of the dtypes the matrix products of the hyperparameter search may run in."""


@dataclass(frozen=True)
class ProbeSettings:
    """Hyperparameters of the probe protocol; the defaults are those the paper's code ran.

    The weight-decay grid is ``weight_decay_steps`` logarithmic steps from
    ``weight_decay_min`` to ``weight_decay_max``, both included. ``search`` names how it is
    searched (:func:`hyperparameter_search`) and the grid's defaults:

    - ``"code"`` (the authors' ``regularization_tuner.py``): 64 values over [1e-6, 1e1], the
      decade values and 8 between neighbouring ones; the decade values are scanned, then the
      peak refined with spans 4, 2, 1. The range must span whole decades and the steps be a
      multiple of their number.
    - ``"text"`` (the paper's App. B, after CLIP's App. A.3): 97 values over [1e-6, 1e2];
      every 16th value is scanned, then spans 8, 4, 2, 1.
    """

    val_fraction: float = 0.2
    search: str = "code"
    weight_decay_min: float | None = None
    weight_decay_max: float | None = None
    weight_decay_steps: int | None = None
    learning_rates: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    epochs: int = 20
    batch_size: int = 1024
    search_precision: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rates", tuple(self.learning_rates))
        if not isinstance(self.search, str) or self.search not in SEARCHES:
            raise ValueError(f"search must be one of {sorted(SEARCHES)}, got {self.search!r}")
        grid_fields = ("weight_decay_min", "weight_decay_max", "weight_decay_steps")
        for field, default in zip(grid_fields, SEARCHES[self.search]):
            if getattr(self, field) is None:
                object.__setattr__(self, field, default)
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
        if self.search_precision not in SEARCH_PRECISIONS:
            raise ValueError(
                f"search_precision must be one of {sorted(SEARCH_PRECISIONS)}, got {self.search_precision!r}"
            )
        if self.search == "code":
            low, high = (math.log10(value) for value in (self.weight_decay_min, self.weight_decay_max))
            if low != round(low) or high != round(high):
                raise ValueError(
                    "search 'code' scans decade values: weight_decay_min and weight_decay_max must be powers of "
                    f"ten, got {self.weight_decay_min} and {self.weight_decay_max}"
                )
            if self.weight_decay_steps % round(high - low):
                raise ValueError(
                    f"search 'code' needs weight_decay_steps a multiple of the {round(high - low)} decades "
                    f"of [{self.weight_decay_min}, {self.weight_decay_max}], got {self.weight_decay_steps}"
                )

    def weight_decay_grid(self) -> np.ndarray:
        """The weight decays the search may evaluate, ascending."""
        import numpy as np  # not when the workflow parses a config

        return np.logspace(
            math.log10(self.weight_decay_min),
            math.log10(self.weight_decay_max),
            self.weight_decay_steps + 1,
        )

    def scan(self) -> list[int]:
        """Grid indices of the first round of the search, ascending."""
        last = self.weight_decay_steps
        stride = self._stride() if self.search == "code" else 2 * self.spans()[0]
        return sorted(set(range(0, last + 1, stride)) | {last})

    def spans(self) -> list[int]:
        """Distances, in grid steps, of the refinement rounds from the peak (may be empty)."""
        first = self._stride() // 2 if self.search == "code" else _text_span(self.weight_decay_steps)
        return [first >> i for i in range(first.bit_length())]

    def _stride(self) -> int:
        """Grid steps between neighbouring decade values (search 'code': 9 on the default grid)."""
        decades = round(math.log10(self.weight_decay_max) - math.log10(self.weight_decay_min))
        return self.weight_decay_steps // decades


def validation_split(n: int, val_fraction: float) -> tuple[int, int]:
    """The sizes of the probe's (fit, validation) parts of `n` train samples: ceil(val_fraction * n) for
    validation, as scikit-learn's train_test_split takes them. A stratified split needs every class in both."""
    n_validation = math.ceil(val_fraction * n)
    return n - n_validation, n_validation


def _text_span(steps: int) -> int:
    """The paper text's first refinement span on a grid of ``steps`` steps (8 for its 96)."""
    return 2 ** max(0, int(math.log2(max(1, steps // 12))))
